"""Merge an adapter into its base model: a full safetensors model folder, usable in every model box."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

from lmdemo.config import Settings
from lmdemo.errors import AdapterError
from lmdemo.models.adapters import ADAPTER_META, CAUSAL_HEAD, TASK_HEADS, adapter_dir, adapter_meta
from lmdemo.models.loading import load_for_training


def merge(name: str, output_dir: str | Path, settings: Settings | None = None) -> Path:
    """Merge an adapter into its base model and save a full safetensors model folder."""
    from peft import PeftModel

    folder = adapter_dir(name, settings)
    meta = adapter_meta(folder)
    head = TASK_HEADS.get(meta.get("task"), CAUSAL_HEAD)[0]
    base = load_for_training(meta.get("base_model", ""), head=head, labels=meta.get("labels"))
    try:
        merged = PeftModel.from_pretrained(base.model, str(folder)).merge_and_unload()
    except (ValueError, RuntimeError, KeyError) as exc:
        raise AdapterError(f"Adapter {name!r} could not be merged: {str(exc).splitlines()[0]}") from exc
    out = Path(output_dir)
    tag = uuid.uuid4().hex[:8]
    tmp, old = out.with_name(f"{out.name}.{tag}.tmp"), out.with_name(f"{out.name}.{tag}.old")
    try:  # written aside and swapped in: a crash never leaves a half-written model under the name
        merged.save_pretrained(tmp, safe_serialization=True)
        base.tokenizer.save_pretrained(tmp)
        (tmp / ADAPTER_META).unlink(missing_ok=True)
        (tmp / "lmdemo-merged-from.json").write_text(json.dumps({"adapter": name, **meta}, indent=2))
        if out.exists():
            os.replace(out, old)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return out
