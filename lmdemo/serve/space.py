"""Assemble a self-contained Hugging Face Space folder (gradio SDK) from the current code and ``spaces/``."""

from __future__ import annotations

import shutil
from pathlib import Path

from lmdemo.errors import InputError

ROOT = Path(__file__).resolve().parents[2]
SPACE_SRC = ROOT / "spaces"
# What the app needs at run time; tests, benchmarks and dev files stay behind.
CODE = ("lmdemo", "webui")
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.tmp", ".pytest_cache")
REQUIRED_KEYS = {"title": str, "sdk": str, "sdk_version": str, "app_file": str, "python_version": str,
                 "suggested_hardware": str, "models": list, "license": str, "short_description": str}


def front_matter(readme: str | Path) -> dict:
    """The YAML front matter of a Space README, parsed by huggingface_hub."""
    from huggingface_hub import metadata_load

    data = metadata_load(Path(readme))
    if not data:
        raise InputError(f"{readme} has no YAML front matter.")
    return data


def check_front_matter(data: dict) -> list[str]:
    """Problems with a Space's front matter: missing keys, wrong types, sdk not gradio (empty when fine)."""
    problems = [f"`{k}` is missing" for k in REQUIRED_KEYS if k not in data]
    problems += [f"`{k}` should be {t.__name__}, got {type(data[k]).__name__}"
                 for k, t in REQUIRED_KEYS.items() if k in data and not isinstance(data[k], t)]
    if data.get("sdk") != "gradio":
        problems.append("`sdk` must be gradio")
    if len(str(data.get("short_description", ""))) > 60:
        problems.append("`short_description` is longer than 60 characters")
    return problems


def pinned(requirements: str | Path) -> dict[str, str]:
    """name -> exact version of each `name==version` line (local labels like +cpu dropped)."""
    pins = {}
    for line in Path(requirements).read_text().splitlines():
        line = line.split("#")[0].strip()
        if "==" in line and not line.startswith("-"):
            name, version = line.split("==", 1)
            pins[name.split("[")[0].strip().lower()] = version.strip().split("+")[0]
    return pins


def build(out_dir: str | Path) -> list[str]:
    """Copy the Space files (README, requirements, app.py) and the app's packages into ``out_dir``."""
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise InputError(f"Output folder {str(out)!r} is not empty; pick a new folder for the Space.")
    data = front_matter(SPACE_SRC / "README.md")
    problems = check_front_matter(data)
    gradio_pin = pinned(ROOT / "requirements.txt").get("gradio")
    if data.get("sdk_version") != gradio_pin:
        problems.append(f"`sdk_version` differs from the pinned gradio {gradio_pin}")
    if problems:
        raise InputError("spaces/README.md: " + "; ".join(problems))
    out.mkdir(parents=True, exist_ok=True)
    for name in ("README.md", "requirements.txt", "app.py"):
        shutil.copy2(SPACE_SRC / name, out / name)
    for package in CODE:
        shutil.copytree(ROOT / package, out / package, ignore=IGNORE)
    return sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
