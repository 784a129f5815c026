"""Tiny Hugging Face model folders of families that no PyPI package ships, built (and, where a behaviour is needed,
trained) in a few seconds on CPU, with no Hub and no trust_remote_code.

Each `build_*(folder)` writes a folder that `AutoTokenizer.from_pretrained(folder)` and the Auto model class read
back: model.safetensors (never .bin), config.json, generation_config.json and the tokenizer's own files, the
tokenizer trained right here (sentencepiece or `tokenizers`). Each returns `folder`. Seeds are fixed (and the global
RNG is restored afterwards); the builders that train keep training until the behaviour they promise holds, then
assert it, so the module constants below are behaviours the saved model was checked to have:

- build_marian_copy: MarianMTModel + MarianTokenizer (source.spm/target.spm/vocab.json, source_lang "en",
  target_lang "fr"), trained to copy its input: every sentence in COPY_SENTENCES comes back unchanged under greedy.
- build_t5_prefix: T5ForConditionalGeneration + T5Tokenizer; "summarize: " + A + " " + B -> A, while A + " " + B
  (no prefix) -> B, for every (A, B) in T5_PAIRS.
- build_bart: BartForConditionalGeneration + byte-level BPE (RobertaTokenizer, which is what BartTokenizer is in
  transformers 5); A + " " + B -> A for every (A, B) in BART_PAIRS.
- build_nllb: M2M100ForConditionalGeneration + NllbTokenizer with NLLB_LANGS as special tokens; trained only a few
  dozen steps, so that greedy output after any forced language code is varied (a loose copy of the input).
- build_multilabel_classifier / build_ready_classifier: BertForSequenceClassification heads (random, wide init).

Greedy in this module always means `num_beams=1, do_sample=False`: the saved generation configs carry the real
models' beam settings (Marian, BART: num_beams=4), so code that wants greedy must ask for it.
"""

from __future__ import annotations

import io
import json
import os
import string
import warnings
from contextlib import contextmanager
from pathlib import Path

import torch

SEED = 0

# The same ~50 short English sentences as tests/jobs/test_tiny_models.py: tokenizer training text and the rows the
# seq2seq models are trained on.
SENTENCES = [
    "The cat sat on the warm mat.", "A dog ran across the green park.", "We walked to the market in the morning.",
    "The sun is bright and the sky is blue.", "She reads a book every night before bed.",
    "My brother plays the guitar in a small band.", "It rained all day, so we stayed inside.",
    "The train to the city leaves at nine.", "He made soup with carrots and onions.",
    "The children built a castle of sand.", "Please close the window when you leave.",
    "Our teacher told us a funny story.", "The river flows slowly under the old bridge.",
    "I drink a cup of tea after lunch.", "They painted the kitchen a pale yellow.",
    "The shop on the corner sells fresh bread.", "A small bird sang outside my window.",
    "We watched a film about the ocean.", "The museum opens again next week.",
    "Her garden is full of red roses.", "The bus was late because of the snow.",
    "He fixed the old bicycle in the garage.", "The lake was calm and very cold.",
    "My grandmother bakes the best apple pie.", "The office is quiet on Friday afternoons.",
    "We planted three trees near the fence.", "The doctor asked me to rest for a week.",
    "A letter arrived for you this morning.", "The moon rose over the quiet hills.",
    "They sold their house and moved to the coast.", "I forgot my umbrella at the station.",
    "The baby laughed at the yellow duck.", "Our neighbours have a very loud dog.",
    "The bank sent a letter about the new fees.", "Please pay the invoice by the end of the month.",
    "The tax office needs the forms by Monday.", "We spent the holiday on a sunny beach.",
    "The hotel had a pool and a view of the sea.", "He lost his keys somewhere in the park.",
    "The library has thousands of old maps.", "She runs five miles every Sunday.",
    "The soup was too hot to eat at once.", "A storm knocked down the old oak tree.",
    "The students wrote a report about bees.", "I would like a table for two, please.",
    "The coffee machine in the office is broken.", "We counted the stars from the roof.",
    "The farmer sold eggs at the Saturday market.", "Turn left after the church and go straight on.",
    "The concert ended with a long song.",
]
# French-looking (and a little German/Spanish) text: only widens the tokenizers' vocabularies.
FOREIGN = [
    "Le chat est assis sur le tapis chaud.", "Nous avons marché jusqu'au marché ce matin.",
    "Le soleil brille et le ciel est bleu.", "Elle lit un livre chaque soir avant de dormir.",
    "Il a plu toute la journée, alors nous sommes restés à la maison.",
    "Le train pour la ville part à neuf heures.",
    "Merci beaucoup, à bientôt !", "Où est la gare, s'il vous plaît ?", "Der Hund läuft durch den grünen Park.",
    "El perro corre por el parque verde.", "Das Wetter ist heute sehr schön.", "¿Dónde está la estación?",
]
CORPUS = SENTENCES + FOREIGN

# ---------------------------------------------------------------- Marian (Helsinki-NLP/opus-mt-en-fr look-alike)

# The real opus-mt-en-fr tokenizer_config.json carries the pair as these two keys (MarianTokenizer stores them as the
# attributes tok.source_lang / tok.target_lang); its vocabulary has no ">>xx<<" target-language tokens (those exist
# only in multi-target models such as opus-mt-en-ROMANCE), and neither has this one
# (tok.supported_language_codes == []).
MARIAN_PAIR = {"source_lang": "en", "target_lang": "fr"}
# Sentences the Marian builder checked to come back unchanged (greedy, skip_special_tokens=True), one at a time.
COPY_SENTENCES = [
    "The cat sat on the warm mat.",
    "We walked to the market in the morning.",
    "The train to the city leaves at nine.",
    "Our teacher told us a funny story.",
    "The lake was calm and very cold.",
]
COPY_MIN_FRACTION = 0.9  # ... and at least this share of all SENTENCES copy exactly (checked batched)

# ---------------------------------------------------------------- T5 and BART

T5_TASK_PARAMS = {"summarization": {"prefix": "summarize: "},
                  "translation_en_to_fr": {"prefix": "translate English to French: "}}
T5_PREFIX = T5_TASK_PARAMS["summarization"]["prefix"]
T5_EXTRA_IDS = 10  # "<extra_id_0>".."<extra_id_9>" sentinels (t5-small has 100)
# Sentence pairs the model is trained on; the first ones are asserted by the builder (and exposed below).
_T5_TRAIN_PAIRS = [(SENTENCES[i], SENTENCES[i + 1]) for i in range(0, 24, 2)]
# (A, B): T5_PREFIX + A + " " + B -> A and A + " " + B -> B (greedy), checked by build_t5_prefix.
T5_PAIRS = _T5_TRAIN_PAIRS[:4]

_BART_TRAIN_PAIRS = [(SENTENCES[i], SENTENCES[i + 1]) for i in range(1, 25, 2)]
# (A, B): A + " " + B -> A (greedy, with the saved generation config's no_repeat_ngram_size), checked by build_bart.
BART_PAIRS = _BART_TRAIN_PAIRS[:4]

# ---------------------------------------------------------------- NLLB and the classifiers

NLLB_LANGS = ["eng_Latn", "fra_Latn", "deu_Latn", "spa_Latn", "zho_Hans"]
MULTILABEL_LABELS = {0: "joy", 1: "anger", 2: "surprise"}
READY_LABELS = {0: "NEG", 1: "NEU", 2: "POS"}

GREEDY = dict(num_beams=1, do_sample=False)
# The Marian/BART/M2M100 size here: 2+2 layers of width 64.
_DIMS = dict(d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4, decoder_attention_heads=4,
             encoder_ffn_dim=128, decoder_ffn_dim=128)
# Filled by the builders that train: {"marian": steps, ...}, for reports. TINY_FAMILIES_DEBUG=1 prints the loss.
TRAIN_STEPS: dict[str, int] = {}


# ---------------------------------------------------------------- helpers

@contextmanager
def _seeded(seed: int = SEED):
    """Fixed seed inside, the caller's RNG state restored afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _spm_model(corpus: list[str], vocab_size: int, **options) -> bytes:
    """A sentencepiece model trained in memory; its serialized proto."""
    import sentencepiece as spm

    out = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus), model_writer=out, vocab_size=vocab_size, hard_vocab_limit=False,
        character_coverage=1.0, num_threads=1, minloglevel=2, **options)
    return out.getvalue()


def _labels(tok, targets: list[str]) -> torch.Tensor:
    labels = tok(text_target=targets, padding=True, return_tensors="pt")["input_ids"]
    labels[labels == tok.pad_token_id] = -100
    return labels


@contextmanager
def _quiet_generate():
    """Mutes transformers' "Both `max_new_tokens` and `max_length` seem to have been set" (the saved generation
    configs carry the real models' max_length, e.g. 512 for Marian) while the builders check their models."""
    from transformers.utils import logging

    before = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        yield
    finally:
        logging.set_verbosity(before)


def _generate(model, tok, texts: list[str], **kwargs) -> torch.Tensor:
    batch = tok(texts, padding=True, return_tensors="pt")
    with torch.no_grad(), _quiet_generate():
        return model.generate(**batch, **{"max_new_tokens": 48, **GREEDY, **kwargs})


def _greedy(model, tok, texts: list[str], **kwargs) -> list[str]:
    return tok.batch_decode(_generate(model, tok, texts, **kwargs), skip_special_tokens=True)


def _train(name, model, tok, sources: list[str], targets: list[str], done, *, lr=3e-3, max_steps=600, every=50,
           loss_below: float | None = 0.05):
    """Full-batch Adam with teacher forcing until `done()` holds (checked every `every` steps once the loss is under
    `loss_below`); asserts that it holds in the end."""
    batch = tok(sources, padding=True, return_tensors="pt")
    labels = _labels(tok, targets)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for step in range(1, max_steps + 1):
        model.train()
        loss = model(**batch, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if os.environ.get("TINY_FAMILIES_DEBUG") and step % 25 == 0:
            print(name, step, round(loss.item(), 4), flush=True)
        if step % every == 0 and (loss_below is None or loss.item() < loss_below):
            model.eval()
            if done():
                TRAIN_STEPS[name] = step
                return step
    model.eval()
    TRAIN_STEPS[name] = max_steps
    assert done(), f"{type(model).__name__} did not learn its task in {max_steps} steps (loss {loss.item():.4f})"
    return max_steps


def _save(model, tok, folder: Path) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    assert (folder / "model.safetensors").is_file() and not list(folder.glob("*.bin")), sorted(folder.iterdir())
    return folder


# ---------------------------------------------------------------- 1. Marian

def marian_tokenizer(folder: Path):
    """A MarianTokenizer like opus-mt-en-fr's, its files written into `folder`: one sentencepiece unigram model as
    both source.spm and target.spm, a shared vocab.json with "</s>" 0, "<unk>" 1, the pieces, and "<pad>" last;
    source_lang "en", target_lang "fr". (Without sacremoses installed MarianTokenizer warns "Recommended: pip install
    sacremoses." and skips punctuation normalisation; the warning is silenced here, not on reload.)"""
    import sentencepiece as spm
    from transformers import MarianTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    proto = _spm_model(CORPUS, 400, model_type="unigram", unk_id=0, eos_id=1, bos_id=-1, pad_id=-1)
    sp = spm.SentencePieceProcessor(model_proto=proto)
    vocab = {"</s>": 0, "<unk>": 1}
    for i in range(sp.get_piece_size()):
        if not (sp.is_control(i) or sp.is_unknown(i)):
            vocab.setdefault(sp.id_to_piece(i), len(vocab))
    vocab["<pad>"] = len(vocab)
    (folder / "source.spm").write_bytes(proto)
    (folder / "target.spm").write_bytes(proto)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False, indent=2), encoding="utf-8")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Recommended: pip install sacremoses")
        return MarianTokenizer(str(folder / "source.spm"), str(folder / "target.spm"), str(folder / "vocab.json"),
                               **MARIAN_PAIR)


def build_marian_copy(folder: Path) -> Path:
    """A 2+2-layer MarianMTModel (d_model 64) trained to copy English sentences; generation config as opus-mt's."""
    from transformers import GenerationConfig, MarianConfig, MarianMTModel

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tok = marian_tokenizer(folder)
    pad, eos = tok.pad_token_id, tok.eos_token_id
    config = MarianConfig(
        vocab_size=len(tok), max_position_embeddings=512, **_DIMS, activation_function="swish", dropout=0.0,
        attention_dropout=0.0, activation_dropout=0.0,
        scale_embedding=True, static_position_embeddings=True, share_encoder_decoder_embeddings=True,
        pad_token_id=pad, eos_token_id=eos, bos_token_id=eos, decoder_start_token_id=pad, forced_eos_token_id=eos)
    with _seeded():
        model = MarianMTModel(config)
        # Helsinki-NLP/opus-mt-en-fr's generation_config.json, with this vocabulary's ids.
        model.generation_config = GenerationConfig(
            bad_words_ids=[[pad]], bos_token_id=eos, decoder_start_token_id=pad, eos_token_id=eos,
            forced_eos_token_id=eos, max_length=512, num_beams=4, pad_token_id=pad, renormalize_logits=True)

        def copies() -> bool:
            out = _greedy(model, tok, SENTENCES)
            share = sum(o == s for o, s in zip(out, SENTENCES)) / len(SENTENCES)
            return share >= COPY_MIN_FRACTION and all(_greedy(model, tok, [s]) == [s] for s in COPY_SENTENCES)

        _train("marian", model, tok, SENTENCES, SENTENCES, copies)
    return _save(model, tok, folder)


# ---------------------------------------------------------------- 2. T5

def t5_tokenizer():
    """A T5Tokenizer (a tokenizers Unigram: what AutoTokenizer gives for T5 in transformers 5) over a sentencepiece
    unigram model trained here with T5's ids: "<pad>" 0, "</s>" 1, "<unk>" 2, the pieces with their scores, then
    T5_EXTRA_IDS "<extra_id_N>" sentinels, highest N first; "</s>" is appended to every encoded text. (In transformers
    5.23 `tok.additional_special_tokens` is gone (AttributeError; the sentinels are `tok.extra_special_tokens`), so
    T5Tokenizer.get_sentinel_tokens() raises.)"""
    import sentencepiece as spm
    from transformers import T5Tokenizer

    text = CORPUS + [p["prefix"] for p in T5_TASK_PARAMS.values()]
    proto = _spm_model(text, 400, model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
                       normalization_rule_name="identity")
    sp = spm.SentencePieceProcessor(model_proto=proto)
    vocab = [(sp.id_to_piece(i), sp.get_score(i)) for i in range(sp.get_piece_size())]
    assert [p for p, _ in vocab[:3]] == ["<pad>", "</s>", "<unk>"], vocab[:3]
    # Sentinels last and in reverse, as in t5-small ("<extra_id_0>" is the highest id).
    vocab += [(f"<extra_id_{i}>", 0.0) for i in reversed(range(T5_EXTRA_IDS))]
    return T5Tokenizer(vocab=vocab, extra_ids=T5_EXTRA_IDS, model_max_length=512)


def build_t5_prefix(folder: Path) -> Path:
    """A 2+2-layer T5 (d_model 64) trained so that "summarize: A B" -> A and "A B" -> B (T5_PAIRS)."""
    from transformers import GenerationConfig, T5Config, T5ForConditionalGeneration

    tok = t5_tokenizer()
    config = T5Config(
        vocab_size=len(tok), d_model=64, d_kv=16, d_ff=128, num_layers=2, num_decoder_layers=2, num_heads=4,
        relative_attention_num_buckets=32, relative_attention_max_distance=128, dropout_rate=0.0,
        feed_forward_proj="relu", tie_word_embeddings=True, pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id, decoder_start_token_id=tok.pad_token_id, task_specific_params=T5_TASK_PARAMS)
    sources = [f"{T5_PREFIX}{a} {b}" for a, b in _T5_TRAIN_PAIRS] + [f"{a} {b}" for a, b in _T5_TRAIN_PAIRS]
    targets = [a for a, _ in _T5_TRAIN_PAIRS] + [b for _, b in _T5_TRAIN_PAIRS]
    with _seeded():
        model = T5ForConditionalGeneration(config)
        # t5-small's generation_config.json.
        model.generation_config = GenerationConfig(decoder_start_token_id=tok.pad_token_id,
                                                   eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)

        def learned() -> bool:
            if _greedy(model, tok, sources) != targets:
                return False
            return all(_greedy(model, tok, [f"{T5_PREFIX}{a} {b}"]) == [a] and _greedy(model, tok, [f"{a} {b}"]) == [b]
                       for a, b in T5_PAIRS)

        _train("t5", model, tok, sources, targets, learned)
    return _save(model, tok, folder)


# ---------------------------------------------------------------- 3. BART

def bart_tokenizer():
    """BART's byte-level BPE (RobertaTokenizer: transformers 5's BartTokenizer) trained here: "<s>" 0, "<pad>" 1,
    "</s>" 2, "<unk>" 3, the merges' tokens, "<mask>" last (as in facebook/bart-base)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import RobertaTokenizer

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.train_from_iterator(CORPUS, trainers.BpeTrainer(
        vocab_size=600, special_tokens=["<s>", "<pad>", "</s>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    model = json.loads(bpe.to_str())["model"]
    vocab = dict(model["vocab"])
    vocab["<mask>"] = len(vocab)
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    return RobertaTokenizer(vocab=vocab, merges=merges, model_max_length=1024)


def build_bart(folder: Path) -> Path:
    """A 2+2-layer BART (d_model 64) trained to return the first sentence of a two-sentence input (BART_PAIRS)."""
    from transformers import BartConfig, BartForConditionalGeneration, GenerationConfig

    tok = bart_tokenizer()
    bos, pad, eos = tok.bos_token_id, tok.pad_token_id, tok.eos_token_id
    assert (bos, pad, eos) == (0, 1, 2)
    config = BartConfig(
        vocab_size=len(tok), max_position_embeddings=1024, **_DIMS,
        dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, pad_token_id=pad, bos_token_id=bos,
        eos_token_id=eos, decoder_start_token_id=eos, forced_bos_token_id=bos, forced_eos_token_id=eos)
    # facebook/bart-base's generation settings (its config.json / generation_config.json).
    generation = GenerationConfig(bos_token_id=bos, decoder_start_token_id=eos, early_stopping=True, eos_token_id=eos,
                                  forced_bos_token_id=bos, forced_eos_token_id=eos, no_repeat_ngram_size=3,
                                  num_beams=4, pad_token_id=pad)
    sources = [f"{a} {b}" for a, b in _BART_TRAIN_PAIRS]
    targets = [a for a, _ in _BART_TRAIN_PAIRS]
    with _seeded():
        model = BartForConditionalGeneration(config)
        model.generation_config = generation

        def learned() -> bool:
            return (_greedy(model, tok, sources) == targets
                    and all(_greedy(model, tok, [f"{a} {b}"]) == [a] for a, b in BART_PAIRS))

        _train("bart", model, tok, sources, targets, learned)
    return _save(model, tok, folder)


# ---------------------------------------------------------------- 4. NLLB

def nllb_tokenizer():
    """An NllbTokenizer (tokenizers BPE with a Metaspace pre-tokenizer, as in transformers 5) from a BPE trained
    here. Ids as in facebook/nllb-200-*: "<s>" 0, "<pad>" 1, "</s>" 2, "<unk>" 3, the pieces, then the NLLB_LANGS
    codes, then "<mask>" last; the codes are special tokens. Encoded source (non-legacy layout, the default):
    [src_lang code] + pieces + ["</s>"]; src_lang defaults to "eng_Latn" and `tok.src_lang = ...` switches it."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import NllbTokenizer

    bpe = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=True))
    bpe.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    bpe.train_from_iterator(CORPUS, trainers.BpeTrainer(
        vocab_size=600, special_tokens=["<s>", "<pad>", "</s>", "<unk>"], show_progress=False))
    model = json.loads(bpe.to_str())["model"]
    vocab = dict(model["vocab"])
    for code in NLLB_LANGS + ["<mask>"]:
        vocab[code] = len(vocab)
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    return NllbTokenizer(vocab=vocab, merges=merges, additional_special_tokens=list(NLLB_LANGS),
                         src_lang="eng_Latn", tgt_lang="fra_Latn", model_max_length=1024)


def _varied(model, tok, forced: int, texts: list[str]) -> bool:
    """Greedy output starts with the forced code and has >= 4 distinct ordinary tokens per row, rows differing."""
    specials = set(tok.all_special_ids)
    ids = _generate(model, tok, texts, forced_bos_token_id=forced, max_new_tokens=16)
    rows = [tuple(i for i in row[2:] if i not in specials) for row in ids.tolist()]
    return bool((ids[:, 1] == forced).all()) and all(len(set(r)) >= 4 for r in rows) and len(set(rows)) == len(rows)


def build_nllb(folder: Path) -> Path:
    """A 2+2-layer M2M100ForConditionalGeneration (NLLB's architecture, d_model 64) with the NLLB tokenizer above.
    Random weights loop on one token under greedy, so it gets a few dozen copy steps (source -> same text after the
    "fra_Latn" code): enough for varied output after any forced language code, not a faithful copy."""
    from transformers import GenerationConfig, M2M100Config, M2M100ForConditionalGeneration

    tok = nllb_tokenizer()
    bos, pad, eos = tok.bos_token_id, tok.pad_token_id, tok.eos_token_id
    assert (bos, pad, eos) == (0, 1, 2)
    config = M2M100Config(
        vocab_size=len(tok), max_position_embeddings=1024, **_DIMS,
        scale_embedding=True, dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
        pad_token_id=pad, bos_token_id=bos, eos_token_id=eos, decoder_start_token_id=eos)
    codes = [tok.convert_tokens_to_ids(lang) for lang in ("fra_Latn", "deu_Latn")]
    with _seeded():
        model = M2M100ForConditionalGeneration(config)
        # facebook/nllb-200-distilled-600M's generation_config.json.
        model.generation_config = GenerationConfig(bos_token_id=bos, decoder_start_token_id=eos, eos_token_id=eos,
                                                   max_length=200, pad_token_id=pad)
        _train("nllb", model, tok, SENTENCES, SENTENCES,
               lambda: all(_varied(model, tok, code, SENTENCES[:4]) for code in codes), every=20, loss_below=None)
    return _save(model, tok, folder)


# ---------------------------------------------------------------- 5. classifiers

def bert_tokenizer():
    """A lower-casing BertTokenizer (WordPiece). Its vocabulary comes from a sentencepiece BPE model trained here on
    the BERT-normalised, BERT-pre-tokenised corpus: a word-initial piece "▁ab" becomes "ab", any other "ab" becomes
    "##ab", and every character is there in both forms. (tokenizers' own WordPiece trainer gives a different
    vocabulary on every run; sentencepiece with one thread does not.)"""
    import sentencepiece as spm
    from tokenizers import normalizers, pre_tokenizers
    from transformers import BertTokenizer

    normalizer, splitter = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
    lines = [" ".join(w for w, _ in splitter.pre_tokenize_str(normalizer.normalize_str(s))) for s in CORPUS]
    sp = spm.SentencePieceProcessor(model_proto=_spm_model(lines, 400, model_type="bpe", bos_id=-1, eos_id=-1))
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])}
    chars = sorted({c for line in lines for c in line if not c.isspace()} | set(string.ascii_lowercase + string.digits))
    pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size()) if not (sp.is_control(i) or sp.is_unknown(i))]
    words = [p[1:] if p.startswith("▁") else "##" + p for p in pieces if p != "▁"]
    for token in chars + ["##" + c for c in chars] + words:
        vocab.setdefault(token, len(vocab))
    return BertTokenizer(vocab=vocab, do_lower_case=True, model_max_length=128)


def _classifier(folder: Path, labels: dict[int, str], seed: int, **extra) -> Path:
    """A random 2-layer BERT sequence classifier (hidden 32). Checked: every label is the top logit for at least one of
    SENTENCES, so tests see all of them."""
    from transformers import BertConfig, BertForSequenceClassification

    tok = bert_tokenizer()
    # A much wider init than BERT's 0.02: with 0.02 every text gets nearly the same logits.
    config = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, initializer_range=0.5,
                        num_labels=len(labels), id2label=dict(labels), label2id={v: k for k, v in labels.items()},
                        pad_token_id=tok.pad_token_id, **extra)
    with _seeded(seed):
        model = BertForSequenceClassification(config).eval()
    with torch.no_grad():
        top = model(**tok(SENTENCES, padding=True, return_tensors="pt")).logits.argmax(-1)
    assert set(top.tolist()) == set(labels), top
    return _save(model, tok, folder)


def build_multilabel_classifier(folder: Path) -> Path:
    """A random BERT multi-label classifier (problem_type "multi_label_classification": a sigmoid per label),
    labels joy / anger / surprise."""
    return _classifier(folder, MULTILABEL_LABELS, SEED, problem_type="multi_label_classification")


def build_ready_classifier(folder: Path) -> Path:
    """A random BERT single-label classifier (no problem_type) with upper-case labels NEG / NEU / POS; other
    weights than the multi-label one (seed SEED + 1)."""
    return _classifier(folder, READY_LABELS, SEED + 1)


# ---------------------------------------------------------------- a tiny decoder LM (chat or base)

LLAMA_SPECIALS = ["<s>", "</s>", "<pad>", "<unk>"]
CHAT_SPECIALS = ["<|system|>", "<|user|>", "<|assistant|>"]
CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>{% endif %}")


def build_tiny_llama(folder: Path, chat: bool) -> Path:
    """A 2-layer Llama, untrained; its byte-level BPE tokenizer is trained on SENTENCES and adds BOS. ``chat``: it
    has a chat template (a chat model), else none (a base model)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = LLAMA_SPECIALS + (CHAT_SPECIALS if chat else [])
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(SENTENCES, trainers.BpeTrainer(
        vocab_size=400, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    bpe.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", bpe.token_to_id("<s>"))])
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                  unk_token="<unk>", additional_special_tokens=CHAT_SPECIALS if chat else None)
    if chat:
        tok.chat_template = CHAT_TEMPLATE
    config = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    return folder
