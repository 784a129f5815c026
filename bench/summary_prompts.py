"""Choose the summarisation prompt and length by measurement: ROUGE on the bundled news set for each candidate
instruction (lmdemo/data/summary_prompts.json) x summary length, through lmdemo's own summarize() (greedy, fact
check on), plus the numbers and names the fact check flagged in the first summaries.

The set is split in two: the dev half (rows 0-19) chooses, the held-out half (rows 20-39) only reports.

    python bench/summary_prompts.py [--split dev] [--prompts plain shots-3] [--lengths 1s 2s 30w] [--limit N]
                                    [--predictions FILE.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
from _common import print_json, print_table  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "lmdemo/data/eval/summarization.jsonl"
DEV = 20  # the first 20 rows choose; the other 20 are held out
SPLITS = {"dev": slice(0, DEV), "heldout": slice(DEV, None), "all": slice(None)}


def parse_length(spec: str) -> tuple[int, str]:
    """'1s' -> (1, 'sentences'), '30w' -> (30, 'words')."""
    unit = {"s": "sentences", "w": "words"}.get(spec[-1:])
    if unit is None or not spec[:-1].isdigit():
        raise argparse.ArgumentTypeError(f"a length is N followed by s or w (1s, 30w); got {spec!r}")
    return int(spec[:-1]), unit


def score(prompt: str, length: tuple[int, str], rows: list[dict], model: str | None = None) -> dict:
    """ROUGE-1/2/L of summarize() on ``rows`` with this prompt and length, the fact check's counts, seconds."""
    from lmdemo.eval.metrics import load_metric
    from lmdemo.jobs.summarization import SummaryRequest, summarize

    t0, preds, flagged, left, actions = time.time(), [], 0, 0, {}
    for row in rows:
        res = summarize(SummaryRequest(row["text"], length=length[0], unit=length[1], prompt=prompt, model=model))
        preds.append(res.summary)
        flagged, left = flagged + len(res.flagged), left + len(res.unsupported)
        actions[res.fact_check] = actions.get(res.fact_check, 0) + 1
    scores = load_metric("rouge").compute(predictions=preds, references=[r["summary"] for r in rows])
    return {"rouge1": scores["rouge1"], "rouge2": scores["rouge2"], "rougeL": scores["rougeL"],
            "words": sum(len(p.split()) for p in preds) / len(preds), "flagged": flagged, "unsupported": left,
            "fact_check": actions, "seconds": time.time() - t0, "predictions": preds}


def main() -> None:
    from lmdemo.jobs.summarization import prompt_names

    parser = argparse.ArgumentParser()
    parser.add_argument("--split", choices=list(SPLITS), default="dev")
    parser.add_argument("--prompts", nargs="*", default=prompt_names(), choices=prompt_names())
    parser.add_argument("--lengths", nargs="*", type=parse_length, default=[(1, "sentences"), (2, "sentences"),
                                                                              (30, "words")])
    parser.add_argument("--limit", type=int, help="score only the first N rows of the split")
    parser.add_argument("--model", help="the summariser (default: the job's)")
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--predictions", help="write each setting's summaries to this JSON file")
    args = parser.parse_args()
    rows = [json.loads(line) for line in open(args.data, encoding="utf-8")][SPLITS[args.split]][: args.limit]
    results, table = {}, []
    for prompt in args.prompts:
        for length in args.lengths:
            key = f"{prompt}, {length[0]} {length[1][:-1] if length[0] == 1 else length[1]}"
            r = results[key] = score(prompt, length, rows, args.model)
            table.append([key, f"{r['rouge1']:.3f}", f"{r['rouge2']:.3f}", f"{r['rougeL']:.3f}", f"{r['words']:.0f}",
                          str(r["flagged"]), str(r["unsupported"]), f"{r['seconds']:.0f}"])
            print("  ".join(table[-1]), file=sys.stderr, flush=True)
    if args.predictions:
        Path(args.predictions).write_text(json.dumps({k: r["predictions"] for k, r in results.items()}, indent=1))
    best = max(results, key=lambda k: results[k]["rougeL"])
    print_table(f"Summary ROUGE on the {args.split} split ({len(rows)} rows) of {Path(args.data).name}",
                ["prompt, length", "R-1", "R-2", "R-L", "words", "flagged", "left", "s"], table)
    print(f"\npick (best ROUGE-L): {best}")
    print_json("summary_prompts", {"split": args.split, "rows": len(rows), "pick": best,
                                   "results": {k: {m: v for m, v in r.items() if m != "predictions"}
                                               for k, r in results.items()}})


if __name__ == "__main__":
    main()
