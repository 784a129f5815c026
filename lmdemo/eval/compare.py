"""Base vs fine-tuned on the validation split, with lmdemo's evaluation metrics and a few outputs side by side."""

from __future__ import annotations

from pathlib import Path

from lmdemo.eval.evaluation import run_rows, save
from lmdemo.models.adapters import EVAL_FILES


def compare_base_and_adapter(task: str, validation: list[dict], base_model: str, adapter: str,
                             examples: int = 3) -> dict:
    """Metrics of the base model and of base + adapter on the same rows, and a few predictions of each."""
    eval_task = "classification" if task == "classification" else "generation"
    dataset = f"validation split ({len(validation)} example{'s' * (len(validation) != 1)} held back from the training data)"
    base = run_rows(eval_task, [dict(r) for r in validation], model=base_model, dataset=dataset)
    tuned = run_rows(eval_task, [dict(r) for r in validation], model=None if task == "classification" else base_model,
                     adapter=adapter, dataset=dataset)
    save(base, Path(adapter) / EVAL_FILES["base"])
    save(tuned, Path(adapter) / EVAL_FILES["adapter"])
    shown = []
    if task == "classification":
        for b, t in list(zip(base.predictions, tuned.predictions))[:examples]:
            shown.append({"input": b["text"], "reference": b["label"], "base": b["prediction"],
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
