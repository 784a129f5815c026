"""Real OpenAI-compatible engines for the tests, on loopback: llama-cpp-python's own server on a built-in GGUF."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest
from conftest import free_port


@contextlib.contextmanager
def llama_server(key: str, alias: str, model: str = "smollm2-135m-instruct") -> Iterator[str]:
    """`python -m llama_cpp.server` on the built-in's GGUF file, with a bearer key and a model alias; yields its
    base URL (…/v1). Skips without llama-cpp-python, except in CI, which installs it and must run these."""
    from lmdemo.config import get_settings
    from lmdemo.engine import llamacpp
    from lmdemo.models import store

    if not llamacpp.available():
        if os.environ.get("CI"):
            raise RuntimeError("llama-cpp-python is missing in CI: .ci/run should have installed it")
        pytest.skip("llama-cpp-python not installed: pip install -r requirements-llama.txt")
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1"
    log = open(Path(get_settings().home) / f"llama-server-{port}.log", "w+")
    proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(store.gguf_file(model)),
                             "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--model_alias", alias,
                             "--api_key", key], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"{url}/models", headers={"Authorization": f"Bearer {key}"}, timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                raise RuntimeError(f"llama_cpp.server did not start: {log.read()[-2000:]}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


@contextlib.contextmanager
def key_in_env(name: str, value: str) -> Iterator[None]:
    """An environment variable set for the block, restored after."""
    saved = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = saved
