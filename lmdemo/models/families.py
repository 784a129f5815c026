"""What a model can do, read from its config before any weights load.

Five families: a chat LM (causal LM whose tokenizer has a chat template), a base LM (causal LM without one), a
seq2seq model (encoder-decoder: Marian, T5, BART, mBART, NLLB/M2M100, Pegasus), a sequence classifier (a
trained classification head with its own labels) and a plain encoder (BERT-like, no trained head). Each job
asks :func:`require` for the family it can run, and a model of another family gets a plain sentence saying
what the model is and what would work, not a transformers traceback.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from lmdemo.errors import InputError, LmdemoError, ModelNotFoundError
from lmdemo.models.registry import BUILTINS, check_allowed, resolve

Family = Literal["chat-lm", "base-lm", "seq2seq", "classifier", "encoder"]
Job = Literal["generate", "chat", "summarise", "translate", "sentiment", "lm", "train-classifier", "train-sft",
              "train-seq2seq"]

# What each job runs on; the messages below say what to pick instead.
ACCEPTS: dict[str, tuple[Family, ...]] = {
    "generate": ("chat-lm", "base-lm"),
    "chat": ("chat-lm",),
    "summarise": ("chat-lm", "base-lm", "seq2seq"),
    "translate": ("chat-lm", "base-lm", "seq2seq"),
    "sentiment": ("classifier",),
    "lm": ("chat-lm", "base-lm"),
    "train-classifier": ("encoder", "classifier", "chat-lm", "base-lm"),
    "train-sft": ("chat-lm", "base-lm"),
    "train-seq2seq": ("seq2seq",),
}
DESCRIBE: dict[Family, str] = {
    "chat-lm": "a chat language model",
    "base-lm": "a base language model (no chat template)",
    "seq2seq": "an encoder-decoder (seq2seq) model",
    "classifier": "a sequence classifier",
    "encoder": "a plain encoder",
}
_INSTEAD: dict[str, str] = {
    "generate": "pick a causal language model (a built-in, or e.g. HuggingFaceTB/SmolLM2-360M-Instruct)",
    "chat": "use completion mode, or pick a chat model (one with a chat template)",
    "summarise": "pick a summariser (e.g. facebook/bart-large-cnn, google-t5/t5-small) or a language model",
    "translate": "pick a translation model (e.g. Helsinki-NLP/opus-mt-en-fr, facebook/nllb-200-distilled-600M) "
                 "or a language model",
    "sentiment": "pick a classifier (e.g. distilbert/distilbert-base-uncased-finetuned-sst-2-english) or a "
                 "classification adapter",
    "lm": "pick a causal language model",
    "train-classifier": "pick an encoder (e.g. all-minilm-l6-v2) or a classifier",
    "train-sft": "pick a causal language model; seq2seq models train with the seq2seq task",
    "train-seq2seq": "pick an encoder-decoder model (Marian, T5, BART, mBART, NLLB)",
}
_SPECIFIC: dict[tuple[str, Family], str] = {
    ("sentiment", "encoder"): "has no trained classification head; fine-tune it in the Fine-tune tab "
                              "(task classification) or pick a classifier",
    ("generate", "seq2seq"): "is an encoder-decoder (seq2seq) model: it rewrites a whole input rather than "
                             "continuing text; use it in Translate or Summarise",
    ("lm", "seq2seq"): "is an encoder-decoder (seq2seq) model; the LM lab scores causal language models",
    ("train-sft", "seq2seq"): "is an encoder-decoder (seq2seq) model: fine-tune it with the seq2seq task "
                              "(source/target pairs)",
}


# A remote OpenAI-compatible engine (docs/remote.md) is a chat LM behind an address: text in, text out, no weights
# or logits here. ModelInfo.model_type names it so; these are the jobs it runs.
REMOTE = "openai-remote"
REMOTE_JOBS = ("generate", "chat", "summarise", "translate")
_REMOTE_NOT: dict[str, str] = {
    "sentiment": "classify sentiment (pick a classifier)",
    "lm": "score tokens in the LM lab or by perplexity (that needs a local model's logits)",
    "train-classifier": "be fine-tuned (training needs local weights)",
    "train-sft": "be fine-tuned (training needs local weights)",
    "train-seq2seq": "be fine-tuned (training needs local weights)",
}


def is_remote(name: str | None) -> bool:
    """Whether a model box value names a remote engine: `openai:URL[#MODEL]`, or a back-end named in
    LMDEMO_BACKENDS (a back-end's name wins over an adapter, folder or Hub id of the same name)."""
    from lmdemo.config import ENGINE_SCHEMES, get_settings

    name = (name or "").strip()
    scheme, colon, _ = name.partition(":")
    return bool(colon and scheme in ENGINE_SCHEMES) or name in get_settings().backends


def check_remote_allowed(name: str) -> None:
    """A shared app (demo mode) calls only its operator's named back-ends: a visitor's typed address is refused
    before any request, so no visitor makes the server call an address of their choosing."""
    from lmdemo.config import get_settings

    settings = get_settings()
    if settings.demo_mode and name.strip() not in settings.backends:
        offered = ", ".join(settings.backends) or "none are set up"
        raise ModelNotFoundError(f"This shared app does not connect to typed engine addresses; its remote engines: "
                                 f"{offered}.")


def remote_refusal(name: str, job: str) -> str:
    """The plain sentence for a remote engine in a job that needs local weights."""
    return (f"{name!r} is a remote engine: it can generate, summarise, translate and be evaluated on those, not "
            f"{_REMOTE_NOT.get(job, 'run this job')}.")


@dataclass(frozen=True)
class ModelInfo:
    """A model's family and the config facts the jobs need, without its weights."""

    name: str
    family: Family
    model_type: str = ""
    labels: tuple[str, ...] = ()  # a classifier's own id2label, in id order
    multi_label: bool = False  # classifier scores are independent sigmoids
    task_params: dict[str, Any] = field(default_factory=dict, compare=False)  # T5's task_specific_params


def family_of(config, chat_template: bool) -> Family:
    """The family of a transformers config (and whether its tokenizer has a chat template)."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
        MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES,
    )

    model_type = getattr(config, "model_type", "")
    archs = list(getattr(config, "architectures", None) or [])
    if getattr(config, "is_encoder_decoder", False) and model_type in MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES:
        return "seq2seq"
    if any(a.endswith("ForSequenceClassification") for a in archs):
        return "classifier"
    lm_arch = any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs)
    if model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and (
            lm_arch or (not archs and model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES)):
        return "chat-lm" if chat_template else "base-lm"
    return "encoder"


def _has_chat_template(folder: Path) -> bool:
    if (folder / "chat_template.jinja").is_file() or (folder / "chat_template.json").is_file():
        return True
    try:
        meta = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return bool(meta.get("chat_template"))


def _hub_files(repo: str) -> Path | None:
    """A local folder with the repo's config and tokenizer config (no weights), or None when unreadable."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    from lmdemo.models import hub

    if repo in _HUB_FOLDERS:  # asked once per process: each job and each uncached load describes its model
        return _HUB_FOLDERS[repo]
    try:
        folder = Path(snapshot_download(
            repo, allow_patterns=["config.json", "tokenizer_config.json", "chat_template.jinja"],
            endpoint=hub.endpoint(), local_files_only=not hub.hub_reachable(), token=hub.read_token()))
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError, ValueError):
        return None
    _HUB_FOLDERS[repo] = folder
    return folder


_HUB_FOLDERS: dict[str, Path] = {}

_CACHE: dict[tuple[str, int], ModelInfo] = {}
_CACHE_LOCK = threading.Lock()


def _config_source(name: str):
    """(ModelRef, the folder its config.json is read from here, or None): a model folder or a Hub repo's config
    files; None for a built-in (the registry knows its family). A shared app asks the Hub about allowed models
    only."""
    from lmdemo.config import get_settings

    settings = get_settings()
    check_allowed(name, settings.demo_mode, settings.allowed_models)
    ref = resolve(name)
    if ref.kind == "builtin":
        return ref, None
    return ref, ref.path if ref.kind == "folder" else _hub_files(ref.name)


def config_dict(name: str) -> dict | None:
    """A local model's or Hub model's config.json as a dict, without loading weights; None when it is not
    readable here (a built-in not converted yet, a Hub id offline or refused, an engine)."""
    from lmdemo.models import store

    if is_remote(name):
        return None
    try:
        ref, folder = _config_source(name)
        if ref.kind == "builtin":
            folder = store.model_dir(ref.name) if store.is_converted(ref.name) else None
        return json.loads((folder / "config.json").read_text(encoding="utf-8")) if folder else None
    except (LmdemoError, OSError, ValueError):
        return None


def describe(name: str) -> ModelInfo | None:
    """The family of a built-in, folder or Hub model from its config; None when its config cannot be read here
    (offline and not cached, no such repo): loading then reports why."""
    from transformers import AutoConfig

    if is_remote(name):
        check_remote_allowed(name)
        return ModelInfo(name.strip(), "chat-lm", REMOTE)
    ref, folder = _config_source(name)
    if ref.kind == "builtin":
        return ModelInfo(ref.name, BUILTINS[ref.name].family)
    if folder is None or not (folder / "config.json").is_file():
        if ref.kind == "folder":
            raise ModelNotFoundError(f"Model folder {name!r} has no config.json: not a transformers model folder.")
        return None
    key = (str(folder), (folder / "config.json").stat().st_mtime_ns)
    with _CACHE_LOCK:
        if key in _CACHE:
            return _CACHE[key]
    try:
        config = AutoConfig.from_pretrained(str(folder), trust_remote_code=False, local_files_only=True)
    except (ValueError, KeyError, OSError) as exc:
        raise ModelNotFoundError(f"Model {name!r} has a config this transformers cannot read (custom code is "
                                 f"never run): {str(exc).strip().splitlines()[0]}") from None
    family = family_of(config, _has_chat_template(folder))
    labels: tuple[str, ...] = ()
    if family == "classifier":
        id2label = {int(k): str(v) for k, v in (getattr(config, "id2label", None) or {}).items()}
        labels = tuple(id2label.get(i, f"LABEL_{i}") for i in range(int(getattr(config, "num_labels", 0) or len(id2label))))
    info = ModelInfo(name, family, getattr(config, "model_type", ""), labels,
                     getattr(config, "problem_type", None) == "multi_label_classification",
                     dict(getattr(config, "task_specific_params", None) or {}))
    with _CACHE_LOCK:
        _CACHE[key] = info
    return info


def is_seq2seq(info: ModelInfo | None) -> bool:
    """Whether a job should load the model with the seq2seq head (an unreadable config: no)."""
    return info is not None and info.family == "seq2seq"


class WrongFamilyError(InputError):
    """A model of a family this job cannot run."""


def refusal(name: str, family: Family, job: str) -> str:
    """The plain sentence for a model of ``family`` in ``job``."""
    specific = _SPECIFIC.get((job, family))
    if specific:
        return f"Model {name!r} {specific}."
    return f"Model {name!r} is {DESCRIBE[family]}; it cannot do this job: {_INSTEAD[job]}."


def require(name: str, job: str, adapter: str | None = None) -> ModelInfo | None:
    """The model's info when ``job`` can run it, else WrongFamilyError; None when the config is unreadable.

    With an adapter, the base's family counts, except that a classification adapter gives an encoder or a
    language model the trained head Sentiment needs.
    """
    info = describe(name)
    if info is None:
        return None
    family = info.family
    if info.model_type == REMOTE and job not in REMOTE_JOBS:
        raise WrongFamilyError(remote_refusal(name, job))
    if job == "sentiment" and adapter and family in ("encoder", "chat-lm", "base-lm"):
        from lmdemo.models.adapters import adapter_dir, adapter_meta

        if adapter_meta(adapter_dir(adapter)).get("labels"):
            return info
    if family not in ACCEPTS[job]:
        raise WrongFamilyError(refusal(name, family, job))
    return info
