"""Adapter folders survive crashes, and the model cache never serves an adapter's old weights."""

import os
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from lmdemo.errors import AdapterError
from lmdemo.models import adapters
from lmdemo.models.adapters import BUNDLED_DIR, adapter_dir, list_adapters, remove, save_adapter
from lmdemo.models.loading import CACHE, load

BUNDLED = BUNDLED_DIR / "sentiment-minilm"
TEXT = "The battery lasts all day and the screen is gorgeous."


@pytest.fixture
def named(settings):
    """A copy of the bundled classifier under a name in the adapters folder."""
    folder = settings.adapters_dir / "safety-probe"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(BUNDLED, folder)
    yield folder
    for leftover in settings.adapters_dir.glob("safety-probe*"):
        shutil.rmtree(leftover, ignore_errors=True)


@pytest.fixture
def peft_model(prepared, settings):
    """A real LoRA classifier on MiniLM, as training would save it."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification

    base = AutoModelForSequenceClassification.from_pretrained(settings.models_dir / "all-minilm-l6-v2", num_labels=2)
    return get_peft_model(base, LoraConfig(r=4, target_modules=["query", "value"], task_type="SEQ_CLS"))


def _weights(folder):
    return load_file(str(folder / "adapter_model.safetensors"))


def test_a_save_that_fails_midway_keeps_the_old_adapter_whole(named, peft_model, monkeypatch):
    before = _weights(named)

    def broken_card(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(adapters, "model_card", broken_card)
    with pytest.raises(OSError, match="disk full"):
        save_adapter(peft_model, named, {"task": "classification", "labels": ["negative", "positive"]})
    after = _weights(named)
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert [p.name for p in named.parent.glob("safety-probe*")] == ["safety-probe"]  # no half-written sibling


def test_a_save_interrupted_between_its_renames_is_recovered(named, peft_model, monkeypatch):
    before = _weights(named)
    real_replace, calls = os.replace, []

    def dies_on_the_second_rename(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:
            raise KeyboardInterrupt  # the process is gone: the old adapter is aside, the new one unrenamed
        return real_replace(src, dst)

    monkeypatch.setattr(adapters.os, "replace", dies_on_the_second_rename)
    with pytest.raises(KeyboardInterrupt):
        save_adapter(peft_model, named, {"task": "classification"})
    monkeypatch.setattr(adapters.os, "replace", real_replace)
    assert not named.exists()  # the window the recovery is for
    assert "safety-probe" in [a.name for a in list_adapters()]  # the lookup puts the old adapter back
    after = _weights(adapter_dir("safety-probe"))
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_the_cache_serves_a_retrained_adapter_not_its_old_weights(named, peft_model):
    first = load("all-minilm-l6-v2", head="sequence-classification", adapter="safety-probe")
    assert load("all-minilm-l6-v2", head="sequence-classification", adapter="safety-probe") is first
    weights = _weights(named)
    key = next(k for k in weights if "lora_B" in k)
    weights[key] = weights[key] + 1.0  # "retrained": same folder, new weights
    save_file(weights, str(named / "adapter_model.safetensors"))
    second = load("all-minilm-l6-v2", head="sequence-classification", adapter="safety-probe")
    assert second is not first
    assert sum(1 for m in CACHE.loaded() if m.spec.adapter == str(named.resolve())) == 1  # the stale one is gone
    param = dict(second.model.named_parameters())
    assert any(torch.allclose(p.float(), weights[key].float().to(p.device), atol=1e-2)
               for n, p in param.items() if "lora_B" in n)


def test_a_removed_adapter_is_gone_from_disk_listing_and_cache(named):
    load("all-minilm-l6-v2", head="sequence-classification", adapter="safety-probe")
    folder = remove("safety-probe")
    assert CACHE.forget_adapter(folder) == 1
    assert not any(m.spec.adapter == str(named.resolve()) for m in CACHE.loaded())
    assert "safety-probe" not in [a.name for a in list_adapters()]
    with pytest.raises(AdapterError):
        adapter_dir("safety-probe")
    assert not list(named.parent.glob("safety-probe*"))


def test_a_visitor_name_never_reaches_another_visitors_folder(settings):
    mine = adapters.new_adapter_path("probe", owner="visitor-a")
    shutil.copytree(BUNDLED, mine)
    try:
        assert adapter_dir("probe", owner="visitor-a") == mine.resolve()
        for name in ("probe", "visitors/visitor-a/probe", f"{adapters.VISITORS}/visitor-a/../visitor-a/probe"):
            with pytest.raises(AdapterError):
                adapter_dir(name, owner="visitor-b")
            with pytest.raises(AdapterError):
                adapter_dir(name)  # nor the operator's shared lookup
        assert "probe" not in [a.name for a in list_adapters(owner="visitor-b")]
        with pytest.raises(AdapterError, match="not found among your adapters"):
            remove("probe", owner="visitor-b")
        assert mine.is_dir()
    finally:
        shutil.rmtree(mine.parent, ignore_errors=True)
