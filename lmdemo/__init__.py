"""lmdemo: run and compare small language models offline — generation, sentiment, summarisation, translation,
LoRA fine-tuning and evaluation.

The public functions and request types are importable from here; each is loaded on first use, so
``import lmdemo`` stays cheap (no torch until a job needs it)::

    import lmdemo
    lmdemo.generate(lmdemo.GenerationRequest("What is a language model?")).text
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    **dict.fromkeys(("LmdemoError", "InputError", "ModelNotFoundError", "AdapterError", "ConfigError", "HubError",
                     "StoreError"), "lmdemo.errors"),
    **dict.fromkeys(("Settings", "get_settings", "set_settings"), "lmdemo.config"),
    **dict.fromkeys(("GenerationRequest", "GenerationResult", "generate", "generate_stream"), "lmdemo.jobs.generation"),
    "GenerationParams": "lmdemo.engine.streaming",
    **dict.fromkeys(("SentimentRequest", "SentimentBatch", "classify"), "lmdemo.jobs.sentiment"),
    **dict.fromkeys(("SummaryRequest", "SummaryResult", "summarize", "summarize_stream"), "lmdemo.jobs.summarization"),
    **dict.fromkeys(("TranslationRequest", "TranslationResult", "translate", "translate_stream"),
                    "lmdemo.jobs.translation"),
    **dict.fromkeys(("PerplexityRequest", "NextTokensRequest", "BigramRequest", "perplexity", "next_tokens", "bigram"),
                    "lmdemo.jobs.lmlab"),
    **dict.fromkeys(("EvalRequest", "EvalComparison", "compare_models"), "lmdemo.eval.evaluation"),
    **dict.fromkeys(("FinetuneRequest", "TrainingPlan", "plan", "run_plan", "estimate_plan"), "lmdemo.train.plan"),
    **dict.fromkeys(("load",), "lmdemo.models.loading"),
    **dict.fromkeys(("list_adapters", "resolve_pick", "push"), "lmdemo.models.adapters"),
    "BUILTINS": "lmdemo.models.registry",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:  # static tools see the real names; nothing is imported at run time
    from lmdemo.config import Settings, get_settings, set_settings  # noqa: F401
    from lmdemo.errors import LmdemoError  # noqa: F401
    from lmdemo.jobs.generation import GenerationRequest, generate, generate_stream  # noqa: F401


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'lmdemo' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
