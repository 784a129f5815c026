"""The offline evaluate metric modules equal the libraries they wrap, on hand-made cases."""

import math
import random

import evaluate
import pytest
import sacrebleu
import torch
import torch.nn.functional as F
from rouge_score import rouge_scorer
from sklearn.metrics import accuracy_score, precision_recall_fscore_support

from lmdemo.eval.metrics import METRICS_DIR, available_metrics, load_metric

ALL = ["accuracy", "chrf", "f1", "perplexity", "rouge", "sacrebleu"]


@pytest.fixture(scope="module")
def metric():
    loaded = {}

    def get(name):
        if name not in loaded:
            loaded[name] = load_metric(name)
        return loaded[name]

    return get


# ---------------------------------------------------------------- loading

def test_every_metric_loads_offline_with_its_info():
    assert set(ALL) <= set(available_metrics())
    for name in ALL:
        module = load_metric(name)
        assert isinstance(module, evaluate.EvaluationModule)
        assert module.name == name
        assert module.description.strip() and module.citation.strip() and module.inputs_description.strip()
        assert module.reference_urls
        # evaluate.load with the folder path is what load_metric does
        assert evaluate.load(str(METRICS_DIR / name)).name == name


def test_unknown_metric_names_the_available_ones():
    with pytest.raises(ValueError) as err:
        load_metric("bleurt")
    message = str(err.value)
    assert "bleurt" in message
    for name in ALL:
        assert name in message  # the available ones are listed


def test_combine_accuracy_and_f1(metric):
    combined = evaluate.combine([load_metric("accuracy"), load_metric("f1")])
    preds = ["positive", "negative", "positive", "neutral"]
    refs = ["positive", "positive", "positive", "neutral"]
    result = combined.compute(predictions=preds, references=refs)
    assert set(result) == {"accuracy", "precision", "recall", "f1"}
    assert result["accuracy"] == accuracy_score(refs, preds)
    p, r, f, _ = precision_recall_fscore_support(refs, preds, average="macro", zero_division=0.0)
    assert (result["precision"], result["recall"], result["f1"]) == (p, r, f)


# ---------------------------------------------------------------- classification

LABEL_CASES = [
    (["positive", "negative", "positive"], ["positive", "positive", "positive"]),
    (["positive"], ["positive"]),  # a single example
    (["negative"], ["positive"]),
    # "neutral" only in the references, "mixed" only in the predictions
    (["positive", "negative", "negative", "mixed", "positive"], ["positive", "neutral", "negative", "neutral", "negative"]),
    (["très bien", "mal", "好", "😀"], ["très bien", "好", "好", "😀"]),  # unicode labels
    (["", "a", "a"], ["", "a", ""]),  # the empty string is a label like any other
]


@pytest.mark.parametrize("preds,refs", LABEL_CASES)
def test_accuracy_equals_sklearn(metric, preds, refs):
    result = metric("accuracy").compute(predictions=preds, references=refs)
    assert result == {"accuracy": accuracy_score(refs, preds)}
    assert isinstance(result["accuracy"], float)
    counted = metric("accuracy").compute(predictions=preds, references=refs, normalize=False)
    assert counted["accuracy"] == accuracy_score(refs, preds, normalize=False)


def test_accuracy_int_labels_and_weights(metric):
    preds, refs, weights = [0, 1, 2, 1], [0, 2, 2, 1], [1.0, 3.0, 0.5, 1.0]
    assert metric("accuracy").compute(predictions=preds, references=refs)["accuracy"] == accuracy_score(refs, preds)
    weighted = metric("accuracy").compute(predictions=preds, references=refs, sample_weight=weights)
    assert weighted["accuracy"] == accuracy_score(refs, preds, sample_weight=weights)


@pytest.mark.parametrize("preds,refs", LABEL_CASES)
@pytest.mark.parametrize("average", ["macro", "micro", "weighted"])
def test_f1_averages_equal_sklearn(metric, preds, refs, average):
    result = metric("f1").compute(predictions=preds, references=refs, average=average)
    p, r, f, _ = precision_recall_fscore_support(refs, preds, average=average, zero_division=0.0)
    assert result == {"precision": p, "recall": r, "f1": f}
    assert all(type(v) is float for v in result.values())


def test_f1_default_is_macro(metric):
    preds, refs = LABEL_CASES[3]
    assert metric("f1").compute(predictions=preds, references=refs) == \
        metric("f1").compute(predictions=preds, references=refs, average="macro")


@pytest.mark.parametrize("preds,refs", LABEL_CASES)
def test_f1_per_class_with_string_labels(metric, preds, refs):
    result = metric("f1").compute(predictions=preds, references=refs, average=None)
    p, r, f, _ = precision_recall_fscore_support(refs, preds, average=None, zero_division=0.0)
    assert result["precision"] == p.tolist() and result["recall"] == r.tolist() and result["f1"] == f.tolist()
    assert result["labels"] == sorted(set(preds) | set(refs))


def test_f1_label_only_in_references_and_explicit_labels(metric):
    preds = ["positive", "negative", "negative", "positive"]
    refs = ["positive", "neutral", "negative", "neutral"]
    per_class = metric("f1").compute(predictions=preds, references=refs, average=None)
    neutral = per_class["labels"].index("neutral")
    assert per_class["precision"][neutral] == 0.0 and per_class["recall"][neutral] == 0.0
    labels = ["neutral", "positive", "negative"]
    chosen = metric("f1").compute(predictions=preds, references=refs, average=None, labels=labels)
    p, r, f, _ = precision_recall_fscore_support(refs, preds, average=None, labels=labels, zero_division=0.0)
    assert chosen == {"precision": p.tolist(), "recall": r.tolist(), "f1": f.tolist(), "labels": labels}
    subset = metric("f1").compute(predictions=preds, references=refs, labels=["positive", "negative"])
    p, r, f, _ = precision_recall_fscore_support(refs, preds, average="macro", labels=["positive", "negative"],
                                                 zero_division=0.0)
    assert subset == {"precision": p, "recall": r, "f1": f}


def test_f1_binary_and_int_labels(metric):
    preds, refs = ["spam", "ham", "spam", "spam"], ["spam", "ham", "ham", "spam"]
    binary = metric("f1").compute(predictions=preds, references=refs, average="binary", pos_label="spam")
    p, r, f, _ = precision_recall_fscore_support(refs, preds, average="binary", pos_label="spam")
    assert binary == {"precision": p, "recall": r, "f1": f}
    ipreds, irefs = [0, 1, 2, 2, 1], [0, 2, 2, 1, 1]
    for average in ("macro", "micro", "weighted"):
        got = metric("f1").compute(predictions=ipreds, references=irefs, average=average)
        p, r, f, _ = precision_recall_fscore_support(irefs, ipreds, average=average, zero_division=0.0)
        assert got == {"precision": p, "recall": r, "f1": f}
    per_class = metric("f1").compute(predictions=ipreds, references=irefs, average=None)
    assert per_class["labels"] == [0, 1, 2]


# ---------------------------------------------------------------- ROUGE

ROUGE_CASES = [
    (["the cat sat on the mat", "a quick brown fox"], ["the cat was on the mat", "the quick brown fox jumps"]),
    (["hello there"], ["hello there general kenobi"]),  # a single example
    (["", "something"], ["a reference", "something else"]),  # an empty prediction
    (["le café est très bon ☕", "naïve résumé 😀 ok"], ["le café était très bon", "naive resume ok 😀"]),
    (["猫坐在垫子上", "the 猫 sat"], ["猫在垫子上", "the 猫 sat down"]),
    # several sentences, one per line: rougeLsum differs from rougeL
    (["the cat sat.\nit was happy on the mat.", "police killed the gunman.\nno one else was hurt."],
     ["it was happy.\nthe cat sat on the mat.", "the gunman was shot by police.\nnobody else was hurt."]),
]
TYPES = ["rouge1", "rouge2", "rougeL", "rougeLsum"]


def direct_rouge(preds, refs, use_stemmer=False, tokenizer=None):
    scorer = rouge_scorer.RougeScorer(TYPES, use_stemmer=use_stemmer, tokenizer=tokenizer)
    per_example = {t: [] for t in TYPES}
    for pred, ref in zip(preds, refs):
        scores = scorer.score(ref, pred) if isinstance(ref, str) else scorer.score_multi(ref, pred)
        for t in TYPES:
            per_example[t].append(scores[t].fmeasure)
    return per_example


@pytest.mark.parametrize("preds,refs", ROUGE_CASES)
@pytest.mark.parametrize("use_stemmer", [False, True])
def test_rouge_equals_rouge_score_mean_fmeasure(metric, preds, refs, use_stemmer):
    result = metric("rouge").compute(predictions=preds, references=refs, use_stemmer=use_stemmer)
    expected = direct_rouge(preds, refs, use_stemmer)
    assert set(result) == set(TYPES)
    for t in TYPES:
        assert result[t] == pytest.approx(sum(expected[t]) / len(expected[t]), rel=1e-12, abs=1e-12)
        assert 0.0 <= result[t] <= 1.0
    per_example = metric("rouge").compute(predictions=preds, references=refs, use_stemmer=use_stemmer,
                                          use_aggregator=False)
    assert per_example == expected


def test_rouge_lsum_splits_on_newlines(metric):
    preds, refs = ROUGE_CASES[-1]
    result = metric("rouge").compute(predictions=preds, references=refs)
    assert result["rougeLsum"] > result["rougeL"]
    flat = metric("rouge").compute(predictions=[p.replace("\n", " ") for p in preds],
                                   references=[r.replace("\n", " ") for r in refs])
    assert flat["rougeLsum"] == flat["rougeL"]


def test_rouge_empty_prediction_scores_zero(metric):
    result = metric("rouge").compute(predictions=[""], references=["a reference"])
    assert result == {t: 0.0 for t in TYPES}


def test_rouge_multiple_references_take_the_best(metric):
    preds = ["the cat sat on the mat", "dogs bark"]
    refs = [["a dog ran", "the cat sat on a mat"], ["dogs bark loudly"]]
    result = metric("rouge").compute(predictions=preds, references=refs, use_aggregator=False)
    assert result == direct_rouge(preds, refs)
    single = metric("rouge").compute(predictions=preds[:1], references=[refs[0][1]], use_aggregator=False)
    assert result["rouge1"][0] == single["rouge1"][0]


def test_rouge_custom_tokenizer_scores_chinese(metric):
    class Chars:
        def tokenize(self, text):
            return [c for c in text if not c.isspace()]

    preds, refs = ["猫坐在垫子上"], ["猫在垫子上"]
    assert metric("rouge").compute(predictions=preds, references=refs)["rouge1"] == 0.0  # ASCII-only default
    result = metric("rouge").compute(predictions=preds, references=refs, tokenizer=Chars(), use_aggregator=False)
    assert result == direct_rouge(preds, refs, tokenizer=Chars())
    assert result["rouge1"][0] > 0.8


# ---------------------------------------------------------------- BLEU and chrF

BLEU_CASES = [
    # (predictions, references per prediction, tokenize)
    (["the cat sat on the mat", "there is a dog in the garden"],
     [["the cat sat on the mat"], ["a dog is in the garden"]], "13a"),
    (["hello world, how are you today?"], [["hello world, how are you doing today?"]], "13a"),  # single
    (["", "the house is small"], [["something here"], ["the house is very small"]], "13a"),  # empty prediction
    (["Le café est très bon ☕ 😀", "Ça va très bien, merci !"],
     [["Le café était très bon ☕ 😀"], ["Ça va bien, merci !"]], "13a"),
    (["猫坐在垫子上。", "今天天气很好"], [["猫坐在席子上。"], ["今天的天气很好"]], "zh"),
    (["Le café est très bon", "déjà vu"], [["Le café est bon"], ["déjà vu"]], "intl"),
    # two references per prediction
    (["the cat is on the mat", "it is a guide to action"],
     [["the cat is on the mat", "there is a cat on the mat"],
      ["it is a guide to action that ensures", "it is the guiding principle which guarantees"]], "13a"),
]


def streams(refs):
    return [list(stream) for stream in zip(*refs)]


@pytest.mark.parametrize("preds,refs,tokenize", BLEU_CASES)
def test_sacrebleu_equals_corpus_bleu(metric, preds, refs, tokenize):
    result = metric("sacrebleu").compute(predictions=preds, references=refs, tokenize=tokenize)
    direct = sacrebleu.corpus_bleu(preds, streams(refs), tokenize=tokenize)
    assert result == {
        "score": direct.score, "counts": direct.counts, "totals": direct.totals,
        "precisions": direct.precisions, "bp": direct.bp, "sys_len": direct.sys_len, "ref_len": direct.ref_len,
    }
    assert 0.0 <= result["score"] <= 100.0 + 1e-9


def test_sacrebleu_zh_tokenizer_matters_for_chinese(metric):
    preds, refs, _ = BLEU_CASES[4]
    zh = metric("sacrebleu").compute(predictions=preds, references=refs, tokenize="zh")
    default = metric("sacrebleu").compute(predictions=preds, references=refs)
    assert default == metric("sacrebleu").compute(predictions=preds, references=refs, tokenize="13a")
    assert zh["sys_len"] > default["sys_len"]  # characters are split apart
    assert zh["score"] > default["score"]


def test_sacrebleu_identical_is_100_and_options_pass_through(metric):
    result = metric("sacrebleu").compute(predictions=["the cat sat on the mat"], references=[["the cat sat on the mat"]])
    assert result["score"] == pytest.approx(100.0, abs=1e-9) and result["bp"] == 1.0
    preds, refs = ["The Cat sat"], [["the cat sat down"]]
    got = metric("sacrebleu").compute(predictions=preds, references=refs, lowercase=True, smooth_method="floor",
                                      smooth_value=0.1, use_effective_order=True)
    direct = sacrebleu.corpus_bleu(preds, streams(refs), lowercase=True, smooth_method="floor", smooth_value=0.1,
                                   use_effective_order=True)
    assert got["score"] == direct.score


def test_sacrebleu_single_string_and_varying_reference_counts(metric):
    preds = ["the cat sat on the mat", "a dog barks"]
    as_strings = metric("sacrebleu").compute(predictions=preds, references=["the cat sat on a mat", "the dog barks"])
    assert as_strings["score"] == sacrebleu.corpus_bleu(preds, [["the cat sat on a mat", "the dog barks"]]).score
    # A repeated reference changes nothing, so padding the short list with its own reference is the same corpus.
    varying = metric("sacrebleu").compute(predictions=preds,
                                          references=[["the cat sat on a mat", "a cat on the mat"], ["the dog barks"]])
    direct = sacrebleu.corpus_bleu(preds, [["the cat sat on a mat", "the dog barks"],
                                           ["a cat on the mat", "the dog barks"]])
    assert varying["score"] == direct.score and varying["counts"] == direct.counts


CHRF_CASES = [case[:2] for case in BLEU_CASES]


@pytest.mark.parametrize("preds,refs", CHRF_CASES)
@pytest.mark.parametrize("char_order,word_order,beta", [(6, 0, 2), (6, 2, 2), (4, 1, 1), (6, 0, 3)])
def test_chrf_equals_corpus_chrf(metric, preds, refs, char_order, word_order, beta):
    result = metric("chrf").compute(predictions=preds, references=refs, char_order=char_order,
                                    word_order=word_order, beta=beta)
    direct = sacrebleu.corpus_chrf(preds, streams(refs), char_order=char_order, word_order=word_order, beta=beta)
    assert result == {"score": direct.score, "char_order": char_order, "word_order": word_order, "beta": beta}


def test_chrf_defaults_are_chrf_and_chrfpp_differs(metric):
    preds, refs = CHRF_CASES[0]
    default = metric("chrf").compute(predictions=preds, references=refs)
    assert default == {"score": sacrebleu.corpus_chrf(preds, streams(refs)).score,
                       "char_order": 6, "word_order": 0, "beta": 2}
    plus = metric("chrf").compute(predictions=preds, references=refs, word_order=2)
    assert plus["score"] != default["score"]
    upper = metric("chrf").compute(predictions=["THE CAT"], references=[["the cat"]], lowercase=True)
    assert upper["score"] == pytest.approx(100.0)


# ---------------------------------------------------------------- perplexity

NATURAL = "The cat sat on the mat and looked out of the window at the birds in the garden."


def direct_nll(model, ids):
    """Summed NLL and count of tokens 1..n-1 of one sequence, by a plain forward pass."""
    input_ids = torch.tensor([ids], device=next(model.parameters()).device)
    with torch.no_grad():
        logits = model(input_ids=input_ids).logits[0, :-1].float()
    nll = F.cross_entropy(logits, input_ids[0, 1:], reduction="sum")
    return float(nll), len(ids) - 1


@pytest.fixture(scope="module")
def smollm(prepared):
    from lmdemo.models import loading

    return loading.load("smollm2-135m-instruct")


def test_perplexity_equals_a_direct_forward_pass(metric, smollm):
    texts = [NATURAL, "Hello world!", "Ünïcödé café 😀 猫"]
    tok = smollm.tokenizer
    assert tok("a").input_ids[0] != tok.bos_token_id  # SmolLM2 adds no BOS: scoring starts at token 2
    result = metric("perplexity").compute(predictions=texts, model=smollm.model, tokenizer=tok, batch_size=1)
    assert set(result) == {"perplexities", "mean_perplexity", "perplexity"}
    sums, counts = zip(*(direct_nll(smollm.model, tok(t, add_special_tokens=False).input_ids) for t in texts))
    expected = [math.exp(s / n) for s, n in zip(sums, counts)]
    assert result["perplexities"] == pytest.approx(expected, rel=1e-5)
    assert result["mean_perplexity"] == pytest.approx(sum(expected) / 3, rel=1e-5)
    assert result["perplexity"] == pytest.approx(math.exp(sum(sums) / sum(counts)), rel=1e-5)


def test_perplexity_by_model_name_uses_lmdemo_loading(metric, smollm):
    texts = [NATURAL, "Hello world!"]
    by_object = metric("perplexity").compute(predictions=texts, model=smollm.model, tokenizer=smollm.tokenizer)
    by_name = metric("perplexity").compute(predictions=texts, model="smollm2-135m-instruct")
    assert by_name == by_object  # the same cached model and its own tokenizer


def test_natural_sentence_beats_shuffled_words(metric, smollm):
    words = NATURAL.rstrip(".").split()
    shuffled = words[:]
    random.Random(0).shuffle(shuffled)
    result = metric("perplexity").compute(predictions=[NATURAL, " ".join(shuffled) + "."], model=smollm.model,
                                          tokenizer=smollm.tokenizer)
    natural, scrambled = result["perplexities"]
    assert natural < scrambled


def test_perplexity_max_length_and_errors(metric, smollm):
    kwargs = dict(model=smollm.model, tokenizer=smollm.tokenizer)
    ids = smollm.tokenizer(NATURAL, add_special_tokens=False).input_ids
    cut = metric("perplexity").compute(predictions=[NATURAL], max_length=5, **kwargs)
    s, n = direct_nll(smollm.model, ids[:5])
    assert cut["perplexity"] == pytest.approx(math.exp(s / n), rel=1e-5)
    with pytest.raises(ValueError, match="no token to score"):
        metric("perplexity").compute(predictions=["fine text", ""], **kwargs)
    with pytest.raises(ValueError, match="tokenizer"):
        metric("perplexity").compute(predictions=["text"], model=smollm.model)


@pytest.fixture(scope="module")
def tiny(prepared):
    """A tiny random fp32 Llama with Gemma's tokenizer, which adds <bos> itself."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from lmdemo.models import store

    tok = store.load_tokenizer(store.model_dir("gemma-3-270m"))
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         num_key_value_heads=2, intermediate_size=64, max_position_embeddings=128,
                         pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    return LlamaForCausalLM(config).eval(), tok


def test_perplexity_prepends_bos_when_the_tokenizer_adds_one(metric, tiny):
    """Every text token is scored after the BOS."""
    model, tok = tiny
    assert tok("a").input_ids[0] == tok.bos_token_id
    texts = ["Hello", "The cat sat on the mat.", "café 😀 猫"]  # "Hello" is one token: scored only thanks to BOS
    result = metric("perplexity").compute(predictions=texts, model=model, tokenizer=tok, batch_size=1)
    sums, counts = zip(*(direct_nll(model, [tok.bos_token_id] + tok(t, add_special_tokens=False).input_ids)
                         for t in texts))
    assert counts[0] == 1
    assert result["perplexities"] == pytest.approx([math.exp(s / n) for s, n in zip(sums, counts)], rel=1e-5)
    assert result["perplexity"] == pytest.approx(math.exp(sum(sums) / sum(counts)), rel=1e-5)
    # a random model is about as perplexed as a uniform guess over the vocabulary
    assert 0.2 * len(tok) < result["perplexity"] < 5 * len(tok)
    with pytest.raises(ValueError, match="no token to score"):
        metric("perplexity").compute(predictions=[""], model=model, tokenizer=tok)


def test_perplexity_padding_does_not_change_scores(metric, tiny):
    """Right-padded batches (fp32, so no bf16 rounding noise) equal one text at a time."""
    model, tok = tiny
    texts = [NATURAL, "Hi", "A short one.", NATURAL + " " + NATURAL, "Paris is the capital of France."]
    one = metric("perplexity").compute(predictions=texts, model=model, tokenizer=tok, batch_size=1)
    for batch_size in (2, 5):
        padded = metric("perplexity").compute(predictions=texts, model=model, tokenizer=tok, batch_size=batch_size)
        assert padded["perplexities"] == pytest.approx(one["perplexities"], rel=1e-5)
        assert padded["perplexity"] == pytest.approx(one["perplexity"], rel=1e-5)
        assert padded["mean_perplexity"] == pytest.approx(one["mean_perplexity"], rel=1e-5)
