import threading

import pytest
import torch

from lmdemo.models import adapters, loading
from lmdemo.config import Settings
from lmdemo.errors import AdapterError, ModelNotFoundError
from lmdemo.models.loading import LoadSpec, ModelCache


def chat(lm, question, max_new_tokens=16):
    ids = lm.tokenizer.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True,
                                           return_tensors="pt", return_dict=True).to(lm.device)
    out = lm.model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False)
    return lm.tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)


def complete(lm, prompt, max_new_tokens=8):
    ids = lm.tokenizer(prompt, return_tensors="pt").to(lm.device)
    out = lm.model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False)
    return lm.tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)


def test_smollm2_answers_offline(prepared):
    lm = loading.load("smollm2-135m-instruct")
    assert lm.device.type == "cpu" and lm.spec.quantize == "none"
    assert "Paris" in chat(lm, "What is the capital of France?")


def test_gemma_completes_offline(prepared):
    lm = loading.load("gemma-3-270m")
    assert "Paris" in complete(lm, "The Eiffel Tower is in the city of")


def test_minilm_embeddings_are_semantic(prepared):
    lm = loading.load("all-minilm-l6-v2", head="encoder")
    batch = lm.tokenizer(["A cat sits on the mat.", "A kitten is sitting on a rug.", "Stock markets fell sharply today."],
                         return_tensors="pt", padding=True)
    with torch.no_grad():
        hidden = lm.model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1)
    emb = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).float()
    assert emb[0] @ emb[1] > emb[0] @ emb[2] + 0.2


def test_dtype_policy_prefers_bf16_on_fast_cpus():
    expected = torch.bfloat16 if loading.cpu_has_fast_bf16() else torch.float32
    assert loading.resolve_dtype("auto", torch.device("cpu")) == expected
    assert loading.resolve_dtype("float32", torch.device("cpu")) == torch.float32


def test_cuda_request_without_cuda_falls_back_with_a_note():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    notes = []
    assert loading.resolve_device("cuda", notes).type == "cpu"
    assert "no CUDA device" in notes[0]


def test_4bit_load_quantises_every_block_linear(prepared):
    """bitsandbytes 0.50 (pinned) quantises nf4 on the CPU as on CUDA: "4bit" must mean packed uint8 weights.

    The expected device comes from the machine, not from how the load went, so a silent fall-back to full
    weights (spec still saying 4bit, or a note) fails here on either.
    """
    import bitsandbytes as bnb

    expected = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    plain = ModelCache().get(LoadSpec("smollm2-135m-instruct", quantize="none", device=expected.type))
    lm = ModelCache().get(LoadSpec("smollm2-135m-instruct", quantize="4bit", device=expected.type))
    assert lm.device == expected and lm.spec.quantize == "4bit" and lm.quantized
    assert not lm.notes, lm.notes  # no "not supported ... loaded unquantised" fall-back
    # every Linear of the decoder blocks is now a Linear4bit; only the (tied) lm_head stays full precision
    block_linears = {n for n, m in plain.model.named_modules() if isinstance(m, torch.nn.Linear) and n != "lm_head"}
    quantised = {n: m for n, m in lm.model.named_modules() if isinstance(m, bnb.nn.Linear4bit)}
    assert block_linears and set(quantised) == block_linears
    for name, layer in quantised.items():
        w = layer.weight
        assert isinstance(w, bnb.nn.Params4bit) and w.dtype == torch.uint8 and w.device.type == expected.type, name
        assert w.quant_state is not None and w.quant_state.quant_type == "nf4", name
        assert w.numel() * 2 == plain.model.get_submodule(name).weight.numel(), name  # two 4-bit values a byte
    assert lm.size_bytes < plain.size_bytes * 0.6
    assert "Paris" in chat(lm, "What is the capital of France?")


def test_4bit_that_cannot_load_says_why_and_runs_unquantised(prepared, monkeypatch):
    """Where bitsandbytes refuses (an old wheel, an unsupported device), the load falls back with the reason."""
    real = loading._from_pretrained

    def refuse_4bit(spec, *args):
        if spec.quantize == "4bit":
            raise RuntimeError("no bitsandbytes backend for this device")
        return real(spec, *args)

    monkeypatch.setattr(loading, "_from_pretrained", refuse_4bit)
    lm = ModelCache().get(LoadSpec("smollm2-135m-instruct", quantize="4bit"))
    assert lm.spec.quantize == "none" and not lm.quantized
    assert lm.notes == [f"4bit quantisation is not supported on {lm.device.type} here (no bitsandbytes backend "
                        f"for this device); loaded unquantised in {lm.spec.dtype} instead."]
    assert not any(isinstance(m, torch.nn.Linear) and type(m).__module__.startswith("bitsandbytes")
                   for m in lm.model.modules())


def test_unknown_hub_id_offline_is_one_clear_line():
    with pytest.raises(ModelNotFoundError) as err:
        loading.load("nobody-here/no-such-model")
    message = str(err.value)
    assert "'nobody-here/no-such-model'" in message and "offline" in message and "\n" not in message


def test_folder_without_config_is_refused(tmp_path):
    with pytest.raises(ModelNotFoundError, match="no config.json"):
        loading.load(str(tmp_path))


def test_adapter_name_cannot_escape_the_adapters_folder(tmp_path):
    settings = Settings(home=tmp_path)
    (tmp_path / "secret").mkdir()
    with pytest.raises(AdapterError, match="outside the adapters folder"):
        adapters.adapter_dir("../secret", settings)
    (settings.adapters_dir / "mine").mkdir(parents=True)
    with pytest.raises(AdapterError, match="no adapter_config.json"):
        adapters.adapter_dir("mine", settings)


def test_cache_reuses_loads_once_under_concurrency_and_respects_budget(prepared, tmp_path, settings):
    cache = ModelCache()
    spec = LoadSpec("all-minilm-l6-v2", head="encoder")
    results = []
    threads = [threading.Thread(target=lambda: results.append(cache.get(spec, settings))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(r) for r in results}) == 1, "concurrent requests must share one load"

    # "auto" is bf16 or fp32 depending on the CPU; ask for the other one explicitly.
    other = "float32" if results[0].dtype == torch.bfloat16 else "bfloat16"
    second = cache.get(LoadSpec("all-minilm-l6-v2", head="encoder", dtype=other), settings)
    assert second is not results[0] and len(cache.loaded()) == 2

    tight = Settings(home=settings.home, memory_budget_mb=100)  # room for one MiniLM (~45-90 MB), not two
    cache2 = ModelCache()
    first = cache2.get(spec, tight)
    cache2.get(LoadSpec("all-minilm-l6-v2", head="encoder", dtype=other), tight)
    assert first not in cache2.loaded() and len(cache2.loaded()) == 1
