"""The one place models are loaded: device and dtype policy, bitsandbytes quantisation, PEFT adapters, cache.

Every job calls :func:`load`. Loaded models are cached in-process, keyed by everything that
changes the weights, and the cache is bounded by ``Settings.memory_budget_mb``.
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import torch

from lmdemo.config import Settings, get_settings
from lmdemo.errors import AdapterError, ModelNotFoundError
from lmdemo.models import hub, store
from lmdemo.models.adapters import adapter_base, adapter_dir, adapter_meta
from lmdemo.models.hub import hub_reachable
from lmdemo.models.registry import check_allowed, resolve

log = logging.getLogger(__name__)
# bitsandbytes' int8 CPU path warns on every matmul that it casts bf16 to fp16; once is enough.
warnings.filterwarnings("once", message="MatMul8bitLt: inputs will be cast")

Head = Literal["causal-lm", "seq2seq-lm", "sequence-classification", "encoder"]


@dataclass(frozen=True)
class LoadSpec:
    """What to load. ``None`` fields take the settings' defaults."""

    model: str
    head: Head = "causal-lm"
    quantize: str | None = None
    adapter: str | None = None
    device: str | None = None
    dtype: str | None = None
    adapter_stamp: str = ""  # the adapter weights' mtime and size: a retrained adapter is a new cache key


@dataclass
class LoadedModel:
    spec: LoadSpec  # fully resolved: no None left but adapter
    model: Any
    tokenizer: Any
    device: torch.device
    dtype: torch.dtype
    size_bytes: int
    notes: list[str] = field(default_factory=list)  # fallbacks the user should hear about
    labels: list[str] | None = None  # classification heads only

    @property
    def quantized(self) -> bool:
        return self.spec.quantize != "none"


# ---------------------------------------------------------------- policies

def resolve_device(requested: str, notes: list[str] | None = None) -> torch.device:
    """auto -> CUDA when present, else CPU; an unavailable CUDA falls back to CPU with a note."""
    if requested in ("auto", "cuda") and torch.cuda.is_available():
        return torch.device("cuda")
    if requested == "cuda" and notes is not None:
        notes.append("CUDA was requested but no CUDA device is available; using the CPU.")
    return torch.device("cpu")


def cpu_has_fast_bf16() -> bool:
    """True where oneDNN runs bf16 matmuls natively (AVX512-BF16 or AMX), where bf16 beats fp32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_dtype(requested: str, device: torch.device) -> torch.dtype:
    if requested != "auto":
        return getattr(torch, requested)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_has_fast_bf16() else torch.float32


def quantization_config(quantize: str, dtype: torch.dtype):
    """BitsAndBytesConfig for ``8bit``/``4bit`` (nf4, double quant, compute in ``dtype``); None for ``none``."""
    if quantize == "none":
        return None
    from transformers import BitsAndBytesConfig

    if quantize == "4bit":
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype,
        )
    if quantize == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    raise ValueError(f"`quantize` must be none, 8bit or 4bit; got {quantize!r}")


def preload_libraries() -> None:
    """Import transformers' auto classes (and the GGUF reader) now, on the calling thread.

    transformers resolves these lazily; two threads resolving them at once (the app's warm-up converting a
    model while a first request loads another) can see a half-imported module and fail with ImportError.
    """
    import transformers

    for name in ("AutoConfig", "AutoTokenizer", "AutoModel", "AutoModelForCausalLM", "AutoModelForSeq2SeqLM",
                 "AutoModelForSequenceClassification", "BitsAndBytesConfig"):
        getattr(transformers, name)
    try:
        import transformers.modeling_gguf_pytorch_utils  # noqa: F401 - the conversion's reader
    except ImportError:  # no gguf package: conversion reports it when it runs
        pass


# ---------------------------------------------------------------- resolution

def _load_tokenizer(name: str, source: str, extra: dict[str, Any]):
    from transformers import AutoTokenizer

    if resolve(name).kind == "builtin":
        return store.load_tokenizer(Path(source))
    return AutoTokenizer.from_pretrained(source, trust_remote_code=False, **extra)


def _model_source(name: str, settings: Settings) -> tuple[str, dict[str, Any]]:
    """Where from_pretrained reads the base model, plus extra kwargs (offline-only for local copies)."""
    ref = resolve(name)
    if ref.kind == "builtin":
        return str(store.ensure(ref.name, settings)), {"local_files_only": True}
    if ref.kind == "folder":
        if not (ref.path / "config.json").is_file():
            raise ModelNotFoundError(f"Model folder {name!r} has no config.json: not a transformers model folder.")
        return str(ref.path), {"local_files_only": True}
    # Without a reachable Hub, read only the local cache: huggingface_hub would otherwise retry for ~45 s.
    if not hub_reachable():
        return ref.name, {"local_files_only": True}
    hub.check_weights_size(ref.name)  # before from_pretrained downloads anything
    return ref.name, ({"token": False} if hub.read_token() is False else {})


def _resolve_spec(spec: LoadSpec, settings: Settings, notes: list[str]) -> tuple[LoadSpec, torch.device, torch.dtype]:
    from lmdemo.models import families

    if families.is_remote(spec.model):  # an engine elsewhere has no weights here (the LM lab, a perplexity)
        raise families.WrongFamilyError(families.remote_refusal(spec.model, "lm"))
    check_allowed(spec.model, settings.demo_mode, settings.allowed_models)
    if not spec.adapter and resolve(spec.model).kind == "hub":
        folder = hub.download_adapter(spec.model)  # a Hub adapter repo typed as a model loads on its base
        if folder is not None:
            spec = replace(spec, model=adapter_base(folder), adapter=str(folder))
    device = resolve_device(spec.device or settings.device, notes)
    dtype = resolve_dtype(spec.dtype or settings.dtype, device)
    adapter = str(adapter_dir(spec.adapter, settings)) if spec.adapter else None
    full = replace(
        spec,
        quantize=spec.quantize or settings.quantize,
        adapter=adapter,
        device=device.type,
        dtype=str(dtype).removeprefix("torch."),
        adapter_stamp=_stamp(adapter) if adapter else "",
    )
    return full, device, dtype


def _stamp(folder: str) -> str:
    st = (Path(folder) / "adapter_model.safetensors").stat()
    return f"{st.st_mtime_ns}-{st.st_size}"


# ---------------------------------------------------------------- loading

def _auto_class(head: Head):
    import transformers

    return {
        "causal-lm": transformers.AutoModelForCausalLM,
        "seq2seq-lm": transformers.AutoModelForSeq2SeqLM,
        "sequence-classification": transformers.AutoModelForSequenceClassification,
        "encoder": transformers.AutoModel,
    }[head]


def _from_pretrained(spec: LoadSpec, source: str, extra: dict[str, Any], device: torch.device,
                     dtype: torch.dtype, labels: list[str] | None):
    kwargs: dict[str, Any] = dict(extra, dtype=dtype, use_safetensors=True, trust_remote_code=False)
    if labels:
        kwargs.update(num_labels=len(labels), id2label=dict(enumerate(labels)),
                      label2id={label: i for i, label in enumerate(labels)})
    qconfig = quantization_config(spec.quantize, dtype)
    if qconfig is not None:
        kwargs["quantization_config"] = qconfig
        kwargs["device_map"] = {"": device.index if device.type == "cuda" and device.index is not None else device.type}
    with warnings.catch_warnings():
        # A new classification head is expected to be "newly initialized"; the adapter fills it.
        warnings.filterwarnings("ignore", message=".*newly initialized.*")
        model = _auto_class(spec.head).from_pretrained(source, **kwargs)
    if qconfig is None:
        model.to(device)
    return model


def _quantized_layers(model) -> int:
    try:
        import bitsandbytes as bnb
    except ImportError:
        return 0
    kinds = (bnb.nn.Linear4bit, bnb.nn.Linear8bitLt)
    return sum(isinstance(m, kinds) for m in model.modules())


def _check_head(spec: LoadSpec) -> None:
    """A model of the wrong family for the head gets a plain message before its weights load (Marian and BART
    would otherwise load as decoder-only causal LMs, their encoder silently dropped)."""
    from lmdemo.models import families

    job = {"causal-lm": "lm", "seq2seq-lm": "train-seq2seq"}.get(spec.head)
    if job:
        families.require(spec.model, job)


def _load_uncached(spec: LoadSpec, device: torch.device, dtype: torch.dtype, notes: list[str],
                   settings: Settings, labels: list[str] | None = None, for_training: bool = False) -> LoadedModel:
    _check_head(spec)
    source, extra = _model_source(spec.model, settings)
    if spec.adapter:
        labels = adapter_meta(Path(spec.adapter)).get("labels")
    try:
        tokenizer = _load_tokenizer(spec.model, source, extra)
    except (OSError, ValueError) as exc:
        raise _not_found(spec.model, exc) from exc

    try:
        model = _from_pretrained(spec, source, extra, device, dtype, labels)
    except (OSError, EnvironmentError) as exc:
        raise _not_found(spec.model, exc) from exc
    except Exception as exc:  # bitsandbytes/transformers raise assorted types for an unsupported backend
        if spec.quantize == "none":
            raise
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        notes.append(f"{spec.quantize} quantisation is not supported on {device.type} here ({reason}); "
                     f"loaded unquantised in {str(dtype).removeprefix('torch.')} instead.")
        log.warning(notes[-1])
        spec = replace(spec, quantize="none")
        model = _from_pretrained(spec, source, extra, device, dtype, labels)

    if spec.quantize != "none" and _quantized_layers(model) == 0:
        notes.append(f"{spec.quantize} was requested but no layer was quantised; the model runs unquantised.")
        spec = replace(spec, quantize="none")

    if spec.adapter:
        model = _attach_adapter(model, spec.adapter)
    if not for_training:
        model.eval()
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return LoadedModel(spec=spec, model=model, tokenizer=tokenizer, device=device, dtype=dtype,
                       size_bytes=int(model.get_memory_footprint()), notes=notes, labels=labels)


def _attach_adapter(model, folder: str):
    from peft import PeftModel

    try:
        return PeftModel.from_pretrained(model, folder, is_trainable=False)
    except (ValueError, RuntimeError, KeyError) as exc:
        raise AdapterError(f"Adapter {folder!r} does not fit this base model: {str(exc).splitlines()[0]}") from exc


def _not_found(name: str, exc: Exception) -> ModelNotFoundError:
    ref = resolve(name)
    if ref.kind == "hub":
        if not hub_reachable():
            return ModelNotFoundError(
                f"Model {name!r} is not in the local Hub cache and the Hub is unreachable (offline). "
                f"Built-ins work offline: " + ", ".join(store.BUILTINS)
            )
        return ModelNotFoundError(
            f"Model {name!r} could not be loaded from the Hub (no such repo, gated, or no safetensors weights): "
            + str(exc).strip().splitlines()[0]
        )
    return ModelNotFoundError(f"Model {name!r} could not be loaded: {str(exc).strip().splitlines()[0]}")


# One load at a time in a process: from_pretrained sets torch's process-wide default dtype while it builds a
# model, so a bf16 load beside another load could leave the other's fresh layers (a new classification head)
# in the wrong dtype. Two cores gain nothing from parallel loads anyway.
_LOAD_LOCK = threading.Lock()


class ModelCache:
    """LRU cache of loaded models bounded by a memory budget; one load per key even under concurrency."""

    def __init__(self) -> None:
        self._models: OrderedDict[LoadSpec, LoadedModel] = OrderedDict()
        self._lock = threading.Lock()
        self._key_locks: dict[LoadSpec, threading.Lock] = {}

    def get(self, spec: LoadSpec, settings: Settings | None = None) -> LoadedModel:
        settings = settings or get_settings()
        notes: list[str] = []
        full, device, dtype = _resolve_spec(spec, settings, notes)
        with self._lock:
            if full in self._models:
                self._models.move_to_end(full)
                return self._models[full]
            key_lock = self._key_locks.setdefault(full, threading.Lock())
        try:
            with key_lock:
                with self._lock:
                    if full in self._models:
                        return self._models[full]
                with _LOAD_LOCK:
                    loaded = _load_uncached(full, device, dtype, notes, settings)
                with self._lock:
                    self._insert(full, loaded, settings.memory_budget_mb * 2**20)
                return loaded
        finally:  # a failed load leaves nothing behind for the next try
            with self._lock:
                self._key_locks.pop(full, None)

    def _insert(self, key: LoadSpec, loaded: LoadedModel, budget: int) -> None:
        if key.adapter:  # an older copy of the same adapter folder is stale now
            for old in [k for k in self._models if k.adapter == key.adapter and k.adapter_stamp != key.adapter_stamp]:
                del self._models[old]
        self._models[key] = loaded
        while len(self._models) > 1 and sum(m.size_bytes for m in self._models.values()) > budget:
            evicted, _ = self._models.popitem(last=False)
            log.info("evicted %s from the model cache (memory budget)", evicted.model)

    def loaded(self) -> list[LoadedModel]:
        with self._lock:
            return list(self._models.values())

    def clear(self) -> None:
        with self._lock:
            self._models.clear()

    def forget_adapter(self, folder: str | Path) -> int:
        """Drop every cached model carrying the adapter in ``folder`` (removed or replaced); how many."""
        folder = str(Path(folder).resolve())
        with self._lock:
            stale = [k for k in self._models if k.adapter and str(Path(k.adapter).resolve()) == folder]
            for key in stale:
                del self._models[key]
        return len(stale)


CACHE = ModelCache()


def load_for_training(model: str, *, head: Head, labels: list[str] | None = None, quantize: str | None = None,
                      dtype: str | None = "float32") -> LoadedModel:
    """A fresh, uncached copy to train (the cached ones are shared by inference requests).

    fp32 by default: LoRA updates are small, and bf16 master weights would round them away.
    """
    settings = get_settings()
    notes: list[str] = []
    spec, device, torch_dtype = _resolve_spec(LoadSpec(model=model, head=head, quantize=quantize, dtype=dtype),
                                              settings, notes)
    with _LOAD_LOCK:
        return _load_uncached(spec, device, torch_dtype, notes, settings, labels=labels, for_training=True)


def load(model: str, *, head: Head = "causal-lm", quantize: str | None = None, adapter: str | None = None,
         device: str | None = None, dtype: str | None = None) -> LoadedModel:
    """Load (or fetch from the cache) a model by built-in name, folder or Hub id."""
    return CACHE.get(LoadSpec(model=model, head=head, quantize=quantize, adapter=adapter, device=device, dtype=dtype))
