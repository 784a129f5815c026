"""Typed settings for lmdemo, read once from the environment."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path
from typing import Literal, get_args
from urllib.parse import urlsplit

from lmdemo.errors import ConfigError

Quantize = Literal["none", "8bit", "4bit"]
Device = Literal["auto", "cpu", "cuda"]
DType = Literal["auto", "bfloat16", "float16", "float32"]
FastgenWeights = Literal["exact", "int8", "int4", "gguf"]

QUANTIZE_CHOICES: tuple[str, ...] = get_args(Quantize)
DEVICE_CHOICES: tuple[str, ...] = get_args(Device)
DTYPE_CHOICES: tuple[str, ...] = get_args(DType)
FASTGEN_WEIGHTS_CHOICES: tuple[str, ...] = get_args(FastgenWeights)


@dataclass(frozen=True)
class DemoLimits:
    """What demo mode caps so that one shared free CPU Space stays responsive for everyone."""

    max_train_rows: int = 400
    max_epochs: int = 3
    max_steps: int = 60
    queue_size: int = 16
    max_eval_rows: int = 100  # rows one evaluation scores per model
    max_eval_models: int = 2  # models one comparison scores
    max_eval_tokens: int = 512  # tokens per row a perplexity reads (longer rows are cut, with a note)
    max_adapters: int = 3  # adapters one visitor keeps at a time
    lstm_seconds: float = 30.0  # one LM-lab LSTM training run (the bundled corpus needs about 4 s)


DEMO_LIMITS = DemoLimits()


# Installs the opt-in llama.cpp back-end; its compile time is what a user should expect.
LLAMA_INSTALL_HINT = "pip install -r requirements-llama.txt (compiles llama.cpp: about 14 minutes on 2 cores, once)"


def require_llama_cpp() -> None:
    """ConfigError with the install command when llama-cpp-python is absent; probed, never imported (settings are
    read before any back-end is needed)."""
    if find_spec("llama_cpp") is None:
        raise ConfigError(f"LMDEMO_FASTGEN_WEIGHTS=gguf needs llama-cpp-python, which is not installed: {LLAMA_INSTALL_HINT}")


def _choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    value = value.strip().lower()
    if value not in choices:
        raise ConfigError(f"`{name}` must be one of {', '.join(choices)}; got {value!r}")
    return value


ENGINE_SCHEMES = ("openai",)  # remote engine protocols a model box takes: `openai:URL[#MODEL]` (docs/remote.md)
# A back-end's name: what a model box takes without looking like a path, a Hub id or an address.
_BACKEND_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def engine_address(value: str, what: str = "the engine") -> tuple[str, str | None]:
    """(base URL, model id or None) of `openai:http(s)://HOST[:PORT][/PATH][#MODEL]`; ConfigError naming ``what``.
    A bare host gets OpenAI's `/v1` path."""
    value = str(value).strip()
    scheme, _, rest = value.partition(":")
    if scheme not in ENGINE_SCHEMES or not rest:
        shown = "an address with a user or key" if "@" in value else repr(value)  # never echo a secret
        raise ConfigError(f"{what} must be openai:http://HOST:PORT/v1 (optionally #MODEL); got {shown}")
    url, _, model = rest.partition("#")
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 (raises on a port that is not a number)
    except ValueError:
        raise ConfigError(f"{what}: {url!r} is not a valid address") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{what}: {url!r} must start with http:// or https:// and name a host")
    if parts.username or parts.password:
        raise ConfigError(f"{what}: the address carries a user or key; keys come from the environment only "
                          "(LMDEMO_REMOTE_API_KEY, LMDEMO_BACKEND_KEY_<NAME>)")
    if parts.query:
        raise ConfigError(f"{what}: {url!r} has a query string; give the base URL (e.g. http://HOST:8000/v1)")
    if "#" in value and not model.strip():
        raise ConfigError(f"{what}: nothing after `#`; give a model id or leave the `#` out (the server's first model)")
    path = parts.path.rstrip("/") or "/v1"
    return f"{parts.scheme}://{parts.netloc}{path}", model.strip() or None


def _backends(value: dict[str, str] | str) -> dict[str, str]:
    """LMDEMO_BACKENDS (`name=openai:URL#MODEL,...`) or a dict, checked: names as a model box takes them (not a
    built-in's name), addresses that :func:`engine_address` reads."""
    from lmdemo.models.registry import BUILTINS

    if isinstance(value, str):
        pairs: list[tuple[str, str]] = []
        for entry in (e.strip() for e in value.split(",")):
            if not entry:
                continue
            name, eq, address = entry.partition("=")
            if not eq:
                raise ConfigError(f"`backends` entry {entry!r} must be NAME=openai:URL[#MODEL]")
            pairs.append((name.strip(), address.strip()))
    else:
        pairs = [(str(k).strip(), str(v).strip()) for k, v in dict(value or {}).items()]
    out: dict[str, str] = {}
    for name, address in pairs:
        if not _BACKEND_NAME.fullmatch(name):
            raise ConfigError(f"`backends` name {name!r} must be letters, digits, `.`, `_` or `-` (at most 64, no "
                              "`/` or `:`), so that it reads as a name in a model box")
        if name in BUILTINS or name.lower() in ("default", "none"):
            raise ConfigError(f"`backends` name {name!r} is taken by lmdemo's own models; choose another")
        if name in out:
            raise ConfigError(f"`backends` names {name!r} twice")
        engine_address(address, f"`backends` entry {name!r}")
        out[name] = address
    return out


@dataclass
class Settings:
    """Where lmdemo keeps its files and how it loads models."""

    home: Path = field(
        default_factory=lambda: Path.home() / ".cache" / "lmdemo",
        metadata={"help": "Cache folder for fetched packages, converted models and adapters (LMDEMO_HOME)."},
    )
    device: Device = field(default="auto", metadata={"help": "auto picks CUDA when present, else CPU (LMDEMO_DEVICE)."})
    quantize: Quantize = field(default="none", metadata={"help": "Default weight quantisation (LMDEMO_QUANTIZE)."})
    dtype: DType = field(default="auto", metadata={"help": "auto: bf16 (faster than fp32 on CPUs with AVX512-BF16/AMX, and on GPUs)."})
    # 4 GiB holds all three built-ins in bf16 with room to spare on a 16 GB Space.
    memory_budget_mb: int = field(default=4096, metadata={"help": "Upper bound for the loaded-model cache (LMDEMO_MEMORY_BUDGET_MB)."})
    max_model_mb: int = field(default=8192, metadata={"help": "Largest Hub model (its safetensors) a model box may load, checked before any download (LMDEMO_MAX_MODEL_MB)."})
    demo_mode: bool = field(default=False, metadata={"help": "Shared public Space: training and queue capped (LMDEMO_DEMO_MODE=1)."})
    allowed_models: tuple[str, ...] = field(default=(), metadata={"help": "Demo mode: models (Hub ids, adapter repos) loadable besides the built-ins, comma-separated (LMDEMO_ALLOWED_MODELS)."})
    fast_generation: bool = field(default=True, metadata={"help": "CPU Llama/Gemma 3 decode through lmdemo.engine.fastgen, same tokens as generate (LMDEMO_FASTGEN=0 turns it off)."})
    api_key: str = field(default="", repr=False, metadata={"help": "When set, the OpenAI-compatible API (/v1) asks for it as a bearer token (LMDEMO_API_KEY)."})
    backends: dict[str, str] = field(default_factory=dict, metadata={"help": "Named remote OpenAI-compatible engines, typed by name in a model box: NAME=openai:URL[#MODEL],... (LMDEMO_BACKENDS; docs/remote.md)."})
    fastgen_weights: FastgenWeights = field(default="exact", metadata={"help": "fastgen's decode weights: exact (same tokens as generate), int8/int4 copies, or gguf: the built-in's own GGUF file through llama.cpp (requirements-llama.txt); faster, output changes (LMDEMO_FASTGEN_WEIGHTS)."})

    def __post_init__(self) -> None:
        self.home = Path(self.home).expanduser()
        self.device = _choice("device", self.device, DEVICE_CHOICES)  # type: ignore[assignment]
        self.quantize = _choice("quantize", self.quantize, QUANTIZE_CHOICES)  # type: ignore[assignment]
        self.dtype = _choice("dtype", self.dtype, DTYPE_CHOICES)  # type: ignore[assignment]
        self.fastgen_weights = _choice("fastgen_weights", self.fastgen_weights, FASTGEN_WEIGHTS_CHOICES)  # type: ignore[assignment]
        if self.fastgen_weights == "gguf":
            require_llama_cpp()
        if int(self.memory_budget_mb) <= 0:
            raise ConfigError(f"`memory_budget_mb` must be positive; got {self.memory_budget_mb}")
        self.memory_budget_mb = int(self.memory_budget_mb)
        if int(self.max_model_mb) <= 0:
            raise ConfigError(f"`max_model_mb` must be positive; got {self.max_model_mb}")
        self.max_model_mb = int(self.max_model_mb)
        if isinstance(self.allowed_models, str):
            self.allowed_models = tuple(m.strip() for m in self.allowed_models.split(",") if m.strip())
        self.allowed_models = tuple(self.allowed_models)
        self.backends = _backends(self.backends)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "Settings":
        """Build settings from LMDEMO_* environment variables, defaults for the rest."""
        env = os.environ if env is None else env
        kwargs: dict[str, object] = {}
        for key, attr in (
            ("LMDEMO_HOME", "home"),
            ("LMDEMO_DEVICE", "device"),
            ("LMDEMO_QUANTIZE", "quantize"),
            ("LMDEMO_DTYPE", "dtype"),
            ("LMDEMO_FASTGEN_WEIGHTS", "fastgen_weights"),
            ("LMDEMO_ALLOWED_MODELS", "allowed_models"),
            ("LMDEMO_BACKENDS", "backends"),
            ("LMDEMO_API_KEY", "api_key"),
        ):
            if env.get(key):
                kwargs[attr] = env[key]
        if env.get("LMDEMO_DEMO_MODE"):
            flag = env["LMDEMO_DEMO_MODE"].strip().lower()
            if flag not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise ConfigError(f"`LMDEMO_DEMO_MODE` must be 1 or 0; got {env['LMDEMO_DEMO_MODE']!r}")
            kwargs["demo_mode"] = flag in ("1", "true", "yes", "on")
        if env.get("LMDEMO_FASTGEN"):
            flag = env["LMDEMO_FASTGEN"].strip().lower()
            if flag not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise ConfigError(f"`LMDEMO_FASTGEN` must be 1 or 0; got {env['LMDEMO_FASTGEN']!r}")
            kwargs["fast_generation"] = flag in ("1", "true", "yes", "on")
        for key, attr in (("LMDEMO_MEMORY_BUDGET_MB", "memory_budget_mb"), ("LMDEMO_MAX_MODEL_MB", "max_model_mb")):
            if env.get(key):
                try:
                    kwargs[attr] = int(env[key])
                except ValueError:
                    raise ConfigError(f"`{key}` must be an integer; got {env[key]!r}") from None
        return cls(**kwargs)  # type: ignore[arg-type]

    @property
    def downloads_dir(self) -> Path:
        return self.home / "downloads"

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def adapters_dir(self) -> Path:
        return self.home / "adapters"


_settings: Settings | None = None


def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first use."""
    global _settings
    if _settings is None:
        _settings = Settings.from_env()
    return _settings


def set_settings(settings: Settings | None) -> None:
    """Replace the process-wide settings (tests, CLI flags); None re-reads the environment."""
    global _settings
    _settings = settings
