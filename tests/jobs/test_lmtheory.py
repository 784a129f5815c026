"""LM lab theory: attention weights, positional encodings, the word LSTM and the side-by-side comparison.

Attention and RoPE run on a tiny Llama and a tiny BERT built here (quick tier) and on the built-in SmolLM2
(marked builtin); each is compared with an independent eager forward or with the formula worked out here.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path

import pytest
import torch

from lmdemo.errors import InputError
from lmdemo.jobs import lmtheory, lstm_lm
from lmdemo.jobs.lmlab import BigramModel, score_text
from lmdemo.jobs.lmtheory import (AttentionRequest, RopeRequest, SideBySideRequest, SinusoidalRequest, attention,
                                  eager_attention, rope, side_by_side, sinusoidal)
from lmdemo.jobs.lstm_lm import LstmTrainRequest, cell_steps, get_lstm, score_lstm, train_lstm
from lmdemo.models.loading import load
from tiny_families import SENTENCES, bert_tokenizer, build_tiny_llama

MODEL = "smollm2-135m-instruct"
TEXT = "The cat sat on the warm mat."
CORPUS = "\n".join(SENTENCES[:20])  # 20 lines, 113 word types: 80 full-batch steps fit it

# ---------------------------------------------------------------- tiny models, built once


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory) -> str:
    """A 2-layer, 4-head Llama (untrained) whose tokenizer adds <s>; loaded by folder, so nothing is fetched."""
    return str(build_tiny_llama(tmp_path_factory.mktemp("theory-llama"), chat=False))


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory) -> str:
    """A 2-layer, 2-head BERT encoder (no head, random weights)."""
    from transformers import BertConfig, BertModel

    folder = tmp_path_factory.mktemp("theory-bert")
    tok = bert_tokenizer()
    config = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        BertModel(config).save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    return str(folder)


def _eager_reference(folder: str, ids: list[int], layer: int, head: int, auto_class, like) -> torch.Tensor:
    """The same weights read straight with transformers, eager from the start (in the dtype and on the device
    lmdemo loaded them with, to compare like with like): its own output_attentions."""
    model = auto_class.from_pretrained(folder, dtype=like.dtype, attn_implementation="eager").to(like.device).eval()
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids], device=like.device), output_attentions=True)
    return out.attentions[layer][0, head].float().cpu()


def _check_rows(result, causal: bool) -> torch.Tensor:
    weights = torch.tensor(result.weights)
    n = len(result.tokens)
    assert weights.shape == (n, n)
    assert weights.sum(dim=1).tolist() == pytest.approx([1.0] * n, abs=1e-2)  # bf16 weights on fast-bf16 CPUs
    above = weights.triu(diagonal=1)
    assert (above.abs().max() == 0) == causal  # a causal token never sees a later one; an encoder's does
    assert len(result.reading) == n and len(result.top) == n
    for i, row in enumerate(result.top):
        _, w = row[0]
        assert w == pytest.approx(weights[i, : i + 1 if causal else n].max().item())
        assert result.reading[i].startswith(repr(result.tokens[i]))
    return weights


# ---------------------------------------------------------------- attention (tiny tier)


@pytest.mark.tiny
def test_attention_on_tiny_llama_matches_an_eager_forward(llama_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    shared = load(llama_dir).model
    before = shared.config._attn_implementation
    assert before != "eager"  # else the restore check below would prove nothing
    result = attention(AttentionRequest(TEXT, model=llama_dir, layer=1, head=3))
    assert shared.config._attn_implementation == before  # the cached model is as every other job expects it
    assert all(layer.self_attn.config._attn_implementation == before for layer in shared.model.layers)

    ids = AutoTokenizer.from_pretrained(llama_dir)(TEXT)["input_ids"]  # adds <s> itself
    assert result.tokens[0] == "<s>" and len(result.tokens) == len(ids)
    assert (result.num_layers, result.num_heads, result.causal) == (2, 4, True)
    weights = _check_rows(result, causal=True)
    reference = _eager_reference(llama_dir, ids, 1, 3, AutoModelForCausalLM, load(llama_dir))
    assert torch.allclose(weights, reference, atol=1e-3)


@pytest.mark.tiny
def test_attention_on_tiny_encoder_sees_both_ways(bert_dir):
    from transformers import AutoModel, AutoTokenizer

    result = attention(AttentionRequest(TEXT, model=bert_dir, layer=0, head=1))
    ids = AutoTokenizer.from_pretrained(bert_dir)(TEXT)["input_ids"]
    assert result.tokens[0] == "[CLS]" and result.tokens[-1] == "[SEP]" and not result.causal
    weights = _check_rows(result, causal=False)
    shared = load(bert_dir, head="encoder")
    assert torch.allclose(weights, _eager_reference(bert_dir, ids, 0, 1, AutoModel, shared), atol=1e-3)
    assert shared.model.config._attn_implementation != "eager"


@pytest.mark.tiny
def test_attention_on_a_classifier_keeps_its_direction(llama_dir, bert_dir, tmp_path):
    from transformers import AutoConfig, AutoTokenizer, BertForSequenceClassification, LlamaForSequenceClassification

    for source, cls, causal in ((llama_dir, LlamaForSequenceClassification, True),
                                (bert_dir, BertForSequenceClassification, False)):
        folder = tmp_path / cls.__name__
        cls(AutoConfig.from_pretrained(source, num_labels=2)).save_pretrained(folder, safe_serialization=True)
        AutoTokenizer.from_pretrained(source).save_pretrained(folder)
        result = attention(AttentionRequest(TEXT, model=str(folder), layer=1, head=1))
        assert result.causal is causal
        _check_rows(result, causal=causal)


@pytest.mark.tiny
def test_attention_caps_tokens_and_checks_layer_and_head(llama_dir):
    long = attention(AttentionRequest(" ".join(SENTENCES[:10]), model=llama_dir))
    assert len(long.tokens) == lmtheory.MAX_ATTENTION_TOKENS and len(long.weights) == lmtheory.MAX_ATTENTION_TOKENS
    assert f"first {lmtheory.MAX_ATTENTION_TOKENS} of" in long.note
    with pytest.raises(InputError, match=r"`layer` must be from 0 to 1 .*got 2"):
        attention(AttentionRequest(TEXT, model=llama_dir, layer=2))
    with pytest.raises(InputError, match=r"`head` must be from 0 to 3 .*got 4"):
        attention(AttentionRequest(TEXT, model=llama_dir, head=4))


@pytest.mark.tiny
def test_eager_attention_restores_after_an_error(llama_dir):
    model = load(llama_dir).model
    before = model.config._attn_implementation
    with pytest.raises(RuntimeError, match="boom"):
        with eager_attention(model):
            assert model.config._attn_implementation == "eager"
            raise RuntimeError("boom")
    assert model.config._attn_implementation == before


# ---------------------------------------------------------------- attention and RoPE (built-in SmolLM2)


def test_attention_on_smollm2_matches_an_eager_forward(prepared):
    from transformers import AutoModelForCausalLM

    from lmdemo.models import store

    lm = load(MODEL)
    before = lm.model.config._attn_implementation
    result = attention(AttentionRequest(TEXT, model=MODEL, layer=3, head=5))
    assert lm.model.config._attn_implementation == before != "eager"
    tok = lm.tokenizer
    ids = [tok.convert_tokens_to_ids("<|endoftext|>"), *tok(TEXT, add_special_tokens=False)["input_ids"]]
    assert result.tokens[0] == "<|endoftext|>" and "".join(result.tokens[1:]) == TEXT
    assert (result.num_layers, result.num_heads) == (30, 9)
    weights = _check_rows(result, causal=True)
    reference = _eager_reference(str(store.model_dir(MODEL)), ids, 3, 5, AutoModelForCausalLM, lm)
    assert torch.allclose(weights, reference, atol=1e-3)
    assert score_text("Hi there.", model=MODEL).perplexity > 1  # the shared model still serves other jobs
    with pytest.raises(InputError, match=r"`head` must be from 0 to 8"):
        attention(AttentionRequest(TEXT, model=MODEL, head=9))


def test_rope_on_smollm2_is_the_models_own_rotation(prepared):
    result = rope(RopeRequest(model=MODEL, positions=16, pairs=(0, 31)))
    (table,) = result.tables
    assert (table.theta, result.head_dim, result.rotary_dim, table.rope_type) == (100000.0, 64, 64, "default")
    inv_freq = load(MODEL).model.model.rotary_emb.inv_freq.double()  # what the model rotates by
    assert torch.allclose(torch.tensor(table.frequencies, dtype=torch.float64), inv_freq, rtol=1e-6)
    assert table.angles[15][31] == pytest.approx(15 * 100000.0 ** (-62 / 64), rel=1e-12)
    with pytest.raises(InputError, match="no rotary position encoding"):
        rope(RopeRequest(model="all-minilm-l6-v2"))


# ---------------------------------------------------------------- positional encodings (pure and tiny)


def test_sinusoidal_values_match_the_formula():
    result = sinusoidal(SinusoidalRequest(positions=40, d_model=16, dims=(0, 1, 6, 15)))
    for pos, dim in [(0, 0), (0, 1), (1, 0), (1, 1), (5, 6), (17, 7), (39, 14), (39, 15), (23, 10)]:
        two_i = dim - dim % 2
        angle = pos / 10000 ** (two_i / 16)
        expected = math.sin(angle) if dim % 2 == 0 else math.cos(angle)
        assert result.table[pos][dim] == pytest.approx(expected, abs=1e-12), (pos, dim)
    assert result.curves[6] == [row[6] for row in result.table]
    assert result.wavelengths[0] == pytest.approx(2 * math.pi)
    assert result.wavelengths[15] == pytest.approx(2 * math.pi * 10000 ** (14 / 16))
    assert set(result.to_dict()["curves"]) == {"0", "1", "6", "15"}


@pytest.mark.tiny
def test_rope_on_tiny_llama_matches_formula_and_model(llama_dir):
    import json

    theta = json.loads((Path(llama_dir) / "config.json").read_text())["rope_parameters"]["rope_theta"]
    result = rope(RopeRequest(model=llama_dir, positions=20, pairs=(1, 7)))
    assert result.head_dim == 16 and len(result.tables) == 1  # hidden 64 / 4 heads
    table = result.tables[0]
    for pos, i in [(0, 0), (1, 0), (3, 1), (19, 7), (11, 5)]:
        assert table.angles[pos][i] == pytest.approx(pos * theta ** (-2 * i / 16), rel=1e-12, abs=1e-15)
    assert table.curves[7] == pytest.approx([math.cos(p * theta ** (-14 / 16)) for p in range(20)])
    inv_freq = load(llama_dir).model.model.rotary_emb.inv_freq.double()
    assert torch.allclose(torch.tensor(table.frequencies, dtype=torch.float64), inv_freq, rtol=1e-6)
    assert "relative" in result.note
    with pytest.raises(InputError, match="`pairs` must be a whole number from 0 to 7"):
        rope(RopeRequest(model=llama_dir, pairs=(8,)))


# ---------------------------------------------------------------- the word LSTM


@pytest.fixture(scope="module")
def trained():
    """An LSTM fitted on CORPUS, every step's report kept."""
    seen = []
    # The widest time limit: a loaded CI machine must not cut the run short (it takes ~2 s on idle cores).
    req = LstmTrainRequest(CORPUS, steps=80, hidden_size=48, embed_size=24, max_seconds=lstm_lm.MAX_SECONDS)
    result = train_lstm(req, on_step=seen.append)
    return result, seen


def test_lstm_training_lowers_corpus_perplexity(trained):
    result, seen = trained
    assert result.reason == "done" and result.steps == 80
    assert [s.step for s in seen] == list(range(1, 81)) and [s.loss for s in seen] == result.losses
    assert result.vocab_size == BigramModel.fit(CORPUS).vocab_size  # the same V as the bigram
    assert result.perplexity_before > 0.5 * result.vocab_size  # untrained: near uniform over V
    assert result.perplexity_after < result.perplexity_before / 10
    assert sum(result.losses[-10:]) < sum(result.losses[:10]) / 3
    # Scoring the corpus line by line agrees with the training's own batched figure.
    assert score_lstm(result.model, CORPUS).perplexity == pytest.approx(result.perplexity_after, rel=1e-4)
    assert get_lstm(result.model_id) is result.model
    assert "model" not in result.to_dict()


def test_lstm_perplexity_is_exp_of_mean_nll_over_the_bigrams_tokens(trained):
    result, _ = trained
    text = "The cat sat on the mat.\nA zebra ran to the park."
    score = score_lstm(result.model, text)
    logprobs = [w.logprob for w in score.words]
    assert score.perplexity == pytest.approx(math.exp(-sum(logprobs) / len(logprobs)), rel=1e-9)
    assert score.total_logprob == pytest.approx(sum(logprobs))
    # Word for word what the bigram predicts: same tokenisation, same <unk>, one </s> per line.
    bigram_steps = BigramModel.fit(CORPUS).steps(text)
    assert [(w.previous, w.word) for w in score.words] == [(v, w) for v, w, _ in bigram_steps]
    assert "<unk>" in [w.word for w in score.words] and "not in the training corpus" in score.note
    # Each step's distribution over V sums to 1 (the log-probs are a real distribution, not scores).
    line = result.model.lines("the cat sat")[0]
    logits, _ = result.model(torch.tensor([line[:-1]]))
    assert torch.log_softmax(logits[0], -1).exp().sum(-1).tolist() == pytest.approx([1.0] * 4, abs=1e-5)


def test_lstm_gates_by_hand_reproduce_nn_lstm(trained):
    model = trained[0].model
    line = model.lines("The dog ran across the green park.")[0]
    trace = cell_steps(model, line)
    with torch.no_grad():
        _, hidden = model(torch.tensor([line]))
    assert torch.allclose(trace.hidden, hidden[0], atol=1e-5)
    for gate in (trace.forget, trace.input, trace.output):
        assert gate.shape == (len(line), 48) and bool(((gate > 0) & (gate < 1)).all())
    score = score_lstm(model, "The dog ran across the green park.")
    assert [g.token for g in score.gates] == ["<s>", *[w.word for w in score.words][:-1]]
    assert [g.forget for g in score.gates] == pytest.approx(trace.forget[:-1].mean(1).tolist())
    assert [g.output for g in score.gates] == pytest.approx(trace.output[:-1].mean(1).tolist())


def test_lstm_stop_event_ends_training_between_steps():
    stop = threading.Event()
    seen = []

    def on_step(step):
        seen.append(step.step)
        if step.step == 3:
            stop.set()

    result = train_lstm(LstmTrainRequest(CORPUS, steps=lstm_lm.MAX_STEPS), on_step=on_step, stop=stop)
    assert result.reason == "stopped" and result.steps == 3 and seen == [1, 2, 3]
    assert get_lstm(result.model_id) is result.model  # a stopped model can still be scored


def test_lstm_seed_makes_training_repeatable():
    a, b = (train_lstm(LstmTrainRequest(CORPUS, steps=5, hidden_size=16, seed=7)) for _ in range(2))
    c = train_lstm(LstmTrainRequest(CORPUS, steps=5, hidden_size=16, seed=8))
    assert a.losses == b.losses != c.losses


def test_lstm_time_limit_and_registry_bound():
    timed = train_lstm(LstmTrainRequest("a b c\nb c a", steps=lstm_lm.MAX_STEPS, max_seconds=1e-6))
    assert timed.reason == "time" and timed.steps < lstm_lm.MAX_STEPS
    later = [train_lstm(LstmTrainRequest("a b", steps=1)) for _ in range(lstm_lm.MAX_KEPT)]
    assert get_lstm(later[0].model_id) is later[0].model
    with pytest.raises(InputError, match="train it again"):
        get_lstm(timed.model_id)


# ---------------------------------------------------------------- side by side


@pytest.mark.tiny
def test_side_by_side_on_one_text(trained, llama_dir):
    result, _ = trained
    text = "The cat sat on the warm mat."
    # The model object itself: other tests train more LSTMs, and the registry keeps only the last few.
    out = side_by_side(SideBySideRequest(text, k=0.5, model=llama_dir), lstm=result.model)
    bigram = BigramModel.fit(CORPUS, k=0.5)
    assert out.bigram.tokens == [(w, pytest.approx(math.log(p))) for _, w, p in bigram.steps(text)]
    assert out.bigram.perplexity == pytest.approx(bigram.perplexity(text))
    lstm = score_lstm(result.model, text)
    assert out.lstm.tokens == [(w.word, w.logprob) for w in lstm.words] and out.lstm.perplexity == lstm.perplexity
    lm = score_text(text, model=llama_dir)
    assert out.transformer.perplexity == pytest.approx(lm.perplexity)
    assert [t for t, _ in out.transformer.tokens] == [t.token for t in lm.tokens]
    assert (out.bigram.unit, out.lstm.unit, out.transformer.unit) == ("word", "word", "token")
    assert out.lstm.perplexity < out.bigram.perplexity  # the LSTM fitted these very lines
    assert set(out.to_dict()) == {"bigram", "lstm", "transformer", "note"}


# ---------------------------------------------------------------- bounded inputs


@pytest.mark.parametrize("make, match", [
    (lambda: LstmTrainRequest("a " * lstm_lm.MAX_CORPUS_CHARS), "`corpus` is .* at most 20,000"),
    (lambda: LstmTrainRequest("  \n "), "`corpus`"),
    (lambda: LstmTrainRequest("a b", steps=0), "`steps` must be a whole number from 1 to 2000"),
    (lambda: LstmTrainRequest("a b", steps=lstm_lm.MAX_STEPS + 1), "`steps`"),
    (lambda: LstmTrainRequest("a b", steps=2.5), "`steps`"),
    (lambda: LstmTrainRequest("a b", hidden_size=lstm_lm.MAX_HIDDEN + 1), "`hidden_size`"),
    (lambda: LstmTrainRequest("a b", learning_rate=0), "`learning_rate`"),
    (lambda: LstmTrainRequest("a b", max_seconds=lstm_lm.MAX_SECONDS + 1), "`max_seconds`"),
    (lambda: LstmTrainRequest("a b", unk_rate=1.5), "`unk_rate`"),
    # Each Han character is a word: 5,000 of them fit in the character bound.
    (lambda: train_lstm(LstmTrainRequest("".join(chr(0x4E00 + i) for i in range(lstm_lm.MAX_VOCAB)))),
     "different words; the LSTM takes at most 4,998"),
    (lambda: score_lstm(train_lstm(LstmTrainRequest("a b", steps=1)).model, "a " * 1001), "`text` is .* at most 2,000"),
    (lambda: get_lstm("nope"), "No trained LSTM with id 'nope'"),
    (lambda: AttentionRequest("x" * (lmtheory.MAX_ATTENTION_CHARS + 1)), "`text` is .* at most 2,000"),
    (lambda: AttentionRequest("   "), "`text`"),
    (lambda: AttentionRequest("hi", layer=-1), "`layer`"),
    (lambda: AttentionRequest("hi", head=1.5), "`head`"),
    (lambda: SinusoidalRequest(d_model=15), "`d_model` must be even"),
    (lambda: SinusoidalRequest(positions=0), "`positions`"),
    (lambda: SinusoidalRequest(positions=lmtheory.MAX_PE_POSITIONS + 1), "`positions`"),
    (lambda: SinusoidalRequest(d_model=lmtheory.MAX_PE_DIM + 2), "`d_model`"),
    (lambda: SinusoidalRequest(d_model=16, dims=(16,)), "`dims` must be a whole number from 0 to 15"),
    (lambda: SinusoidalRequest(dims=tuple(range(17))), "`dims` lists 17"),
    (lambda: RopeRequest(positions=10_000), "`positions`"),
    (lambda: SideBySideRequest("a " * 1001, lstm_id="x"), "`text` is .* at most 2,000"),
])
def test_bad_inputs_raise_input_error(make, match):
    with pytest.raises(InputError, match=match):
        make()


def test_attention_shape_asks_the_hub_for_allowed_models_only(online, settings):
    """The page reads layers x heads when a model is typed: on a shared Space a Hub id outside the operator's list
    is not even asked for (outside demo mode it is, so the check can fail)."""
    from lmdemo.config import Settings, set_settings
    from lmdemo.jobs.lmtheory import attention_shape
    from lmdemo.models import families

    families._HUB_FOLDERS.pop("bob/not-allowed", None)
    set_settings(Settings(home=settings.home, demo_mode=True, allowed_models="alice/allowed"))
    try:
        online.requests.clear()
        assert attention_shape("bob/not-allowed") is None
        assert not online.requests, online.requests
    finally:
        set_settings(settings)
    assert attention_shape("bob/not-allowed") is None  # no such repo on the loopback Hub
    assert online.requests, "outside demo mode the config is asked for"
    families._HUB_FOLDERS.pop("bob/not-allowed", None)
    assert attention_shape("smollm2-135m-instruct") in (None, (30, 9))  # None only where it is not converted
