"""Base vs fine-tuned on the validation split, with lmdemo's evaluation metrics and a few outputs side by side."""

from __future__ import annotations

from pathlib import Path

from lmdemo.eval.evaluation import run_rows, save
from lmdemo.models.adapters import EVAL_FILES, adapter_meta


def _eval_rows(task: str, validation: list[dict], adapter: str) -> tuple[str, list[dict]]:
    """The evaluation task and its rows for a fine-tuning task's validation rows."""
    if task == "translation":  # the languages the adapter was trained on
        meta = adapter_meta(Path(adapter))
        return "translation", [{"source": r["source"], "reference": r["target"], "source_lang": meta.get("source", "en"),
                                "target_lang": meta.get("target", "fr")} for r in validation]
    if task == "summarisation":
        return "summarisation", [{"text": r["source"], "summary": r["target"]} for r in validation]
    return ("classification" if task == "classification" else "generation"), [dict(r) for r in validation]


def compare_base_and_adapter(task: str, validation: list[dict], base_model: str, adapter: str,
                             examples: int = 3) -> dict:
    """Metrics of the base model and of base + adapter on the same rows, and a few predictions of each."""
    eval_task, rows = _eval_rows(task, validation, adapter)
    dataset = f"validation split ({len(validation)} example{'s' * (len(validation) != 1)} held back from the training data)"
    base = run_rows(eval_task, [dict(r) for r in rows], model=base_model, dataset=dataset)
    tuned = run_rows(eval_task, [dict(r) for r in rows], model=None if task == "classification" else base_model,
                     adapter=adapter, dataset=dataset)
    save(base, Path(adapter) / EVAL_FILES["base"])
    save(tuned, Path(adapter) / EVAL_FILES["adapter"])
    shown = []
    if task != "sft":  # the predictions are the outputs: side by side with the reference
        source, reference = {"classification": ("text", "label"), "translation": ("source", "reference"),
                             "summarisation": ("text", "summary")}[task]
        for b, t in list(zip(base.predictions, tuned.predictions))[:examples]:
            shown.append({"input": b[source], "reference": b[reference], "base": b["prediction"],
                          "fine-tuned": t["prediction"]})
    else:
        from lmdemo.jobs.generation import GenerationRequest, generate
        from lmdemo.engine.streaming import GenerationParams

        params = GenerationParams(max_new_tokens=48, temperature=0)
        for row in validation[:examples]:
            mode = "chat"
            outs = {}
            for label, kw in (("base", {}), ("fine-tuned", {"adapter": adapter})):
                try:
                    outs[label] = generate(GenerationRequest(row["prompt"], mode=mode, model=base_model, params=params, **kw))[0]
                except Exception as exc:  # a base model without chat template: show why instead of failing the job
                    outs[label] = f"({exc})"
            shown.append({"input": row["prompt"], "reference": row["response"], **outs})
    return {"metrics": {"base": base.metrics, "fine-tuned": tuned.metrics}, "examples": shown,
            "n": base.n}
