"""lmdemo.engine.fastgen must pick exactly the tokens transformers' `generate` picks, and honour stop and stop strings."""

from pathlib import Path

import pytest
import torch

from lmdemo.engine import fastgen
from lmdemo.engine import streaming as textgen
from lmdemo.config import Settings, set_settings
from lmdemo.jobs.generation import GenerationRequest, build_inputs
from lmdemo.models.loading import LoadedModel, LoadSpec, load
from lmdemo.engine.streaming import GenerationParams, stream
from lmdemo.jobs.base import run_to_end
from stream_helpers import stop_after

# A fixed long English text (the project README as it was when the agreement floors were measured).
README = (Path(__file__).resolve().parents[1] / "data" / "long_text.md").read_text(encoding="utf-8")


def reference(model, ids: torch.Tensor, new: int, penalty: float = 1.0) -> list[int]:
    with torch.inference_mode():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=new, do_sample=False,
                             temperature=None, top_p=None, top_k=None, repetition_penalty=penalty,
                             pad_token_id=model.generation_config.pad_token_id)
    return out[0, ids.shape[1]:].tolist()


def fast(model, ids: torch.Tensor, new: int, penalty: float = 1.0) -> list[int]:
    eos = model.generation_config.eos_token_id
    eos = [eos] if isinstance(eos, int) else eos or []
    return list(fastgen.generate_tokens(model, ids, fastgen.Sampling(new, repetition_penalty=penalty), eos))


def completion_ids(lm, text: str, n: int | None = None) -> torch.Tensor:
    ids = lm.tokenizer(text, return_tensors="pt")["input_ids"]
    return ids[:, :n] if n else ids


@pytest.fixture(scope="module")
def smollm(prepared):
    lm = load("smollm2-135m-instruct")
    assert fastgen.unsupported_reason(lm.model, lm.device) is None
    return lm


@pytest.fixture(scope="module")
def gemma(prepared):
    lm = load("gemma-3-270m")
    assert fastgen.unsupported_reason(lm.model, lm.device) is None
    return lm


@pytest.mark.parametrize("prompt, penalty", [("Give me three tips for a job interview.", 1.0),
                                             ("Write a short poem about the sea.", 1.3)])
def test_smollm_chat_greedy_matches_generate(smollm, prompt, penalty):
    ids = build_inputs(smollm, GenerationRequest(prompt))["input_ids"]
    want = reference(smollm.model, ids, 40, penalty)
    assert fast(smollm.model, ids, 40, penalty) == want


def test_smollm_long_prompt_matches_generate(smollm):
    ids = completion_ids(smollm, README, 600)
    assert ids.shape[1] == 600
    assert fast(smollm.model, ids, 24) == reference(smollm.model, ids, 24)


@pytest.mark.parametrize("prompt, penalty", [("Paris is the capital city of", 1.0),
                                             ("English: Good morning.\nFrench:", 1.2)])
def test_gemma_completion_greedy_matches_generate(gemma, prompt, penalty):
    ids = completion_ids(gemma, prompt)
    assert fast(gemma.model, ids, 32, penalty) == reference(gemma.model, ids, 32, penalty)


@pytest.mark.parametrize("length", [505, 700])
def test_gemma_sliding_window_matches_generate(gemma, length):
    # 505 crosses the 512-token sliding window while decoding; 700 starts beyond it (banded prompt mask).
    ids = completion_ids(gemma, README, length)
    assert ids.shape[1] == length
    assert fast(gemma.model, ids, 16) == reference(gemma.model, ids, 16)


def test_packed_weights_are_in_use_on_bf16(smollm):
    # Without prepacking the fast path loses most of its speed; the load-time bit check must have passed here.
    if smollm.dtype == torch.bfloat16 and torch.backends.mkldnn.is_available():
        assert fastgen.decoder_for(smollm.model).packed


def test_seeded_sampling_draws_the_same_tokens_as_generate(smollm):
    ids = build_inputs(smollm, GenerationRequest("Name a colour and a fruit."))["input_ids"]
    torch.manual_seed(11)
    with torch.inference_mode():
        want = smollm.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=20,
                                     do_sample=True, temperature=0.8, top_p=0.9, top_k=40, repetition_penalty=1.1,
                                     pad_token_id=2)[0, ids.shape[1]:].tolist()
    torch.manual_seed(11)
    got = list(fastgen.generate_tokens(smollm.model, ids, fastgen.Sampling(20, True, 0.8, 0.9, 40, 1.1), [2]))
    assert got == want


@pytest.mark.parametrize("top_k", [50, None])
def test_gemma_seeded_sampling_matches_generate(gemma, top_k):
    # top-k goes through the exact screen (only the rows that can make the top 50); without top-k every
    # token is weighed, so the whole head is computed.
    ids = completion_ids(gemma, "The three best things about autumn are")
    torch.manual_seed(5)
    with torch.inference_mode():
        want = gemma.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=20,
                                    do_sample=True, temperature=0.7, top_p=0.9, top_k=top_k or 0,
                                    repetition_penalty=1.1)[0, ids.shape[1]:].tolist()
    torch.manual_seed(5)
    sampling = fastgen.Sampling(20, True, 0.7, 0.9, top_k, 1.1)
    dec = fastgen.decoder_for(gemma.model)  # a bf16 head has no screen (see the bound test below)
    assert (fastgen._screen_for(dec, sampling)[0] is None) == (top_k is None or dec.screen is None)
    assert list(fastgen.generate_tokens(gemma.model, ids, sampling, [])) == want


def test_exact_screen_bound_holds_and_computes_few_rows(gemma):
    dec = fastgen.decoder_for(gemma.model)
    if dec.screen is None:  # by design on a bf16 model; on fp32 only where subset rows lose the head's bits
        assert dec.head.dtype != torch.float32 or not fastgen._rows_match_full_head(dec.head)
        pytest.skip(f"no exact screen for this {dec.head.dtype} head on this CPU")
    ids = completion_ids(gemma, README, 40)
    vocab = dec.head.shape[0]
    with torch.inference_mode():
        cache = dec.new_cache(40)
        for pos in range(40):
            x = dec.forward(ids[:, pos:pos + 1], pos, cache, head=False)
            exact = torch.nn.functional.linear(x, dec.head).float()
            a, b = dec.screen.estimate(x)
            assert ((exact - a).abs() <= b).all()
            for k in (1, 50):
                got = dec.screen.scores(x, k, lambda s: s)
                kept = got.isfinite()
                assert torch.equal(got[kept], exact[kept])
                assert torch.equal(got.topk(k).values, exact.topk(k).values)
                assert int(kept.sum()) < vocab // 20  # a few rows of the 262k-row head, not all of them


def test_exact_screen_keeps_every_row_when_k_is_the_vocabulary():
    generator = torch.Generator().manual_seed(1)
    head = torch.randn(256, 64, generator=generator)
    assert fastgen.ExactScreen.build(head[:250]) is None  # not whole blocks of 8 rows: the whole head instead
    screen = fastgen.ExactScreen.build(head)
    if screen is None:
        assert not fastgen._rows_match_full_head(head)
        pytest.skip("F.linear over a subset of rows does not give the full head's bits on this CPU")
    for _ in range(5):
        x = torch.randn(1, 64, generator=generator)
        exact = torch.nn.functional.linear(x, head).float()
        assert torch.equal(screen.scores(x, 256, lambda s: s), exact)
        got = screen.scores(x, 1, lambda s: s)
        assert int(got.argmax()) == int(exact.argmax()) and torch.equal(got[got.isfinite()], exact[got.isfinite()])


def test_stream_uses_fastgen_and_stop_event_ends_it(smollm):
    stats = stop_after(smollm)
    assert stats.backend == "fastgen"
    assert stats.finish_reason == "stopped" and stats.tokens < 20
    assert textgen.jobs_running() == 0


def test_stream_stop_strings_and_same_text_as_generate(smollm):
    ids = build_inputs(smollm, GenerationRequest("Count from one to ten, in words, separated by commas."))
    params = GenerationParams(max_new_tokens=40, temperature=0, repetition_penalty=1.0)
    text, stats = run_to_end(stream(smollm, ids, params))
    want = smollm.tokenizer.decode(reference(smollm.model, ids["input_ids"], 40), skip_special_tokens=True)
    assert stats.backend == "fastgen" and text == want
    assert len(text) > 20
    word = text[len(text) // 2:len(text) // 2 + 4]  # something the reply reaches half way
    cut, stats = run_to_end(stream(smollm, ids, params, stop_strings=[word]))
    assert stats.finish_reason == "stop_string" and cut == text[:text.index(word)]
    assert stats.tokens < len(reference(smollm.model, ids["input_ids"], 40))


def test_setting_off_falls_back_to_generate(smollm, settings):
    ids = build_inputs(smollm, GenerationRequest("Hello!"))
    try:
        set_settings(Settings(home=settings.home, fast_generation=False))
        _, stats = run_to_end(stream(smollm, ids, GenerationParams(max_new_tokens=4, temperature=0)))
    finally:
        set_settings(settings)
    assert stats.backend == "transformers"


def test_unsupported_models_are_named():
    from transformers import BertConfig, BertModel

    model = BertModel(BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64))
    assert "architecture" in fastgen.unsupported_reason(model, torch.device("cpu"))
    assert fastgen.unsupported_reason(model, torch.device("cuda")) == "not on the CPU"


def _tiny(kind: str, dtype: torch.dtype):
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    common = dict(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=16, max_position_embeddings=256, attn_implementation="sdpa")
    if kind == "llama":
        model = LlamaForCausalLM(LlamaConfig(**common, tie_word_embeddings=False))
    else:
        model = Gemma3ForCausalLM(Gemma3TextConfig(**common, sliding_window=8, query_pre_attn_scalar=16,
                                                   layer_types=["sliding_attention", "sliding_attention",
                                                                "full_attention"]))
    for p in model.parameters():  # spread the logits so that greedy choices are not near-ties of noise
        p.data.mul_(4.0) if p.dim() > 1 else None
    return model.to(dtype).eval()


@pytest.mark.parametrize("kind", ["llama", "gemma"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_tiny_models_match_generate(kind, dtype):
    # Built inline: fp32 (no prepacking), an untied head, and a sliding window of 8 crossed many times.
    model = _tiny(kind, dtype)
    assert fastgen.unsupported_reason(model, torch.device("cpu")) is None
    before = {name: p.clone() for name, p in model.named_parameters()}
    screened = dtype == torch.float32 and fastgen._rows_match_full_head(model.lm_head.weight)
    assert (fastgen.decoder_for(model).screen is not None) == screened
    assert all(torch.equal(p, before[name]) for name, p in model.named_parameters())  # copies, never in place
    for start in ([5, 9, 33], list(range(20, 32))):
        ids = torch.tensor([start])
        assert fast(model, ids, 20, 1.15) == reference(model, ids, 20, 1.15)


def test_extra_logits_processors_in_the_generation_config_fall_back():
    model = _tiny("llama", torch.float32)
    assert fastgen.unsupported_reason(model, torch.device("cpu")) is None
    model.generation_config.no_repeat_ngram_size = 3  # generate would apply it; the fast loop does not
    assert "no_repeat_ngram_size" in fastgen.unsupported_reason(model, torch.device("cpu"))


def test_adapter_and_quantised_models_fall_back():
    model = _tiny("llama", torch.float32)
    model.peft_config = {"default": object()}  # what a PeftModel carries
    assert fastgen.unsupported_reason(model, torch.device("cpu")) is not None
    lm = LoadedModel(spec=LoadSpec("tiny"), model=model, tokenizer=None, device=torch.device("cpu"),
                     dtype=torch.float32, size_bytes=0)
    from lmdemo.engine.streaming import _use_fastgen

    assert not _use_fastgen(lm, {"input_ids": torch.tensor([[1, 2]])})


@pytest.mark.parametrize("weights, floor", [("int8", 0.9), ("int4", 0.85)])
def test_quantised_decode_mostly_agrees_with_exact(smollm, weights, floor):
    # Opt-in, not bit-equal: teacher-forced over 120 README tokens, the next-token choice must mostly agree.
    ids = completion_ids(smollm, README, 120)
    exact, quant = fastgen.decoder_for(smollm.model), fastgen.decoder_for(smollm.model, weights)
    agree = 0
    with torch.inference_mode():
        caches = exact.new_cache(120), quant.new_cache(120)
        for pos in range(120):
            step = ids[:, pos:pos + 1]
            a = exact.forward(step, pos, caches[0]).argmax()
            b = quant.forward(step, pos, caches[1]).argmax()
            agree += int(a == b)
    assert agree / 120 >= floor


@pytest.mark.parametrize("weights", ["int8", "int4"])
def test_quantised_prompt_logits_track_exact(gemma, weights):
    # The prompt's scored row goes through the quantised head: its logits must still follow exact's closely.
    exact, quant = fastgen.decoder_for(gemma.model), fastgen.decoder_for(gemma.model, weights)
    for n in (5, 20, 80):
        ids = completion_ids(gemma, README, n)
        with torch.inference_mode():
            a = exact.forward(ids, 0, exact.new_cache(n)).float()[0]
            b = quant.forward(ids, 0, quant.new_cache(n)).float()[0]
        assert b.shape == a.shape
        assert torch.corrcoef(torch.stack([a, b]))[0, 1] >= 0.99


@pytest.mark.parametrize("weights", ["int8", "int4"])
def test_quantised_head_recomputes_its_top_rows_exactly(gemma, weights):
    # int4 screens Gemma's 262k-token head; its top rows must carry the full-precision head's logits.
    quant = fastgen.decoder_for(gemma.model, weights)
    seen, head_mm = [], quant.head_mm
    quant.head_mm = lambda x: seen.append(x) or head_mm(x)
    try:
        for n in (6, 30):
            ids = completion_ids(gemma, README, n)
            with torch.inference_mode():
                quant.forward(ids, 0, quant.new_cache(n))
    finally:
        quant.head_mm = head_mm
    assert len(seen) == 2
    for x in seen:
        with torch.inference_mode():
            got, want = head_mm(x).float()[0], torch.nn.functional.linear(x, quant.head).float()[0]
            estimate = head_mm.keywords["approx"](x).float()[0]
        top = estimate.topk(fastgen.HEAD_EXACT_ROWS).indices
        torch.testing.assert_close(got[top], want[top], rtol=1e-5, atol=1e-5)
        assert int(got.argmax()) == int(want.argmax())
        rest = torch.ones_like(got, dtype=torch.bool)
        rest[top] = False
        assert torch.equal(got[rest], estimate[rest])  # the others keep their int4 estimates
        assert 0 < (got[rest] - want[rest]).abs().median() < 0.2 * want.std()


def test_quantised_weights_setting_reaches_stream(smollm, settings):
    ids = build_inputs(smollm, GenerationRequest("Name three colours."))
    try:
        set_settings(Settings(home=settings.home, fastgen_weights="int4"))
        text, stats = run_to_end(stream(smollm, ids, GenerationParams(max_new_tokens=12, temperature=0)))
    finally:
        set_settings(settings)
    assert stats.backend == "fastgen-int4" and text.strip()
