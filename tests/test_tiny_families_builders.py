"""The builders in tests/tiny_families.py: each folder is safetensors-only, reloads through the Auto classes (no
trust_remote_code) and keeps, after the reload, the behaviour its builder promised."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import tiny_families as tf

pytestmark = [pytest.mark.tiny,
              # MarianTokenizer warns on every load when sacremoses is not installed (it is not a requirement).
              pytest.mark.filterwarnings("ignore:Recommended. pip install sacremoses")]

SEQ2SEQ = ["marian_copy", "t5_prefix", "bart", "nllb"]
CLASSIFIERS = ["multilabel_classifier", "ready_classifier"]


def _build(tmp_path_factory, name: str) -> Path:
    folder = tmp_path_factory.mktemp(name) / "model"
    assert getattr(tf, f"build_{name}")(folder) == folder
    return folder


# One module-scoped fixture per builder, so `--durations` shows each build as its own setup.
@pytest.fixture(scope="module")
def marian_copy_dir(tmp_path_factory) -> Path:
    return _build(tmp_path_factory, "marian_copy")


@pytest.fixture(scope="module")
def t5_prefix_dir(tmp_path_factory) -> Path:
    return _build(tmp_path_factory, "t5_prefix")


@pytest.fixture(scope="module")
def bart_dir(tmp_path_factory) -> Path:
    return _build(tmp_path_factory, "bart")


@pytest.fixture(scope="module")
def nllb_dir(tmp_path_factory) -> Path:
    return _build(tmp_path_factory, "nllb")


@pytest.fixture(scope="module")
def multilabel_classifier_dir(tmp_path_factory) -> Path:
    return _build(tmp_path_factory, "multilabel_classifier")


@pytest.fixture(scope="module")
def ready_classifier_dir(tmp_path_factory) -> Path:
    return _build(tmp_path_factory, "ready_classifier")


def _load(folder: Path, auto_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder), auto_model.from_pretrained(folder).eval()


def _seq2seq(folder: Path):
    from transformers import AutoModelForSeq2SeqLM

    return _load(folder, AutoModelForSeq2SeqLM)


def _greedy(model, tok, text: str, **kwargs) -> tuple[str, list[int]]:
    with torch.no_grad():
        out = model.generate(**tok(text, return_tensors="pt"), max_new_tokens=40, **tf.GREEDY, **kwargs)
    return tok.decode(out[0], skip_special_tokens=True), out[0].tolist()


# ---------------------------------------------------------------- every folder

@pytest.mark.parametrize("name", SEQ2SEQ + CLASSIFIERS)
def test_folder_is_safetensors_only_and_reloads(name, request):
    from transformers import AutoModelForSeq2SeqLM, AutoModelForSequenceClassification

    folder = request.getfixturevalue(f"{name}_dir")
    files = {p.name for p in folder.iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer_config.json"} <= files
    assert not [f for f in files if f.endswith(".bin")]
    auto = AutoModelForSequenceClassification if name in CLASSIFIERS else AutoModelForSeq2SeqLM
    expected = {"marian_copy": ("MarianTokenizer", "MarianMTModel"),
                "t5_prefix": ("T5Tokenizer", "T5ForConditionalGeneration"),
                "bart": ("RobertaTokenizer", "BartForConditionalGeneration"),
                "nllb": ("NllbTokenizer", "M2M100ForConditionalGeneration"),
                "multilabel_classifier": ("BertTokenizer", "BertForSequenceClassification"),
                "ready_classifier": ("BertTokenizer", "BertForSequenceClassification")}[name]
    tok, model = _load(folder, auto)
    assert (type(tok).__name__, type(model).__name__) == expected
    assert len(tok) == model.config.vocab_size


# ---------------------------------------------------------------- Marian

def test_marian_copies_and_keeps_opus_settings(marian_copy_dir):
    tok, model = _seq2seq(marian_copy_dir)
    config = json.loads((marian_copy_dir / "tokenizer_config.json").read_text())
    assert {k: config[k] for k in tf.MARIAN_PAIR} == tf.MARIAN_PAIR == {"source_lang": "en", "target_lang": "fr"}
    assert (tok.source_lang, tok.target_lang) == ("en", "fr")
    assert tok.supported_language_codes == []  # no >>xx<< target tokens: a single-pair model
    assert {p.name for p in marian_copy_dir.iterdir()} >= {"source.spm", "target.spm", "vocab.json"}
    pad, eos = tok.pad_token_id, tok.eos_token_id
    assert (eos, pad) == (0, len(tok) - 1)
    gen = model.generation_config
    assert (gen.num_beams, gen.max_length, gen.bad_words_ids) == (4, 512, [[pad]])
    assert (gen.decoder_start_token_id, gen.eos_token_id, gen.pad_token_id) == (pad, eos, pad)
    assert tok(tf.COPY_SENTENCES[0])["input_ids"][-1] == eos
    for sentence in tf.COPY_SENTENCES:
        text, ids = _greedy(model, tok, sentence)
        assert text == sentence
        assert ids[0] == pad and ids[-1] == eos


# ---------------------------------------------------------------- T5

def test_t5_prefix_changes_the_output(t5_prefix_dir):
    tok, model = _seq2seq(t5_prefix_dir)
    assert model.config.task_specific_params == tf.T5_TASK_PARAMS
    assert (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2)
    ids = tok("The cat sat.")["input_ids"]
    assert ids[-1] == tok.eos_token_id and ids.count(tok.eos_token_id) == 1  # "</s>" appended, no BOS
    assert model.generation_config.decoder_start_token_id == 0
    for a, b in tf.T5_PAIRS:
        assert _greedy(model, tok, f"{tf.T5_PREFIX}{a} {b}")[0] == a
        assert _greedy(model, tok, f"{a} {b}")[0] == b


# ---------------------------------------------------------------- BART

def test_bart_returns_the_first_sentence(bart_dir):
    tok, model = _seq2seq(bart_dir)
    assert [tok.bos_token_id, tok.pad_token_id, tok.eos_token_id, tok.unk_token_id] == [0, 1, 2, 3]
    assert tok.mask_token_id == len(tok) - 1
    gen = model.generation_config
    assert (gen.forced_bos_token_id, gen.forced_eos_token_id, gen.decoder_start_token_id) == (0, 2, 2)
    assert (gen.num_beams, gen.no_repeat_ngram_size, gen.early_stopping) == (4, 3, True)
    for a, b in tf.BART_PAIRS:
        text, ids = _greedy(model, tok, f"{a} {b}")
        assert text == a
        assert ids[:2] == [2, 0]  # decoder start "</s>", then the forced "<s>"


# ---------------------------------------------------------------- NLLB

def test_nllb_language_codes(nllb_dir):
    from transformers import AutoTokenizer

    tok, model = _seq2seq(nllb_dir)
    codes = {lang: tok.convert_tokens_to_ids(lang) for lang in tf.NLLB_LANGS}
    assert tok.unk_token_id not in codes.values() and len(set(codes.values())) == len(codes)
    assert set(codes.values()) <= set(tok.all_special_ids)
    assert tok.src_lang == "eng_Latn"
    english = tok("The cat sat.")["input_ids"]
    assert english[0] == codes["eng_Latn"] and english[-1] == tok.eos_token_id  # [code] pieces </s>
    tok.src_lang = "fra_Latn"
    try:
        french = tok("The cat sat.")["input_ids"]
    finally:
        tok.src_lang = "eng_Latn"
    assert french == [codes["fra_Latn"]] + english[1:]
    german = AutoTokenizer.from_pretrained(nllb_dir, src_lang="deu_Latn")("The cat sat.")["input_ids"]
    assert german == [codes["deu_Latn"]] + english[1:]
    for lang in ("fra_Latn", "deu_Latn", "zho_Hans"):
        text, ids = _greedy(model, tok, tf.SENTENCES[3], forced_bos_token_id=codes[lang])
        assert ids[0] == model.generation_config.decoder_start_token_id == tok.eos_token_id
        assert ids[1] == codes[lang]  # the forced BOS is the first generated token
        assert text.strip()
    assert len({_greedy(model, tok, s, forced_bos_token_id=codes["fra_Latn"])[0] for s in tf.SENTENCES[:4]}) == 4


# ---------------------------------------------------------------- classifiers

@pytest.mark.parametrize("name, labels, problem_type", [
    ("multilabel_classifier", tf.MULTILABEL_LABELS, "multi_label_classification"),
    ("ready_classifier", tf.READY_LABELS, None),
])
def test_classifier_labels_and_logits(name, labels, problem_type, request):
    from transformers import AutoModelForSequenceClassification

    tok, model = _load(request.getfixturevalue(f"{name}_dir"), AutoModelForSequenceClassification)
    assert model.config.id2label == labels
    assert model.config.label2id == {v: k for k, v in labels.items()}
    assert model.config.problem_type == problem_type
    with torch.no_grad():
        logits = model(**tok(tf.SENTENCES[:10], padding=True, return_tensors="pt")).logits
    assert logits.shape == (10, 3)
    assert len({tuple(row) for row in logits.round(decimals=3).tolist()}) == 10
    assert logits.std(dim=0).min() > 0.1
