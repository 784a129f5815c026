import math

import pytest

from lmdemo.jobs import lmlab
from lmdemo.errors import InputError
from lmdemo.jobs.lmlab import BigramModel, compare_perplexities, next_token_distribution, score_text, sentences

MODEL = "smollm2-135m-instruct"

# ---------------------------------------------------------------- bigram (pure logic)

# Corpus "a b\na a" -> sentences  <s> a b </s>  and  <s> a a </s>
#   bigram counts: (<s>,a)=2  (a,b)=1  (a,a)=1  (a,</s>)=1  (b,</s>)=1
#   history counts: c(<s>)=2  c(a)=3  c(b)=1
#   V = {a, b, </s>, <unk>}  ->  |V| = 4
CORPUS = "a b\na a"


def test_bigram_perplexity_by_hand():
    lm = BigramModel.fit(CORPUS, k=1.0)
    assert lm.vocab_size == 4 and lm.k == 1.0
    # "a b" -> <s> a b </s>, k = 1:
    #   P(a | <s>)  = (2 + 1) / (2 + 1*4) = 3/6 = 1/2
    #   P(b | a)    = (1 + 1) / (3 + 1*4) = 2/7
    #   P(</s> | b) = (1 + 1) / (1 + 1*4) = 2/5
    #   P = 1/2 * 2/7 * 2/5 = 2/35, N = 3, perplexity = (35/2) ** (1/3)
    assert lm.steps("a b") == [("<s>", "a", pytest.approx(1 / 2)), ("a", "b", pytest.approx(2 / 7)),
                               ("b", "</s>", pytest.approx(2 / 5))]
    assert lm.logprob("a b") == pytest.approx(math.log(2 / 35))
    assert lm.perplexity("a b") == pytest.approx((35 / 2) ** (1 / 3))


def test_bigram_half_k_and_two_lines():
    lm = BigramModel.fit(CORPUS, k=0.5)
    # "b\na" -> <s> b </s> <s> a </s>, k = 0.5 (denominators add 0.5*4 = 2):
    #   P(b | <s>)  = (0 + 0.5) / (2 + 2) = 1/8
    #   P(</s> | b) = (1 + 0.5) / (1 + 2) = 1/2
    #   P(a | <s>)  = (2 + 0.5) / (2 + 2) = 5/8
    #   P(</s> | a) = (1 + 0.5) / (3 + 2) = 3/10
    #   P = 1/8 * 1/2 * 5/8 * 3/10 = 15/1280 = 3/256, N = 4
    assert lm.logprob("b\na") == pytest.approx(math.log(3 / 256))
    assert lm.perplexity("b\na") == pytest.approx((256 / 3) ** (1 / 4))


def test_bigram_unknown_words_map_to_unk():
    lm = BigramModel.fit(CORPUS, k=1.0)
    assert lm.tokens("A zebra!") == ["<s>", "a", "<unk>", "<unk>", "</s>"]
    # "a c" -> <s> a <unk> </s>:
    #   P(a | <s>)      = 3/6 = 1/2
    #   P(<unk> | a)    = (0 + 1) / (3 + 4) = 1/7
    #   P(</s> | <unk>) = (0 + 1) / (0 + 4) = 1/4    (unseen history: uniform over V)
    assert lm.logprob("a c") == pytest.approx(math.log(1 / 56))
    assert lm.perplexity("a c") == pytest.approx(56 ** (1 / 3))


def test_bigram_k_zero_is_mle_and_unseen_bigram_is_impossible():
    lm = BigramModel.fit(CORPUS, k=0)
    # Seen: P(a | <s>) = 2/2, P(b | a) = 1/3, P(</s> | b) = 1/1  ->  P = 1/3
    assert lm.perplexity("a b") == pytest.approx(3 ** (1 / 3))
    # Unseen bigram (<s>, b): probability 0, so log P = -inf and perplexity = inf.
    assert lm.logprob("b a") == -math.inf
    assert lm.perplexity("b a") == math.inf
    assert lm.perplexity("a zebra") == math.inf  # <unk> was never seen either


@pytest.mark.parametrize("k", [-1, -0.1, float("nan"), float("inf"), "1"])
def test_bigram_rejects_bad_k(k):
    with pytest.raises(InputError, match="`k`"):
        BigramModel.fit(CORPUS, k=k)


@pytest.mark.parametrize("corpus", ["", "   \n\t\n"])
def test_bigram_rejects_empty_corpus(corpus):
    with pytest.raises(InputError, match="corpus"):
        BigramModel.fit(corpus)


def test_bigram_rejects_empty_text():
    lm = BigramModel.fit(CORPUS)
    with pytest.raises(InputError, match="text"):
        lm.perplexity("  \n ")


def test_tokenisation_cjk_and_punctuation():
    assert sentences("我爱北京。\n\n  \nHello, World 2024!") == [
        ["我", "爱", "北", "京", "。"], ["hello", ",", "world", "2024", "!"]]
    assert sentences("I love 北京") == [["i", "love", "北", "京"]]
    assert sentences("東京へ行く") == [["東", "京", "へ", "行", "く"]]
    assert sentences("안녕 하세요") == [["안녕", "하세요"]]  # Hangul is spaced: whole words
    assert sentences("Café naïve") == [["café", "naïve"]]


def test_bigram_on_chinese_corpus():
    lm = BigramModel.fit("我爱北京\n我爱上海", k=1.0)
    assert lm.vocab_size == 6 + 2  # 我 爱 北 京 上 海 + </s> + <unk>
    assert lm.perplexity("我爱北京") < lm.perplexity("京北爱我")


# ---------------------------------------------------------------- transformer (real built-in model)

def test_score_text_chain_rule(prepared):
    text = "The cat sat on the mat."
    result = score_text(text, model=MODEL)
    tok = lmlab.load(MODEL).tokenizer
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert [t.token_id for t in result.tokens] == ids  # every text token scored, BOS conditions the first
    assert "".join(t.token for t in result.tokens) == text
    assert math.fsum(t.logprob for t in result.tokens) == pytest.approx(result.total_logprob, abs=1e-6)
    assert result.perplexity == pytest.approx(math.exp(-result.total_logprob / len(ids)))
    assert all(t.logprob <= 0 and 0 < t.prob <= 1 for t in result.tokens)
    assert result.model == MODEL and result.note == ""


def test_natural_sentence_beats_shuffled(prepared):
    natural = score_text("The cat sat on the mat.", model=MODEL)
    shuffled = score_text("mat the cat. on sat The", model=MODEL)
    assert natural.perplexity < shuffled.perplexity


def test_score_text_readable_pieces_for_chinese(prepared):
    result = score_text("我爱北京\n", model=MODEL)
    assert result.tokens[-1].token == "\n"
    assert not any("\ufffd" in t.token for t in result.tokens)


def test_score_text_truncates(prepared):
    result = score_text("The cat sat on the mat.", model=MODEL, max_tokens=3)
    assert [t.token for t in result.tokens] == ["The", " cat", " sat"]
    assert "truncated" in result.note


def test_score_text_without_bos_skips_first_token(prepared, monkeypatch):
    real = lmlab.load(MODEL)

    class NoBos:
        bos_token_id = None

        def convert_tokens_to_ids(self, token):  # no <|endoftext|> document separator either
            return None

        def __call__(self, *args, **kwargs):
            return real.tokenizer(*args, **kwargs)

        def __getattr__(self, name):
            return getattr(real.tokenizer, name)

    monkeypatch.setattr(lmlab, "load", lambda *a, **kw: type(real)(**{**vars(real), "tokenizer": NoBos()}))
    result = score_text("The cat sat.", model=MODEL)
    assert [t.token for t in result.tokens] == [" cat", " sat", "."]
    assert "first token" in result.note
    with pytest.raises(InputError, match="single token"):
        score_text("The", model=MODEL)


def test_next_token_distribution(prepared):
    top = next_token_distribution("The capital of France is", k=5, model=MODEL)
    assert len(top) == 5
    probs = [p for _, p in top]
    assert probs == sorted(probs, reverse=True)
    assert sum(probs) <= 1 + 1e-6 and all(p > 0 for p in probs)
    assert " Paris" in [t for t, _ in top]


def test_compare_perplexities(prepared):
    out = compare_perplexities("The cat sat on the mat.", "the cat sat on the mat.\nthe dog sat on the log.",
                               model=MODEL)
    assert set(out) == {"lm_perplexity", "bigram_perplexity", "lm_tokens", "bigram_tokens"}
    assert out["lm_tokens"] == 7 and out["bigram_tokens"] == 8  # 7 words/marks + </s>
    assert out["lm_perplexity"] > 1 and out["bigram_perplexity"] > 1


@pytest.mark.parametrize("call, match", [
    (lambda: score_text("", model=MODEL), "`text`"),
    (lambda: score_text(" \n\t", model=MODEL), "`text`"),
    (lambda: score_text("hi", model=MODEL, max_tokens=0), "`max_tokens`"),
    (lambda: next_token_distribution("   ", model=MODEL), "`prefix`"),
    (lambda: next_token_distribution("Hi", k=0, model=MODEL), "`k`"),
    (lambda: next_token_distribution("Hi", k=101, model=MODEL), "`k`"),
    (lambda: next_token_distribution("Hi", k=2.5, model=MODEL), "`k`"),
    (lambda: compare_perplexities("hi", "", model=MODEL), "corpus"),
    (lambda: compare_perplexities("hi", "hi", k=-1, model=MODEL), "`k`"),
])
def test_bad_inputs_raise_input_error(call, match):
    with pytest.raises(InputError, match=match):
        call()


# ---------------------------------------------------------------- an SFT adapter on the lab's model

@pytest.fixture(scope="module")
def sft_adapter(prepared, tmp_path_factory):
    """A LoRA adapter of the lab's model after one SFT step (a high rate, so that the scores move)."""
    from lmdemo.train.sft import SFTConfig, train_sft

    rows = [{"prompt": "Where do cats sit?", "response": "On the mat."},
            {"prompt": "Capital of France?", "response": "Paris."}]
    cfg = SFTConfig(output_dir=str(tmp_path_factory.mktemp("lab") / "lab-sft"), base_model=MODEL, max_steps=1,
                    batch_size=2, max_length=48, learning_rate=1e-3)
    return train_sft(rows, [], cfg).output_dir


def test_lab_jobs_run_on_an_sft_adapter(sft_adapter):
    text, prefix = "The cat sat on the mat.", "The capital of France is"
    base = lmlab.perplexity(lmlab.PerplexityRequest(text, model=MODEL))
    base_next = lmlab.next_tokens(lmlab.NextTokensRequest(prefix, k=5, model=MODEL))
    assert base.adapter is None and base.to_dict()["adapter"] is None
    # Its name or folder in the model box (as the lab's picker lists it), or given as the adapter alone.
    for kw in ({"model": sft_adapter}, {"adapter": sft_adapter}):
        req = lmlab.PerplexityRequest(text, **kw)
        assert (req.model, req.adapter) == (MODEL, sft_adapter)
        tuned = lmlab.perplexity(req)
        assert [t.token_id for t in tuned.tokens] == [t.token_id for t in base.tokens]
        assert tuned.perplexity != pytest.approx(base.perplexity, rel=1e-4)  # the adapter is in the forward pass
        assert tuned.total_logprob == pytest.approx(math.fsum(t.logprob for t in tuned.tokens), abs=1e-6)
        assert tuned.adapter == "lab-sft" and tuned.to_dict()["adapter"] == "lab-sft"
        top = lmlab.next_tokens(lmlab.NextTokensRequest(prefix, k=5, **kw))
        assert top.adapter == "lab-sft" and len(top.tokens) == 5
        assert [p for _, p in top.tokens] != pytest.approx([p for _, p in base_next.tokens], rel=1e-4)
        cmp = lmlab.bigram(lmlab.BigramRequest(text, "the cat sat on the mat.", **kw))
        assert cmp.lm_perplexity == pytest.approx(tuned.perplexity) and cmp.to_dict()["adapter"] == "lab-sft"
