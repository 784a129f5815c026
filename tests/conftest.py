"""Shared fixtures: every test runs offline, and the built-in models are prepared once per session."""

import os
import sys
from pathlib import Path

# Tests never reach the Hub; set before transformers/huggingface_hub are imported.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pytest  # noqa: E402

from lmdemo import store  # noqa: E402
from lmdemo.config import get_settings  # noqa: E402


@pytest.fixture(scope="session")
def prepared():
    """Fetch and convert the three built-ins into LMDEMO_HOME (a no-op once done)."""
    return store.prepare()


@pytest.fixture(scope="session")
def settings():
    return get_settings()
