"""Base vs fine-tuned on the validation split, with lmdemo's evaluation metrics and a few outputs side by side,
and a paired comparison (wins / losses / ties, bootstrap interval) that says whether the difference is real."""

from __future__ import annotations

import json
from pathlib import Path

from lmdemo.eval.evaluation import paired_comparison, run_rows, save
from lmdemo.models.adapters import EVAL_FILES, adapter_meta, model_card

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
