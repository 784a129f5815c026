"""Does a LoRA fine-tune lift summary ROUGE? Train a LoRA with lmdemo's own SFT on written news briefs
(bench/data/news_summaries.jsonl: 120 invented briefs with one-sentence summaries; no story, name or place of the
eval set), then score it through the summarisation job on lmdemo/data/eval/summarization.jsonl against the
SmolLM2 chat prompt (shots-3) and the untuned base, measured in the same run.

Rows are worded as the job asks the base: a chat model gets the job's `plain` instruction ("Summarize the following
text in one sentence. ..."), a base model the job's completion prompt ("Text: ...  Summary of the text above in one
sentence:").

    python bench/summary_lora.py [--base smollm2-135m-instruct] [--epochs 5] [--lr 4e-4] [--split all]
                                 [--adapter DIR] [--train FILE ...] [--bf16]

The bundled default one-sentence summariser (lmdemo/data/adapters/news-summary-gemma) is this run:

    python bench/summary_lora.py --base gemma-3-270m --epochs 2 --bf16 --adapter lmdemo/data/adapters/news-summary-gemma

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

from lmdemo.models.registry import DEFAULT_CHAT_MODEL  # noqa: E402

TRAIN = Path(__file__).resolve().parent / "data/news_summaries.jsonl"


def sft_rows(files: list[Path], chat: bool = True) -> tuple[list[dict], list[dict]]:
    """(train, validation) {prompt, response} rows in the job's one-sentence wording for a chat model (`plain`) or
    a base model (the completion prompt, the summary after a space as in running text); 10 % validate."""
    from lmdemo.jobs.summarization import SummaryRequest, _messages, completion_prompt

    rows = [json.loads(line) for f in files for line in f.open(encoding="utf-8") if line.strip()]
    random.Random(0).shuffle(rows)
    req = lambda r: SummaryRequest(r["text"], prompt="plain", model=DEFAULT_CHAT_MODEL)  # noqa: E731
    out = [{"prompt": _messages(req(r), r["text"])[-1]["content"], "response": r["summary"]} if chat else
           {"prompt": completion_prompt(r["text"], req(r)), "response": " " + r["summary"]} for r in rows]
    n = len(out) // 10
    return out[n:], out[:n]


def main() -> None:
    from lmdemo.models.loading import load
    from lmdemo.train.sft import SFTConfig, prompt_format, train_sft

    parser = argparse.ArgumentParser()
    parser.add_argument("--base", default=DEFAULT_CHAT_MODEL, help="the model the LoRA is trained on")
    parser.add_argument("--epochs", type=float, default=5.0)
    parser.add_argument("--lr", type=float, default=4e-4)
    parser.add_argument("--split", choices=list(SPLITS), default="all")
    parser.add_argument("--adapter", help="keep the adapter in this folder (default: a temporary one)")
    parser.add_argument("--train", nargs="+", type=Path, default=[TRAIN], help="{text, summary} JSONL files")
    parser.add_argument("--bf16", action="store_true", help="train under bf16 autocast (SFTConfig.bf16)")
    args = parser.parse_args()
    rows = [json.loads(line) for line in open(DATA, encoding="utf-8")][SPLITS[args.split]]
    chat = prompt_format(load(args.base, head="causal-lm").tokenizer) == "chat"
    train, val = sft_rows(args.train, chat)
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.adapter or str(Path(tmp) / "news-summary")
        t0 = time.time()
        res = train_sft(train, val, SFTConfig(output_dir=folder, base_model=args.base, epochs=args.epochs,
                                              learning_rate=args.lr, max_length=384 if chat else 256,
                                              bf16=args.bf16))
        seconds = time.time() - t0
        one = (1, "sentences")
        results = {f"{DEFAULT_CHAT_MODEL}, shots-3": score("shots-3", one, rows, DEFAULT_CHAT_MODEL)}
        if chat:
            results.update({"base, plain": score("plain", one, rows, args.base),
                            "LoRA, plain": score("plain", one, rows, folder),
                            "LoRA, shots-3": score("shots-3", one, rows, folder)})
        else:  # the prompt names a chat instruction only; a base model gets the completion prompt
            results.update({"base, completion prompt": score("plain", one, rows, args.base),
                            "LoRA, completion prompt": score("plain", one, rows, folder)})
    table = [[k, f"{r['rouge1']:.3f}", f"{r['rouge2']:.3f}", f"{r['rougeL']:.3f}", f"{r['words']:.0f}",
              str(r["flagged"]), str(r["unsupported"]), f"{r['seconds']:.0f}"] for k, r in results.items()]
    print_table(f"Summary ROUGE on the {args.split} split ({len(rows)} rows); LoRA: {len(train)} rows, "
                f"{args.epochs:g} epochs, lr {args.lr:g}, {seconds:.0f} s, validation loss "
                f"{res.metrics.get('eval_loss', float('nan')):.3f}",
                ["model, prompt", "R-1", "R-2", "R-L", "words", "flagged", "left", "s"], table)
    print_json("summary_lora", {"base": args.base, "split": args.split, "rows": len(rows), "train_rows": len(train),
                                "epochs": args.epochs, "lr": args.lr, "train_seconds": seconds,
                                "metrics": res.metrics,
                                "results": {k: {m: v for m, v in r.items() if m != "predictions"}
                                            for k, r in results.items()}})


if __name__ == "__main__":
    main()
