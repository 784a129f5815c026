"""The opt-in llama.cpp backend (LMDEMO_FASTGEN_WEIGHTS=gguf) on the built-ins' own GGUF files.

Its arithmetic differs from transformers', so these tests check that it runs the same model (logits close to
transformers' on the same tokens, same next-token choice almost everywhere), that it plugs into streaming,
stop and seeded sampling like the other paths, and that what it cannot take falls back.
"""

import hashlib
import os
from pathlib import Path

import pytest
import torch

from lmdemo.engine import fastgen
from lmdemo.engine import llamacpp
from lmdemo.models import store
from lmdemo.config import Settings, set_settings
from lmdemo.config import ConfigError
from lmdemo.errors import StoreError
from lmdemo.jobs.generation import GenerationRequest, build_inputs
from lmdemo.models.loading import load
from lmdemo.models.registry import BUILTINS
from lmdemo.engine.streaming import GenerationParams, stream
from lmdemo.jobs.base import run_to_end
from stream_helpers import stop_after

# A fixed long English text (the project README as it was when the agreement floors were measured).
README = (Path(__file__).resolve().parents[1] / "data" / "long_text.md").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def llama():
    if not llamacpp.available():
        # CI installs the extra (.ci/run) and must run these; a developer's machine may lack it.
        if os.environ.get("CI"):
            raise RuntimeError("llama-cpp-python is missing in CI: .ci/run should have installed it")
        pytest.skip("llama-cpp-python not installed: pip install -r requirements-llama.txt")


def test_gguf_file_is_reassembled_once(prepared, settings):
    path = store.gguf_file("gemma-3-270m")
    source = BUILTINS["gemma-3-270m"].source
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert path.name == source.filename and digest == source.sha256
    mtime = path.stat().st_mtime_ns
    assert store.gguf_file("gemma-3-270m") == path and path.stat().st_mtime_ns == mtime
    with pytest.raises(StoreError, match="GGUF"):
        store.gguf_file("all-minilm-l6-v2")


def test_gguf_setting_without_llama_cpp_says_how_to_install(monkeypatch, settings):
    import lmdemo.config

    monkeypatch.setattr(lmdemo.config, "find_spec", lambda name: None)  # as if llama-cpp-python were absent
    with pytest.raises(ConfigError, match="requirements-llama.txt"):
        Settings(home=settings.home, fastgen_weights="gguf")


@pytest.fixture(scope="module")
def gguf_settings(settings, llama):
    set_settings(Settings(home=settings.home, fastgen_weights="gguf"))
    yield
    set_settings(settings)


@pytest.mark.parametrize("name", ["smollm2-135m-instruct", "gemma-3-270m"])
def test_llama_cpp_runs_the_same_model(prepared, llama, name):
    # Teacher-forced over 100 README tokens: llama.cpp's logits track transformers' and pick the same next
    # token almost everywhere (a wrong file or token mapping agrees on next to nothing).
    lm = load(name)
    ids = lm.tokenizer(README, return_tensors="pt")["input_ids"][:, :100]
    dec = fastgen.decoder_for(lm.model, "gguf", str(store.gguf_file(name)))
    with torch.inference_mode():
        want = lm.model(input_ids=ids).logits[0].float()
    agree, close = 0, []
    with dec.session():
        dec.new_cache(100)
        for pos in range(100):
            got = dec.forward(ids[:, pos:pos + 1], pos, None)[0]
            agree += int(got.argmax() == want[pos].argmax())
            close.append(torch.corrcoef(torch.stack([got, want[pos]]))[0, 1].item())
    assert agree >= 85, agree
    assert min(close) > 0.95, min(close)


def test_gguf_stream_greedy_is_repeatable_and_named(prepared, gguf_settings):
    lm = load("smollm2-135m-instruct")
    inputs = build_inputs(lm, GenerationRequest("Name three colours."))
    params = GenerationParams(max_new_tokens=16, temperature=0)
    first, stats = run_to_end(stream(lm, inputs, params))
    again, _ = run_to_end(stream(lm, inputs, params))
    assert stats.backend == "fastgen-gguf" and first.strip() and first == again
    assert stats.tokens == 16 or stats.finish_reason == "eos"


def test_gguf_seeded_sampling_repeats_and_seeds_differ(prepared, gguf_settings):
    lm = load("gemma-3-270m")
    inputs = build_inputs(lm, GenerationRequest("The old lighthouse keeper", mode="completion",
                                                model="gemma-3-270m"))
    texts = [run_to_end(stream(lm, inputs, GenerationParams(max_new_tokens=20, temperature=1.0, seed=s)))[0]
             for s in (1, 1, 2)]
    assert texts[0] == texts[1] and texts[0] != texts[2]


def test_gguf_stop_event_ends_generation(prepared, gguf_settings):
    stats = stop_after(load("smollm2-135m-instruct"))
    assert stats.backend == "fastgen-gguf"
    assert stats.finish_reason == "stopped" and stats.tokens < 20


def test_gguf_falls_back_where_it_cannot_run(prepared, gguf_settings, tmp_path):
    lm = load("smollm2-135m-instruct")
    # Longer than llama.cpp's context: transformers' path (fastgen, exact) takes it.
    ids = lm.tokenizer(README, return_tensors="pt")["input_ids"][:, :200]
    params = GenerationParams(max_new_tokens=llamacpp.CONTEXT, temperature=0)
    for _, stats in stream(lm, {"input_ids": ids, "attention_mask": torch.ones_like(ids)}, params):
        break
    assert stats.backend == "fastgen"
    # A model that is not a built-in GGUF (a saved folder) has no GGUF file to run.
    folder = tmp_path / "copy"
    lm.model.save_pretrained(folder)
    lm.tokenizer.save_pretrained(folder)
    other = load(str(folder))
    inputs = build_inputs(other, GenerationRequest("Hi", model=str(folder)))
    _, stats = run_to_end(stream(other, inputs, GenerationParams(max_new_tokens=3, temperature=0)))
    assert stats.backend == "fastgen"
