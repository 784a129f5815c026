"""Choose the translation prompt by measurement: chrF on the bundled eval set for shot counts and
sentence-by-sentence vs whole-text translation (the settings lmdemo.jobs.translation uses by default).

    python bench/translation_prompts.py [--per-pair 12] [--shots 2 4 5]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
from _common import print_json, print_table  # noqa: E402


def main() -> None:
    import sacrebleu

    from lmdemo.jobs.translation import TranslationRequest, translate

    parser = argparse.ArgumentParser()
    parser.add_argument("--per-pair", type=int, default=12, help="examples per language pair")
    parser.add_argument("--shots", type=int, nargs="*", default=[2, 4, 5])
    parser.add_argument("--modes", nargs="*", default=["sentence", "whole"])
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[1] / "lmdemo/data/eval/translation.jsonl"))
    args = parser.parse_args()
    rows = [json.loads(l) for l in open(args.data, encoding="utf-8")]
    by_pair = defaultdict(list)
    for r in rows:
        by_pair[(r["source_lang"], r["target_lang"])].append(r)
    # Multi-sentence items sit at the end of the file; take some of each kind.
    subset = {pair: items[: args.per_pair - 2] + items[-2:] for pair, items in by_pair.items()}
    results, table = {}, []
    for shots in args.shots:
        for mode in args.modes:
            hyps, refs, t0 = defaultdict(list), defaultdict(list), time.time()
            for pair, items in subset.items():
                for r in items:
                    req = TranslationRequest(r["source"], *pair, shots=shots, by_sentence=mode == "sentence")
                    hyps[pair].append(translate(req).translation)
                    refs[pair].append(r["reference"])
                print(f"  {shots} shots, {mode}, {pair}: {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
            per_pair = {"->".join(pair): sacrebleu.corpus_chrf(hyps[pair], [refs[pair]]).score for pair in subset}
            mean = sum(per_pair.values()) / len(per_pair)
            key = f"shots={shots},{mode}"
            results[key] = {"mean_chrf": mean, "per_pair": per_pair, "seconds": time.time() - t0}
            table.append([key, f"{mean:.1f}", *[f"{v:.1f}" for v in per_pair.values()], f"{time.time() - t0:.0f}"])
            print(table[-1], flush=True)
    print_table("Translation chrF (sacrebleu, 0-100) on the bundled eval set", ["setting", "mean", *[
        "->".join(p) for p in subset], "s"], table)
    print_json("translation_prompts", results)


if __name__ == "__main__":
    main()
