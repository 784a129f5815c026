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
