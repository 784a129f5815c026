"""Merge an adapter into its base model: a full safetensors model folder, usable in every model box."""

from __future__ import annotations

import json
from pathlib import Path

from lmdemo.config import Settings
from lmdemo.errors import AdapterError
from lmdemo.models.adapters import ADAPTER_META, adapter_dir, adapter_meta
from lmdemo.models.loading import load_for_training


def merge(name: str, output_dir: str | Path, settings: Settings | None = None) -> Path:
    """Merge an adapter into its base model and save a full safetensors model folder."""
    from peft import PeftModel

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
