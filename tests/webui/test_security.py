"""Security defaults: request limits, what files the app serves, no unpickling, safetensors only,
no remote code, no secrets in logs."""

from __future__ import annotations

import http.client
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Code that runs in the app, the CLI, the Space or the scripts (the tests build hostile files on purpose).
SOURCES = [p for folder in ("lmdemo", "webui", "bench", "scripts", "spaces") for p in (ROOT / folder).rglob("*.py")]
SOURCES.append(ROOT / "app.py")


class _Payload:
    """Unpickling this runs code: it creates the marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


def test_upload_and_queue_limits_are_set(app, client):
    from lmdemo.serve.slots import QUEUE_SIZE
    from webui.app import MAX_FILE_SIZE

    assert MAX_FILE_SIZE == "10mb" and app.max_file_size == 10 * 2**20
    assert client.config["max_file_size"] == 10 * 2**20  # what the page is told, too
    assert app._queue.max_size == QUEUE_SIZE == 64  # gradio keeps it on the queue object only
    from webui.limits import DELETE_CACHE

    assert app.delete_cache == DELETE_CACHE and DELETE_CACHE[1] <= 3600  # uploads and results do not pile up


def _raw_get(base_url: str, path: str) -> tuple[int, bytes]:
    """GET `path` byte for byte: http.client puts it on the request line as given, where httpx (and a browser)
    would resolve `..` segments first and so never send a traversal at all."""
    from urllib.parse import urlsplit

    url = urlsplit(base_url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _curl_get(base_url: str, path: str) -> tuple[int, bytes]:
    """The same request from curl, told not to squash dot segments (--path-as-is) nor expand [] (--globoff)."""
    out = subprocess.run(["curl", "-s", "--path-as-is", "--globoff", "--max-time", "30", "-o", "-",
                          "-w", "\n%{http_code}", base_url.rstrip("/") + path], capture_output=True, timeout=60)
    body, _, code = out.stdout.rpartition(b"\n")
    return int(code), body


def _ways_to_reach(target: Path, upload_dir: str) -> dict[str, str]:
    """Request paths that name `target` from the file route: absolute, encoded, and climbing out of the
    upload folder or the server's working directory, with dot segments plain, %-encoded and double-encoded."""
    rest = str(target).lstrip("/")
    climb = len(Path(upload_dir).parts) + 2  # past the root: extra `..` stay at /
    route = "/gradio_api/file="
    return {
        "absolute": f"{route}{target}",
        "double slash": f"{route}/{target}",
        "encoded slashes": route + str(target).replace("/", "%2f"),
        "../ from cwd": route + "../" * 12 + rest,
        "relative to cwd": route + os.path.relpath(target, os.getcwd()),
        "../ from upload": f"{route}{upload_dir}/" + "../" * climb + rest,
        "%2e%2e/ from upload": f"{route}{upload_dir}/" + "%2e%2e/" * climb + rest,
        "..%2f from upload": f"{route}{upload_dir}/" + "..%2f" * climb + rest.replace("/", "%2f"),
        "%2e%2e%2f from upload": f"{route}{upload_dir}/" + "%2e%2e%2f" * climb + rest,
        "%252e%252e/ from upload": f"{route}{upload_dir}/" + "%252e%252e/" * climb + rest,
        "%252e%252e%252f from cwd": route + "%252e%252e%252f" * 12 + rest,
    }


def test_the_app_serves_its_own_files_only(app, app_url, settings, tmp_path):
    """Raw requests (no client-side path clean-up) for files outside gradio's upload cache get a 4xx and never
    the file's bytes; the same requests for an uploaded file do return it, so a leak would be seen."""
    from urllib.parse import unquote

    import httpx

    assert not app.allowed_paths  # nothing beyond gradio's own upload/output cache
    secret = f"lmdemo-secret-{uuid.uuid4().hex}"
    in_tmp = tmp_path / "secret.txt"
    in_tmp.write_text(secret)
    in_home = settings.adapters_dir / f"leak-probe-{uuid.uuid4().hex[:8]}.json"  # a file, not an adapter folder
    settings.adapters_dir.mkdir(parents=True, exist_ok=True)
    in_home.write_text(json.dumps({"base_model": "x", "secret": secret}))
    bundled = next((ROOT / "lmdemo" / "data" / "adapters").rglob("*.safetensors"))  # always there, not served
    # what each file must never leak: our secret, or the first bytes of a file we did not write
    targets = {in_tmp: secret.encode(), in_home: secret.encode(), Path("/etc/passwd"): b"root:",
               ROOT / "README.md": (ROOT / "README.md").read_bytes()[:60],
               bundled: bundled.read_bytes()[:60]}
    senders = {"http.client": _raw_get}
    if shutil.which("curl"):
        senders["curl --path-as-is"] = _curl_get
    try:
        control = "an uploaded file " + uuid.uuid4().hex
        r = httpx.post(f"{app_url}gradio_api/upload", files={"files": ("mine.txt", control.encode(), "text/plain")})
        served = r.json()[0]
        upload_dir = str(Path(served).parent)
        for how, get in senders.items():
            # control: the raw route serves an uploaded file, also by a path that climbs out and back in,
            # so the server does receive and resolve the dot segments these requests carry
            for path in (f"/gradio_api/file={served}",
                         f"/gradio_api/file={upload_dir}/../{Path(upload_dir).name}/mine.txt",
                         f"/gradio_api/file={upload_dir}/%2e%2e/{Path(upload_dir).name}/mine.txt"):
                assert get(app_url, path) == (200, control.encode()), (how, path)
            for target, fingerprint in targets.items():
                assert target.is_file() and fingerprint  # a 403 for a missing file would prove nothing
                for way, path in _ways_to_reach(target, upload_dir).items():
                    status, body = get(app_url, path)
                    assert 400 <= status < 500, (how, way, path, status, body[:200])
                    assert fingerprint not in body, (how, way, path, "leaked")
                    if ".." in unquote(path) and "%25" not in path:  # the server saw the dot segments
                        assert b".." in body, (how, way, body[:200])  # and gradio itself refused them
    finally:
        in_home.unlink(missing_ok=True)


def test_no_code_unpickles_anything():
    banned = re.compile(r"\bimport (c?pickle|dill|cloudpickle|joblib)\b|\bfrom (c?pickle|dill|joblib) import\b"
                        r"|torch\.load\(|read_pickle\(|allow_pickle\s*=\s*True|weights_only\s*=\s*False")
    hits = [f"{p.relative_to(ROOT)}:{n}" for p in SOURCES for n, line in enumerate(p.read_text().splitlines(), 1)
            if banned.search(line)]
    assert not hits, hits


def test_trust_remote_code_is_never_enabled():
    hits = []
    for path in SOURCES:
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if "trust_remote_code" in line and not re.search(r"trust_remote_code\s*=\s*False\b", line):
                hits.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not hits, hits


def test_pickled_uploads_are_refused_unopened(tmp_path, capsys):
    from lmdemo.data import tabular as datasets_io
    from lmdemo.errors import InputError

    marker = tmp_path / "unpickled"
    for name in ("data.pkl", "data.pickle", "data.pt"):
        (tmp_path / name).write_bytes(pickle.dumps(_Payload(marker)))
        with pytest.raises(InputError, match="unsupported file type"):
            datasets_io.prepare(tmp_path / name, "classification")
    assert not marker.exists()


def test_models_and_adapters_load_from_safetensors_only(tmp_path, prepared, settings):
    """A folder whose only weights are a pickle is refused, and the pickle never runs."""
    from lmdemo.errors import LmdemoError
    from lmdemo.models.adapters import adapter_dir
    from lmdemo.models.loading import load

    marker = tmp_path / "unpickled"
    model = tmp_path / "pickled-model"
    shutil.copytree(settings.models_dir / "all-minilm-l6-v2", model,
                    ignore=shutil.ignore_patterns("*.safetensors", "*.index.json"))
    (model / "pytorch_model.bin").write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(LmdemoError, match="safetensors"):
        load(str(model), head="encoder")
    adapter = tmp_path / "pickled-adapter"
    shutil.copytree(ROOT / "lmdemo" / "data" / "adapters" / "sentiment-minilm", adapter,
                    ignore=shutil.ignore_patterns("*.safetensors"))
    (adapter / "adapter_model.bin").write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(LmdemoError, match="only safetensors"):
        adapter_dir(str(adapter))
    assert not marker.exists()


def test_a_token_in_the_environment_never_reaches_the_logs(tmp_path, prepared):
    """The app in its own process with HF_TOKEN set: serve, fail on a Hub id, upload; the log never holds it."""
    import httpx
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    sys.path.insert(0, str(ROOT / "bench"))
    from soak import serve

    token = "hf_lmdemoTestSecret0123456789abcdefXYZ"
    log = tmp_path / "server.log"
    with serve(log, env={"HF_TOKEN": token, "HUGGING_FACE_HUB_TOKEN": token}) as (url, _):
        client = Client(url, verbose=False)
        assert client.predict(text="Lovely.", api_name="/sentiment")["label"] == "positive"
        with pytest.raises(AppError):
            client.predict(prompt="hi", model="someone/private-model", api_name="/generate")
        with pytest.raises(AppError):
            client.predict(prompt="hi", temperature=-1, api_name="/generate")
        with pytest.raises(AppError):
            client.predict(text="  ", api_name="/sentiment")
        page = httpx.get(url).text + httpx.get(f"{url}config").text
    text = log.read_text()
    assert "Running on local URL" in text  # the log was captured
    assert "Traceback" not in text  # a user's bad input is answered, not logged as a server fault
    assert token not in text and token[3:20] not in text
    assert token not in page
    # the CLI, failing on a Hub id, does not print it either
    cli = subprocess.run([sys.executable, "-m", "lmdemo", "generate", "hi", "--model", "someone/private-model"],
                         capture_output=True, text=True, cwd=ROOT, timeout=300,
                         env=dict(os.environ, HF_TOKEN=token, HF_HUB_OFFLINE="1"))
    assert cli.returncode == 2 and "someone/private-model" in cli.stderr
    assert token not in cli.stdout + cli.stderr


def test_demo_mode_api_never_reads_server_files(settings):
    """On a shared Space the API's `data` may name a bundled set, a sample or a Hub dataset, not a server file."""
    from lmdemo.config import Settings, set_settings
    from lmdemo.errors import InputError
    from webui.handlers import api_data

    assert api_data("/etc/passwd") == "/etc/passwd"  # the operator's own machine: their files
    set_settings(Settings(home=settings.home, demo_mode=True))
    try:
        for path in ("/etc/passwd", "README.md", "tests/../README.md", "~/.bashrc"):
            with pytest.raises(InputError, match="demo mode"):
                api_data(path)
        assert api_data("") is None and api_data("someone/some-dataset") == "someone/some-dataset"
    finally:
        set_settings(settings)
