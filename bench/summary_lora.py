"""Does a LoRA fine-tune lift summary ROUGE? Train SmolLM2-135M-Instruct with lmdemo's own SFT on
bench/data/news_summaries.jsonl (120 invented news briefs with one-sentence summaries, written for lmdemo; no
story, name or place of the eval set), then score the adapter through the summarisation job on
lmdemo/data/eval/summarization.jsonl against the base model with the job's defaults, measured in the same run.

Rows are prompted as the job's `plain` instruction asks ("Summarize the following text in one sentence. ...").

    python bench/summary_lora.py [--epochs 5] [--lr 4e-4] [--split all] [--adapter DIR] [--train FILE ...]

bench/data/news_summaries_2.jsonl holds 180 more briefs of the same kind (written later; --train both files).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
from _common import print_json, print_table  # noqa: E402
from summary_prompts import DATA, SPLITS, score  # noqa: E402

TRAIN = Path(__file__).resolve().parent / "data/news_summaries.jsonl"


def sft_rows(files: list[Path]) -> tuple[list[dict], list[dict]]:
    """(train, validation) {prompt, response} rows in the job's `plain` one-sentence wording; 10 % validate."""
    from lmdemo.jobs.summarization import SummaryRequest, _messages

    rows = [json.loads(line) for f in files for line in f.open(encoding="utf-8") if line.strip()]
    random.Random(0).shuffle(rows)
    out = [{"prompt": _messages(SummaryRequest(r["text"], prompt="plain"), r["text"])[-1]["content"],
            "response": r["summary"]} for r in rows]
    n = len(out) // 10
    return out[n:], out[:n]


def main() -> None:
    from lmdemo.train.sft import SFTConfig, train_sft

    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=float, default=5.0)
    parser.add_argument("--lr", type=float, default=4e-4)
    parser.add_argument("--split", choices=list(SPLITS), default="all")
    parser.add_argument("--adapter", help="keep the adapter in this folder (default: a temporary one)")
    parser.add_argument("--train", nargs="+", type=Path, default=[TRAIN], help="{text, summary} JSONL files")
    args = parser.parse_args()
    rows = [json.loads(line) for line in open(DATA, encoding="utf-8")][SPLITS[args.split]]
    train, val = sft_rows(args.train)
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.adapter or str(Path(tmp) / "news-summary")
        t0 = time.time()
        res = train_sft(train, val, SFTConfig(output_dir=folder, epochs=args.epochs, learning_rate=args.lr,
                                              max_length=384))
        seconds = time.time() - t0
        results = {"base, shots-3 (the default)": score("shots-3", (1, "sentences"), rows),
                   "base, plain": score("plain", (1, "sentences"), rows),
                   "LoRA, plain": score("plain", (1, "sentences"), rows, folder),
                   "LoRA, shots-3": score("shots-3", (1, "sentences"), rows, folder)}
    table = [[k, f"{r['rouge1']:.3f}", f"{r['rouge2']:.3f}", f"{r['rougeL']:.3f}", f"{r['words']:.0f}",
              str(r["flagged"]), str(r["unsupported"]), f"{r['seconds']:.0f}"] for k, r in results.items()]
    print_table(f"Summary ROUGE on the {args.split} split ({len(rows)} rows); LoRA: {len(train)} rows, "
                f"{args.epochs:g} epochs, lr {args.lr:g}, {seconds:.0f} s, validation loss "
                f"{res.metrics.get('eval_loss', float('nan')):.3f}",
                ["model, prompt", "R-1", "R-2", "R-L", "words", "flagged", "left", "s"], table)
    print_json("summary_lora", {"split": args.split, "rows": len(rows), "train_rows": len(train),
                                "epochs": args.epochs, "lr": args.lr, "train_seconds": seconds,
                                "metrics": res.metrics,
                                "results": {k: {m: v for m, v in r.items() if m != "predictions"}
                                            for k, r in results.items()}})


if __name__ == "__main__":
    main()
