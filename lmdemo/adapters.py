"""Fine-tuned adapters kept under ``$LMDEMO_HOME/adapters``: list, name safely, remove, merge."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from .config import Settings, get_settings
from .errors import AdapterError, InputError
from .loading import ADAPTER_META, adapter_dir, adapter_meta

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass
class AdapterInfo:
    name: str
    path: Path
    task: str  # classification | sft
    base_model: str
    metrics: dict = field(default_factory=dict)
    labels: list[str] | None = None


def safe_name(name: str) -> str:
    """A folder name that cannot leave the adapters folder: letters, digits, '.', '_', '-' only."""
    cleaned = _SAFE.sub("-", str(name or "").strip()).strip(".-")
    if not cleaned:
        raise InputError(f"Adapter name {name!r} has no usable characters (use letters, digits, '-', '_').")
    return cleaned[:64]


def new_adapter_path(name: str, settings: Settings | None = None) -> Path:
    settings = settings or get_settings()
    settings.adapters_dir.mkdir(parents=True, exist_ok=True)
    return settings.adapters_dir / safe_name(name)


def list_adapters(task: str | None = None, settings: Settings | None = None) -> list[AdapterInfo]:
    """Adapters in the adapters folder (optionally one task), newest first."""
    settings = settings or get_settings()
    root = settings.adapters_dir
    if not root.is_dir():
        return []
    found = []
    for folder in sorted(root.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True):
        if not (folder / "adapter_config.json").is_file() or folder.name.endswith(".tmp"):
            continue
        meta = adapter_meta(folder)
        info = AdapterInfo(folder.name, folder, meta.get("task", "sft"), meta.get("base_model", ""),
                           meta.get("metrics", {}), meta.get("labels"))
        if task is None or info.task == task:
            found.append(info)
    return found


def remove(name: str, settings: Settings | None = None) -> None:
    """Delete an adapter folder (by name, inside the adapters folder only)."""
    folder = adapter_dir(safe_name(name), settings)
    shutil.rmtree(folder)


def merge(name: str, output_dir: str | Path, settings: Settings | None = None) -> Path:
    """Merge an adapter into its base model and save a full safetensors model folder."""
    from peft import PeftModel

    from .loading import load_for_training

    folder = adapter_dir(name, settings)
    meta = adapter_meta(folder)
    head = "sequence-classification" if meta.get("task") == "classification" else "causal-lm"
    base = load_for_training(meta.get("base_model", ""), head=head, labels=meta.get("labels"))
    try:
        merged = PeftModel.from_pretrained(base.model, str(folder)).merge_and_unload()
    except (ValueError, RuntimeError, KeyError) as exc:
        raise AdapterError(f"Adapter {name!r} could not be merged: {str(exc).splitlines()[0]}") from exc
    out = Path(output_dir)
    merged.save_pretrained(out, safe_serialization=True)
    base.tokenizer.save_pretrained(out)
    (out / ADAPTER_META).unlink(missing_ok=True)
    (out / "lmdemo-merged-from.json").write_text(json.dumps({"adapter": name, **meta}, indent=2))
    return out


def save_adapter(model, output_dir: str | Path, meta: dict) -> Path:
    """Write a PEFT adapter, lmdemo.json and a model card to a .tmp sibling, then rename it into place."""
    out = Path(output_dir)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    (tmp / ADAPTER_META).write_text(json.dumps(meta, indent=2))
    (tmp / "README.md").write_text(model_card(out.name, meta))
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return out


def model_card(name: str, meta: dict) -> str:
    """A model card with YAML front matter: base model, task, data sizes and validation metrics."""
    from huggingface_hub import ModelCardData

    data = ModelCardData(base_model=meta.get("base_model_hub_id") or meta.get("base_model"), library_name="peft",
                         tags=["lora", "lmdemo", meta.get("task", "")],
                         pipeline_tag="text-classification" if meta.get("task") == "classification" else "text-generation")
    metrics = "\n".join(f"| {k} | {v:.4f} |" for k, v in (meta.get("metrics") or {}).items()
                        if isinstance(v, (int, float)))
    labels = f"\nLabels: {', '.join(meta['labels'])}.\n" if meta.get("labels") else ""
    return (f"---\n{data.to_yaml()}\n---\n\n# {name}\n\nLoRA adapter ({meta.get('task')}) for "
            f"`{meta.get('base_model')}`, trained with lmdemo on {meta.get('train_examples', '?')} examples "
            f"({meta.get('eval_examples', '?')} held back for validation).\n{labels}\n"
            f"| validation metric | value |\n|---|---|\n{metrics}\n\n"
            f"Training settings: `{json.dumps(meta.get('config', {}))}`\n")
