"""Shared fixtures: every test runs offline, and the built-in models are prepared once per session."""

import os
import sys
from pathlib import Path

# Tests never reach the Hub; set before transformers/huggingface_hub are imported.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # shared helpers (fake_hub, stream_helpers) for every folder

import pytest  # noqa: E402

from lmdemo.models import store  # noqa: E402
from lmdemo.config import get_settings  # noqa: E402


# Fixtures that need the built-in models (converted on first use: minutes on a fresh machine).
BUILTIN_FIXTURES = {"prepared", "app", "app_url", "client"}


def pytest_collection_modifyitems(config, items):
    """Tests on the built-ins are marked `builtin`, so the quick tier can leave them out."""
    for item in items:
        if BUILTIN_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.builtin)


@pytest.fixture(scope="session")
def prepared():
    """Fetch and convert the three built-ins into LMDEMO_HOME (a no-op once done)."""
    return store.prepare()


@pytest.fixture(scope="session")
def settings():
    return get_settings()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def app(prepared):
    """The app (its gr.Blocks), started once per test session on a free loopback port."""
    from webui.app import launch

    demo = launch(port=free_port(), host="127.0.0.1", block=False, warm=False)
    yield demo
    demo.close()


@pytest.fixture(scope="session")
def app_url(app):
    """The shared app's address (API, bad-input, security and browser tests)."""
    return app.local_url


@pytest.fixture(scope="session")
def client(app_url):
    """A gradio_client session against the shared app, as a user's script would open one."""
    from gradio_client import Client

    return Client(app_url, verbose=False)


@pytest.fixture
def online(monkeypatch, tmp_path):
    """huggingface_hub (and transformers through it) pointed at a loopback Hub, with its own empty cache."""
    import huggingface_hub.constants as hc

    from fake_hub import FakeHub
    from lmdemo.models import hub

    with FakeHub() as fake:
        monkeypatch.setenv("HF_ENDPOINT", fake.url)
        # transformers downloads through huggingface_hub's defaults, read from the environment at import
        monkeypatch.setattr(hc, "ENDPOINT", fake.url)
        monkeypatch.setattr(hc, "HUGGINGFACE_CO_URL_TEMPLATE", fake.url + "/{repo_id}/resolve/{revision}/{filename}")
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.delenv("HF_TOKEN", raising=False)
        monkeypatch.setattr(hc, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
        monkeypatch.setattr(hub, "_hub_probe", None)
        monkeypatch.setattr(hub, "_PULLED", {})
        yield fake
    hub._hub_probe = None


@pytest.fixture(scope="module")
def tiny_home(tmp_path_factory):
    """LMDEMO_HOME in tmp for a module of tiny-model tests (default settings otherwise), restored afterwards;
    the `datasets` cache that reading training files writes goes to tmp too."""
    import datasets

    from lmdemo.config import Settings, set_settings

    before = get_settings()
    home = tmp_path_factory.mktemp("lmdemo-home")
    set_settings(Settings(home=home))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(datasets.config, "HF_DATASETS_CACHE", home / "datasets")
        yield home
    set_settings(before)


@pytest.fixture
def fp32():
    """Load in fp32 for one test: exact comparisons with a reference computed one text at a time. Under bf16
    (the default on CPUs with AVX512-BF16) a padded batch rounds differently, and a near-tie may flip."""
    from dataclasses import replace

    import torch

    from lmdemo.config import set_settings

    before = get_settings()
    set_settings(replace(before, dtype="float32"))
    yield torch.float32
    set_settings(before)


@pytest.fixture(autouse=True)
def _close_test_pages():
    """Close the browser contexts a test opened (a module fixture's, opened before, stay for its module)."""
    import browser_helpers

    mark = len(browser_helpers.OPENED)
    yield
    while len(browser_helpers.OPENED) > mark:
        context = browser_helpers.OPENED.pop()
        try:
            context.close()
        except Exception:  # noqa: BLE001 - its browser already closed
            pass


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium per test module (browser tests; skipped without Debian's chromium outside CI)."""
    from browser_helpers import launch, require_chromium

    require_chromium(module_level=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = launch(p)
        yield b
        b.close()
