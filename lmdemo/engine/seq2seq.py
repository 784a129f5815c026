"""Encoder-decoder models as their families expect them: task prefixes, language pairs and codes, the encoder limit.

* Marian (opus-mt-SRC-TGT): one language pair, read from the tokenizer (``source_lang``/``target_lang``) or the
  model's name; multi-target models take a ``>>fr<<`` token before the source.
* T5: the task prefix from ``config.task_specific_params`` ("summarize: ", "translate English to French: ").
* mBART-50, NLLB, M2M100: language-code tokens; the source code through the tokenizer's ``src_lang``, the target
  as the decoder's forced first token.

Generation itself is :func:`lmdemo.engine.streaming.stream`, the same as for decoder models.
"""

from __future__ import annotations

import re
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from lmdemo.data.languages import ISO3, LANGUAGES
from lmdemo.errors import InputError
from lmdemo.models.families import ModelInfo
from lmdemo.models.loading import LoadedModel

_TO_ISO2 = {three: two for two, threes in ISO3.items() for three in threes}
_NLLB = re.compile(r"^([a-z]{3})_([A-Z][a-z]{3})$")  # eng_Latn
_MBART = re.compile(r"^([a-z]{2})_([A-Z]{2})$")  # en_XX, zh_CN
_M2M = re.compile(r"^__([a-z]{2,3})__$")  # __en__
_MARIAN_TARGET = re.compile(r"^>>([a-z]{2,3})(?:_[A-Za-z]+)?<<$")  # >>fra<<, >>zho_Hans<<
_OPUS_NAME = re.compile(r"opus-mt-(?:tc-big-)?([a-z]{2,3})-([a-z]{2,3})(?:$|[^a-z])")
# src_lang is tokenizer state: requests sharing a cached tokenizer set it one at a time.
_TOKENIZE_LOCK = threading.Lock()
# Tokens a source needs beyond its text: BOS/EOS, a language code.
_SPECIALS = 4


@dataclass
class Seq2SeqSetup:
    """How one model reads a source and starts its answer."""

    prefix: str = ""  # T5 task prefix or Marian ">>fr<<"
    src_lang: str | None = None  # value for tokenizer.src_lang (mBART/NLLB/M2M100)
    tgt_lang: str | None = None  # value for tokenizer.tgt_lang: training labels start with it
    forced_bos: int | None = None  # the target language's token, first in the decoder
    notes: list[str] = field(default_factory=list)

    def generate_kwargs(self) -> dict[str, Any]:
        return {"forced_bos_token_id": self.forced_bos} if self.forced_bos is not None else {}


def iso2(code: str | None) -> str | None:
    """'fra', 'fra_Latn', 'fr_XX', '__fr__', 'FR' -> 'fr'; None when not one of the languages known here."""
    if not code:
        return None
    code = str(code).strip().strip("_").replace("-", "_")
    base = code.split("_")[0].lower()
    if base in ISO3:
        return base
    return _TO_ISO2.get(base)


def encoder_limit(lm: LoadedModel) -> int:
    """Tokens the encoder reads at most (its position table, or the tokenizer's declared length; T5: 512)."""
    limits = [getattr(lm.model.config, "max_position_embeddings", None), getattr(lm.tokenizer, "model_max_length", None)]
    limits = [int(x) for x in limits if isinstance(x, (int, float)) and 0 < x < 100_000]
    return min(limits) if limits else 512


def language_codes(tokenizer) -> dict[str, str]:
    """ISO 639-1 -> the tokenizer's language-code token, for mBART/NLLB/M2M100-style tokenizers (else empty)."""
    tokens = list(getattr(tokenizer, "additional_special_tokens", None) or [])
    tokens += [t for t in getattr(tokenizer, "added_tokens_encoder", {}) if t not in tokens]
    found: dict[str, str] = {}
    for token in tokens:
        for pattern in (_NLLB, _MBART, _M2M):
            match = pattern.match(token)
            if not match:
                continue
            two = iso2(match.group(1))
            # Chinese in Simplified script first (zho_Hans before zho_Hant).
            if two and (two not in found or token.endswith("_Hans")):
                found[two] = token
    return found


def _marian_targets(tokenizer) -> dict[str, str]:
    """A multi-target Marian model's '>>xx<<' tokens by ISO 639-1 code."""
    vocab = tokenizer.get_vocab() if hasattr(tokenizer, "get_vocab") else {}
    out: dict[str, str] = {}
    for token in vocab:
        match = _MARIAN_TARGET.match(token)
        if match and iso2(match.group(1)) and iso2(match.group(1)) not in out:
            out[iso2(match.group(1))] = token
    return out


def marian_pair(lm: LoadedModel, name: str) -> tuple[str | None, str | None]:
    """(source, target) of a Marian model: its tokenizer's source_lang/target_lang, else its name's opus-mt-SRC-TGT."""
    tok = lm.tokenizer
    source, target = iso2(getattr(tok, "source_lang", None)), iso2(getattr(tok, "target_lang", None))
    if source and target:
        return source, target
    for text in (name, str(getattr(lm.model.config, "_name_or_path", "") or "")):
        match = _OPUS_NAME.search(text.lower())
        if match:
            return iso2(match.group(1)), iso2(match.group(2))
    return source, target


def _language(code: str) -> str:
    return LANGUAGES.get(code, code)


def translation_setup(lm: LoadedModel, info: ModelInfo, name: str, source: str, target: str) -> Seq2SeqSetup:
    """How ``lm`` translates source -> target, or InputError naming what it can do instead."""
    pair = f"{_language(source)} → {_language(target)}"
    if info.model_type == "marian":
        src, tgt = marian_pair(lm, name)
        targets = _marian_targets(lm.tokenizer)
        if src and src != source:
            raise InputError(f"Model {name!r} translates from {_language(src)} only; it cannot translate {pair}. "
                             f"Pick {_language(src)} as the source, or a model for that pair.")
        if targets:
            if target not in targets:
                known = ", ".join(_language(c) for c in targets)
                raise InputError(f"Model {name!r} translates into {known}; not into {_language(target)}.")
            return Seq2SeqSetup(prefix=targets[target] + " ")
        if tgt and tgt != target:
            raise InputError(f"Model {name!r} translates {_language(src or source)} → {_language(tgt)} only; it "
                             f"cannot translate {pair}. Pick that pair, or a model for {pair}.")
        notes = [] if src and tgt else [f"Model {name!r} does not name its language pair; it translates the pair it "
                                        f"was trained on."]
        return Seq2SeqSetup(notes=notes)
    tasks = {k: v for k, v in info.task_params.items() if k.startswith("translation_")}
    if tasks:  # T5: one prefix per pair it was trained on
        key = f"translation_{source}_to_{target}"
        if key not in tasks:
            known = ", ".join(f"{_language(a)} → {_language(b)}" for a, b in
                              (k.removeprefix("translation_").split("_to_", 1) for k in tasks if "_to_" in k))
            raise InputError(f"Model {name!r} knows these translations: {known}; not {pair}.")
        return Seq2SeqSetup(prefix=str(tasks[key].get("prefix") or ""))
    codes = language_codes(lm.tokenizer)
    if codes:
        missing = [c for c in (source, target) if c not in codes]
        if missing:
            raise InputError(f"Model {name!r} has no language code for {', '.join(map(_language, missing))}; of the "
                             f"languages here it knows {', '.join(_language(c) for c in codes) or 'none'}.")
        # M2M100's tokenizer takes the bare code ("fr" for "__fr__") as src_lang/tgt_lang.
        bare = lambda token: _M2M.match(token).group(1) if _M2M.match(token) else token  # noqa: E731
        return Seq2SeqSetup(src_lang=bare(codes[source]), tgt_lang=bare(codes[target]),
                            forced_bos=lm.tokenizer.convert_tokens_to_ids(codes[target]))
    return Seq2SeqSetup(notes=[f"Model {name!r} names no languages; it translates the way it was trained."])


def summary_setup(info: ModelInfo) -> Seq2SeqSetup:
    """T5's "summarize: " (from its config); nothing for BART/Pegasus, which summarise their whole input."""
    return Seq2SeqSetup(prefix=str((info.task_params.get("summarization") or {}).get("prefix") or ""))


def encode(lm: LoadedModel, text: str, setup: Seq2SeqSetup, max_length: int | None = None) -> dict:
    """The encoder's input ids for ``text`` (a batch of one), prefix and source language applied."""
    # Callers chunk text to text_budget; truncation only guards the encoder's position table.
    kwargs = dict(return_tensors="pt", truncation=True, max_length=min(max_length or 10**9, encoder_limit(lm)))
    with _tokenizer_language(lm.tokenizer, "src_lang", setup.src_lang):
        return dict(lm.tokenizer(setup.prefix + text, **kwargs))


def encode_target(lm: LoadedModel, text: str, setup: Seq2SeqSetup, max_length: int) -> list[int]:
    """Training labels for ``text``: the target as the decoder should produce it (language code first, EOS last)."""
    with _tokenizer_language(lm.tokenizer, "tgt_lang", setup.tgt_lang):
        return list(lm.tokenizer(text_target=text, truncation=True, max_length=max_length)["input_ids"])


@contextmanager
def _tokenizer_language(tokenizer, attribute: str, value: str | None):
    """The tokenizer with its src_lang/tgt_lang set for one call (the tokenizer is shared: one caller at a time)."""
    if value is None:
        yield
        return
    with _TOKENIZE_LOCK:
        before = getattr(tokenizer, attribute, None)
        setattr(tokenizer, attribute, value)
        try:
            yield
        finally:
            setattr(tokenizer, attribute, before)


def text_budget(lm: LoadedModel, setup: Seq2SeqSetup) -> int:
    """Tokens of text one encoder call takes after the prefix and special tokens."""
    prefix = len(lm.tokenizer(setup.prefix, add_special_tokens=False).input_ids) if setup.prefix else 0
    return max(16, encoder_limit(lm) - prefix - _SPECIALS)
