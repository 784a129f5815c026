"""Paired statistics of two models scored on the same examples: wins / losses / ties and a bootstrap interval
of the difference (pure numbers; no model or metric code)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

RESAMPLES = 1000  # bootstrap resamples: the interval's ends move by well under its width's tenth between seeds
SEED = 0  # fixed, so that the same scores always give the same interval (cards and tests are reproducible)
_CHUNK = 2**20  # resampled indices drawn at once (8 MiB of int64), whatever the number of examples


def paired_bootstrap(base: Sequence[float], tuned: Sequence[float], higher_is_better: bool = True,
                     resamples: int = RESAMPLES, seed: int = SEED, confidence: float = 0.95) -> dict[str, Any]:
    """Wins, losses and ties of ``tuned`` against ``base`` example by example, the mean difference (tuned − base)
    and its paired percentile-bootstrap interval: example indices resampled with replacement ``resamples`` times.

    A win is an example where tuned scores better (lower when not ``higher_is_better``); a tie, equal scores.
    No examples: zero counts, and None for the difference and the interval.
    """
    a, b = np.asarray(base, dtype=float), np.asarray(tuned, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired scores need one score per example for both: got {a.shape} and {b.shape}")
    if not 0 < confidence < 1 or resamples < 1:
        raise ValueError(f"`confidence` must be in (0, 1) and `resamples` at least 1; got {confidence}, {resamples}")
    diff = b - a
    n = len(diff)
    # Equal up to float noise: the same output scored twice, or an adapter that changed nothing there.
    tie = np.isclose(b, a, rtol=1e-9, atol=1e-12)
    better = (diff > 0) if higher_is_better else (diff < 0)
    out: dict[str, Any] = {"higher_is_better": bool(higher_is_better), "n": n,
                           "wins": int((better & ~tie).sum()), "losses": int((~better & ~tie).sum()),
                           "ties": int(tie.sum()), "difference": None, "ci95": None,
                           "resamples": int(resamples), "seed": int(seed)}
    if n == 0:
        return out
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    step = max(1, _CHUNK // n)
    for start in range(0, resamples, step):  # in chunks: memory stays bounded for long validation sets
        count = min(step, resamples - start)
        means[start:start + count] = diff[rng.integers(0, n, size=(count, n))].mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    out.update(difference=float(diff.mean()), ci95=[float(low), float(high)])
    return out
