"""The Hugging Face Hub, network only: is it reachable, fetch an adapter repo, upload a folder.

Everything goes through ``huggingface_hub``. The Hub address comes from ``HF_ENDPOINT`` when set, read at
call time. A token is only ever handed to ``huggingface_hub``; messages that could carry it are scrubbed.
What is uploaded (adapter files, model card) is built by :mod:`lmdemo.models.adapters`.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from lmdemo.config import get_settings
from lmdemo.errors import AdapterError, HubError, InputError

__all__ = ["HubError", "endpoint", "hub_reachable", "check_repo_id", "scrub", "download_adapter", "upload",
           "check_weights_size"]

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "lmdemo.json", "README.md")

_hub_probe: tuple[float, bool] | None = None


def endpoint() -> str | None:
    return os.environ.get("HF_ENDPOINT") or None


def hub_reachable(timeout: float = 2.0) -> bool:
    """Whether the Hub endpoint answers a TCP connect (cached for a minute); False when HF_HUB_OFFLINE is set."""
    global _hub_probe
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return False
    if _hub_probe and time.monotonic() - _hub_probe[0] < 60:
        return _hub_probe[1]
    from urllib.parse import urlparse

    url = urlparse(endpoint() or "https://huggingface.co")
    try:
        with socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout):
            ok = True
    except OSError:
        ok = False
    _hub_probe = (time.monotonic(), ok)
    return ok


def read_token() -> bool | None:
    """The token Hub reads go out with: none in demo mode (False: anonymous), where the host's HF_TOKEN or stored
    login belongs to the operator, never to a visitor; None elsewhere (huggingface_hub's own choice)."""
    return False if get_settings().demo_mode else None


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


def scrub(text: str, token: str | None) -> str:
    """The text with every occurrence of the token masked."""
    return text.replace(token, "***") if token else text


_PULLED: dict[str, Path | None] = {}


def check_weights_size(repo_id: str, patterns: tuple[str, ...] = ("*.safetensors",)) -> None:
    """Refuse a Hub repo whose weights are over ``LMDEMO_MAX_MODEL_MB``, asked of the Hub before any download.

    Quiet when the Hub cannot say (offline, no sizes): the download that follows reports its own error.
    """
    from fnmatch import fnmatch

    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    limit = get_settings().max_model_mb
    if not hub_reachable():
        return
    try:
        info = HfApi(endpoint=endpoint()).model_info(repo_id, files_metadata=True, token=read_token())
    except (HfHubHTTPError, OSError, ValueError):
        return
    total = sum((f.size or 0) for f in info.siblings or [] if any(fnmatch(f.rfilename, p) for p in patterns))
    if total > limit * 2**20:
        raise InputError(f"{repo_id!r} has {total / 2**20:,.0f} MB of weights; this app loads at most "
                         f"{limit:,} MB (LMDEMO_MAX_MODEL_MB).")


def download_adapter(repo_id: str) -> Path | None:
    """Local folder of a Hub adapter repo (downloaded once), or None when ``repo_id`` is not an adapter repo.

    ``adapter_config.json`` is fetched alone first, so a model repo is recognised before any weights move.
    Offline, only the local Hub cache is read; a repo missing there gives None so that the caller's
    model loading reports the offline error.
    """
    if repo_id in _PULLED:
        return _PULLED[repo_id]
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    online = hub_reachable()
    kwargs = dict(repo_type="model", endpoint=endpoint(), local_files_only=not online, token=read_token())
    try:
        local = Path(snapshot_download(repo_id, allow_patterns=["adapter_config.json"], **kwargs))
        if not (local / "adapter_config.json").is_file():
            _PULLED[repo_id] = None
            return None
        if online:
            check_weights_size(repo_id, ("adapter_model.safetensors",))
        local = Path(snapshot_download(repo_id, allow_patterns=list(ADAPTER_FILES), **kwargs))
    except LocalEntryNotFoundError:
        return None
    except (HfHubHTTPError, OSError, ValueError):
        if online:
            _PULLED[repo_id] = None
        return None
    if not (local / "adapter_model.safetensors").is_file():
        raise AdapterError(f"Hub adapter {repo_id!r} has no adapter_model.safetensors (only safetensors are loaded).")
    _PULLED[repo_id] = local
    return local


def upload(folder: Path, repo_id: str, *, token: str | None, private: bool = False) -> str:
    """Create the repo if needed and upload ``folder`` to it; returns the repo URL."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    if not hub_reachable():
        raise HubError("The Hub is unreachable (offline): nothing was uploaded. Use --dry-run OUT_DIR to see the folder.")
    api = HfApi(endpoint=endpoint(), token=token or None)
    try:
        url = api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        api.upload_folder(repo_id=repo_id, repo_type="model", folder_path=folder,
                          commit_message="Upload LoRA adapter and model card from lmdemo")
    except HfHubHTTPError as exc:
        status = getattr(exc.response, "status_code", None)
        why = {401: "the token was refused (log in with `hf auth login`, set HF_TOKEN, or use the login button)",
               403: "the token may not write to this repo (it needs write access)"}.get(
            status, scrub(str(exc).splitlines()[0], token))
        raise HubError(f"Push to {repo_id} failed: {why}.") from None
    except (OSError, ValueError) as exc:  # connection problems; huggingface_hub's URL/repo checks
        raise HubError(f"Push to {repo_id} failed: {scrub(str(exc).splitlines()[0], token)}") from None
    return str(url)
