"""Base vs fine-tuned on the validation split, with lmdemo's evaluation metrics and a few outputs side by side,
and a paired comparison (wins / losses / ties, bootstrap interval) that says whether the difference is real."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from lmdemo.eval.evaluation import EvalResult, example_scores, run_rows, save
from lmdemo.models.adapters import EVAL_FILES, adapter_meta, model_card

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


def paired_comparison(base: EvalResult, tuned: EvalResult, **bootstrap: Any) -> dict[str, Any]:
    """`paired_bootstrap` of two results scored on the same rows, on the task's per-example score
    (evaluation.EXAMPLE_SCORES): {"metric", "higher_is_better", "wins", "losses", "ties", "difference",
    "ci95": [low, high], "n", "resamples", "seed"}."""
    if base.task != tuned.task or base.n != tuned.n:
        raise ValueError(f"paired comparison needs the same task and rows: {base.task}/{base.n} vs "
                         f"{tuned.task}/{tuned.n}")
    metric, higher, base_scores = example_scores(base.task, base.predictions)
    tuned_scores = example_scores(tuned.task, tuned.predictions)[2]
    return {"metric": metric, **paired_bootstrap(base_scores, tuned_scores, higher, **bootstrap)}


def paired_line(paired: dict[str, Any]) -> str:
    """EvalComparison.paired() in one sentence (the CLI's and the Evaluate tab's)."""
    low, high = paired["ci95"]
    verdict = "includes 0: no clear difference" if low <= 0 <= high else "excludes 0"
    lower = "" if paired.get("higher_is_better", True) else "lower is better; "
    return (f"{paired['second']} vs {paired['first']} on {paired['n']} examples: {paired['wins']} wins, "
            f"{paired['losses']} losses, {paired['ties']} ties; {paired['metric']} difference "
            f"{paired['difference']:+.3f} ({lower}95 % bootstrap interval {low:+.3f} to {high:+.3f}, {verdict}).")


def _eval_rows(task: str, validation: list[dict]) -> tuple[str, list[dict]]:
    """The evaluation task and its rows for a fine-tuning task's validation rows."""
    if task == "translation":  # languages: the adapter's, passed to run_rows
        return "translation", [{"source": r["source"], "reference": r["target"]} for r in validation]
    if task == "summarisation":
        return "summarisation", [{"text": r["source"], "summary": r["target"]} for r in validation]
    return ("classification" if task == "classification" else "generation"), [dict(r) for r in validation]


def _write_card(folder: Path, evals: list[dict]) -> None:
    """The adapter's README.md again, now with its evaluation (the paired figures included)."""
    config = json.loads((folder / "adapter_config.json").read_text())
    model_card(folder.name, adapter_meta(folder), config, evals).save(folder / "README.md")


def compare_base_and_adapter(task: str, validation: list[dict], base_model: str, adapter: str,
                             examples: int = 3) -> dict:
    """Metrics of the base model and of base + adapter on the same rows, a few predictions of each, and `paired`:
    wins / losses / ties of the adapter and a bootstrap interval of the difference (see paired_comparison)."""
    eval_task, rows = _eval_rows(task, validation)
    meta = adapter_meta(Path(adapter))
    # The languages the adapter was trained on (None: the translate job's defaults); other tasks ignore them.
    languages = {"source": meta.get("source"), "target": meta.get("target")}
    dataset = f"validation split ({len(validation)} example{'s' * (len(validation) != 1)} held back from the training data)"
    if task == "sft":
        from lmdemo.eval.sft_eval import compare_response_perplexity

        # SFT is scored on the response after the prompt in the adapter's trained format (chat template or
        # `prompt\n`), base and tuned alike.
        base, tuned = compare_response_perplexity(validation, base_model, adapter, dataset)
    else:
        base = run_rows(eval_task, [dict(r) for r in rows], model=base_model, dataset=dataset, **languages)
        tuned = run_rows(eval_task, [dict(r) for r in rows], model=None if task == "classification" else base_model,
                         adapter=adapter, dataset=dataset, **languages)
    paired = paired_comparison(base, tuned)
    save(base, Path(adapter) / EVAL_FILES["base"])
    save(tuned, Path(adapter) / EVAL_FILES["adapter"], paired=paired)  # a push's card reads it from there
    _write_card(Path(adapter), [base.summary(), dict(tuned.summary(), paired=paired)])
    if task == "sft":
        from lmdemo.eval.sft_eval import side_by_side

        shown = side_by_side(validation[:examples], base_model, adapter)  # generated in the trained format too
    else:  # the predictions are the outputs: side by side with the reference
        source, reference = {"classification": ("text", "label"), "translation": ("source", "reference"),
                             "summarisation": ("text", "summary")}[task]
        shown = [{"input": b[source], "reference": b[reference], "base": b["prediction"], "fine-tuned": t["prediction"]}
                 for b, t in list(zip(base.predictions, tuned.predictions))[:examples]]
    return {"metrics": {"base": base.metrics, "fine-tuned": tuned.metrics}, "examples": shown,
            "n": base.n, "paired": paired}
