"""The LM lab's LSTM against its baseline, the add-k bigram, on the bundled corpus.

Every 5th line is held out; the LSTM (the lab's defaults) and the bigram are fitted on the rest in the same run.
Reported: training seconds, perplexity on the training lines and on the held-out ones (per word and line end,
same vocabulary for both), and agreement: on each held-out line whose verb agrees with its subject (is/are,
was/were, has/have), whether the model gives the line a higher probability than the same line with the verb's
number flipped. A bigram sees only the word before the verb ("mat is" / "mat are"), so it cannot know.

    python bench/lm_lab.py [--seeds 5] [--quick]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import print_json, print_table, summarise  # noqa: E402

from lmdemo.jobs.lmlab import BigramModel  # noqa: E402
from lmdemo.jobs.lstm_lm import LstmTrainRequest, bundled_corpus, score_lstm, train_lstm  # noqa: E402

FLIP = {"is": "are", "are": "is", "was": "were", "were": "was", "has": "have", "have": "has"}


def flipped(line: str) -> str | None:
    words = line.split()
    for i, w in enumerate(words):
        if w in FLIP and i > 1:
            return " ".join([*words[:i], FLIP[w], *words[i + 1:]])
    return None


def bigram_logprob(model: BigramModel, line: str) -> float:
    return sum(math.log(p) for _, _, p in model.steps(line))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--k", type=float, default=1.0, help="the bigram's add-k (the lab's default 1)")
    parser.add_argument("--quick", action="store_true", help="2 seeds")
    args = parser.parse_args()
    lines = [line for line in bundled_corpus().splitlines() if line.strip()]
    train = "\n".join(line for i, line in enumerate(lines) if i % 5)
    held = [line for i, line in enumerate(lines) if i % 5 == 0]
    held_text = "\n".join(held)
    pairs = [(line, f) for line in held if (f := flipped(line))]
    bigram = BigramModel.fit(train, args.k)
    bi_agree = sum(bigram_logprob(bigram, good) > bigram_logprob(bigram, bad) for good, bad in pairs) / len(pairs)
    runs = []
    for seed in range(2 if args.quick else args.seeds):
        start = time.perf_counter()
        res = train_lstm(LstmTrainRequest(train, seed=seed, max_seconds=300))
        seconds = time.perf_counter() - start
        agree = sum(score_lstm(res.model, good).total_logprob > score_lstm(res.model, bad).total_logprob
                    for good, bad in pairs) / len(pairs)
        runs.append({"seed": seed, "seconds": seconds, "steps": res.steps, "train_ppl": res.perplexity_after,
                     "heldout_ppl": score_lstm(res.model, held_text).perplexity, "agreement": agree})
    med = {key: statistics.median(r[key] for r in runs) for key in ("seconds", "train_ppl", "heldout_ppl", "agreement")}
    bi_train, bi_held = bigram.perplexity(train), bigram.perplexity(held_text)
    rows = [
        ["bigram (add-k)", "0", f"{bi_train:.2f}", f"{bi_held:.2f}", f"{bi_agree:.2f}"],
        ["LSTM (lab defaults)", f"{med['seconds']:.1f} ({min(r['seconds'] for r in runs):.1f}-"
         f"{max(r['seconds'] for r in runs):.1f})", f"{med['train_ppl']:.2f}", f"{med['heldout_ppl']:.2f}",
         f"{med['agreement']:.2f}"],
        ["ratio LSTM / bigram", "", f"{med['train_ppl'] / bi_train:.2f}x", f"{med['heldout_ppl'] / bi_held:.2f}x", ""],
    ]
    print_table(f"LM lab on the bundled corpus: {len(lines) - len(held)} training lines, {len(held)} held out, "
                f"{len(pairs)} agreement pairs; LSTM median of {len(runs)} seeds",
                ["model", "train seconds", "train ppl", "held-out ppl", "agreement"], rows)
    print_json("lm_lab", {"bigram": {"k": args.k, "train_ppl": bi_train, "heldout_ppl": bi_held,
                                     "agreement": bi_agree},
                          "lstm": {"median": med, "seconds": summarise([r["seconds"] for r in runs]), "runs": runs},
                          "pairs": len(pairs)})


if __name__ == "__main__":
    main()
