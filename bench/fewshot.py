"""Few-shot classification: zero-shot vs the prototype head (step 0) vs the fine-tuned adapter, on held-out rows.

Two sets: the test suite's own 4-topic set (tests/data/fewshot_*.jsonl, written for this check and never tuned on)
and ~50 rows drawn from the bundled topics sample. Per set: 1 validation row per class, the rest trained on,
accuracy on the held-out file, and seconds of training (model load included, as a user waits for it).

    python bench/fewshot.py [--per-class 12]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def pick(rows: list[dict], per_class: int) -> tuple[list[dict], list[dict]]:
    """The first `per_class` rows of each label: one of them for validation, the rest to train on."""
    train, val, count = [], [], {}
    for r in rows:
        n = count.get(r["label"], 0)
        if n < per_class:
            (val if n == 0 else train).append(r)
            count[r["label"]] = n + 1
    return train, val


def accuracy(predicted: list[str], rows: list[dict]) -> float:
    return sum(p == r["label"] for p, r in zip(predicted, rows)) / len(rows)


def main() -> None:
    from lmdemo.jobs import zeroshot
    from lmdemo.jobs.sentiment import classify
    from lmdemo.train.classifier import ClassifierTrainConfig, train_classifier

    parser = argparse.ArgumentParser()
    parser.add_argument("--per-class", type=int, default=12)
    args = parser.parse_args()
    samples = ROOT / "lmdemo" / "data" / "samples"
    sets = {"own 4 topics (tests/data)": (ROOT / "tests/data/fewshot_train.jsonl", ROOT / "tests/data/fewshot_heldout.jsonl"),
            "bundled topics sample": (samples / "topics_train.jsonl", samples / "topics_heldout.jsonl")}
    print("| set | train / val rows | zero-shot | step 0 (val) | fine-tuned (held-out) | best step / steps | seconds |")
    print("|---|---|---|---|---|---|---|")
    for name, (train_file, held_file) in sets.items():
        train, val = pick(read(train_file), args.per_class)
        held = read(held_file)
        labels = sorted({r["label"] for r in train})
        zero = accuracy([p for p, _ in zeroshot.classify([r["text"] for r in held], labels, "all-minilm-l6-v2")], held)
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            result = train_classifier(train, val, ClassifierTrainConfig(output_dir=tmp))
            seconds = time.perf_counter() - start
            steps = json.loads((Path(tmp) / "lmdemo.json").read_text())["steps"]
            tuned = accuracy([p.label for p in classify([r["text"] for r in held], adapter=tmp)], held)
        print(f"| {name} | {len(train)} / {len(val)} | {zero:.3f} | {result.initial_accuracy:.3f} | {tuned:.3f} "
              f"({len(held)} rows) | {result.best_step} / {steps} | {seconds:.0f} |", flush=True)


if __name__ == "__main__":
    main()
