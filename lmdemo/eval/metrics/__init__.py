"""Offline `evaluate` metric modules shipped with lmdemo.

Each metric lives in ``METRICS_DIR/<name>/<name>.py`` (the layout :func:`evaluate.load` expects for a
local module), so ``evaluate.load(str(METRICS_DIR / "rouge"))`` works without the Hugging Face Hub.
:func:`load_metric` is the short way to do that::

    from lmdemo.eval.metrics import load_metric
    load_metric("sacrebleu").compute(predictions=["a cat"], references=[["a cat"]])
"""

from __future__ import annotations

from pathlib import Path

METRICS_DIR = Path(__file__).resolve().parent


def available_metrics() -> list[str]:
    """Names of the metric modules in :data:`METRICS_DIR` (folders holding a same-named script)."""
    return sorted(p.name for p in METRICS_DIR.iterdir() if p.is_dir() and (p / f"{p.name}.py").is_file())


def load_metric(name: str, **kwargs):
    """Load the offline metric ``name`` as an :class:`evaluate.EvaluationModule`.

    Extra keyword arguments go to :func:`evaluate.load` (``config_name``, ``keep_in_memory``...).
    Raises ValueError naming the available metrics when ``name`` is not one of them.
    """
    available = available_metrics()
    if not isinstance(name, str) or name not in available:
        raise ValueError(f"Unknown metric {name!r}; available metrics: {', '.join(available)}")
    import evaluate

    return evaluate.load(str(METRICS_DIR / name), **kwargs)


__all__ = ["METRICS_DIR", "available_metrics", "load_metric"]
