"""Sentiment throughput: lmdemo's `sentiment.classify` vs `pipeline("text-classification")`.

The baseline is what a user would write with the same classifier: MiniLM for sequence classification,
the bundled LoRA adapter loaded with PEFT and merged, in the same dtype lmdemo loads, fed to the
pipeline with batch_size 32 (classify's batch size too). Texts are reviews from the bundled held-out
split. Runs are interleaved; ratios are taken pair by pair. Labels of both sides are compared.

    python bench/sentiment.py [--runs 5] [--sizes 1 256] [--quick]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
from _common import print_json, print_table, summarise  # noqa: E402


def baseline_pipeline(dtype):
    """MiniLM + the bundled adapter, merged, in a plain text-classification pipeline."""
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    from lmdemo.models import store
    from lmdemo.models.adapters import adapter_meta
    from lmdemo.jobs.sentiment import DEFAULT_ADAPTER

    folder = store.ensure("all-minilm-l6-v2")
    labels = adapter_meta(Path(DEFAULT_ADAPTER))["labels"]
    model = AutoModelForSequenceClassification.from_pretrained(
        folder, num_labels=len(labels), id2label=dict(enumerate(labels)), label2id={v: i for i, v in enumerate(labels)},
        dtype=dtype)
    model = PeftModel.from_pretrained(model, DEFAULT_ADAPTER).merge_and_unload().eval()
    return pipeline("text-classification", model=model, tokenizer=AutoTokenizer.from_pretrained(folder))


def main() -> None:
    import torch

    from lmdemo.models.loading import load
    from lmdemo.jobs.sentiment import DEFAULT_ADAPTER, classify, load_split

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--sizes", type=int, nargs="*", default=[1, 256])
    parser.add_argument("--quick", action="store_true", help="2 runs, sizes 1 and 64")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.sizes = 2, [1, 64]
    texts = [r["text"] for r in load_split("heldout")]
    texts = (texts * (max(args.sizes) // len(texts) + 1))[:max(args.sizes)]
    lm = load("all-minilm-l6-v2", head="sequence-classification", adapter=DEFAULT_ADAPTER)
    pipe = baseline_pipeline(lm.dtype)
    classify(texts[:8]), pipe(texts[:8], batch_size=32)  # warm-up

    rows, results = [], {}
    for n in args.sizes:
        batch = texts[:n]
        ours, base = [], []
        for _ in range(args.runs):
            t = time.perf_counter()
            mine = classify(batch)
            ours.append(n / (time.perf_counter() - t))
            t = time.perf_counter()
            theirs = pipe(batch, batch_size=32)
            base.append(n / (time.perf_counter() - t))
        agree = sum(a.label == b["label"].lower() for a, b in zip(mine, theirs)) / n
        ratios = [a / b for a, b in zip(ours, base)]
        o, b = summarise(ours), summarise(base)
        results[str(n)] = {"lmdemo_texts_per_s": o, "pipeline_texts_per_s": b,
                           "ratio_median": summarise(ratios)["median"], "label_agreement": agree}
        rows.append([str(n), f"{o['median']:.1f} ({o['min']:.1f}-{o['max']:.1f})",
                     f"{b['median']:.1f} ({b['min']:.1f}-{b['max']:.1f})", f"{results[str(n)]['ratio_median']:.2f}x",
                     f"{agree:.1%}"])
    print_table(f"Sentiment, texts/s, MiniLM + bundled LoRA adapter, {str(lm.dtype).removeprefix('torch.')}, "
                f"{torch.get_num_threads()} threads; median (min-max) of {args.runs} interleaved runs",
                ["texts", "lmdemo classify", "pipeline (merged, batch 32)", "ratio", "same label"], rows)
    print_json("sentiment", {"runs": args.runs, "dtype": str(lm.dtype), "results": results})


if __name__ == "__main__":
    main()
