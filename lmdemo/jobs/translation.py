"""Translation job, sentence by sentence: a translation model (Marian, T5, mBART, NLLB, M2M100) as its family
expects, or few-shot prompting of a language model (the default: a multilingual base model)."""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from importlib.resources import files
from typing import Any, Iterator

from lmdemo.data.languages import LANGUAGES, NO_SPACE
from lmdemo.engine import remote, seq2seq
from lmdemo.engine.streaming import GenerationParams, stream
from lmdemo.errors import InputError
from lmdemo.jobs.base import pick_model, require_text, run_to_end, split_sentences, token_chunks
from lmdemo.models import families
from lmdemo.models.loading import LoadedModel, load
from lmdemo.models.registry import DEFAULT_COMPLETION_MODEL

# Each sentence is one model call (~2 s here): a page is the most one request translates.
MAX_CHARS = 5000


@dataclass
class TranslationRequest:
    text: str
    source: str = field(default="en", metadata={"help": "source language: " + ", ".join(LANGUAGES)})
    target: str = field(default="fr", metadata={"help": "target language: " + ", ".join(LANGUAGES)})
    model: str | None = field(default=None, metadata={"help": "built-in, folder, Hub id or adapter name"})
    adapter: str | None = None
    quantize: str | None = None
    shots: int = 5  # chosen by chrF on the bundled eval set: see bench/README.md
    by_sentence: bool = True
    max_new_tokens: int = 256

    def __post_init__(self) -> None:
        for key in ("source", "target"):
            code = str(getattr(self, key)).strip().lower()
            if code not in LANGUAGES:
                raise InputError(f"`{key}` language {code!r} is not supported; choose one of {', '.join(LANGUAGES)}")
            setattr(self, key, code)
        if len(str(self.text or "")) > MAX_CHARS:
            raise InputError(f"The text is {len(self.text)} characters; one translation takes at most {MAX_CHARS}: "
                             "split it.")
        if self.source == self.target:
            raise InputError(f"Source and target language are both {LANGUAGES[self.source]}.")
        if not 0 <= int(self.shots) <= len(_examples()):
            raise InputError(f"`shots` must be between 0 and {len(_examples())}; got {self.shots!r}")
        if families.is_remote(self.model):
            remote.check_options(self.model, self.adapter, self.quantize)
        else:
            self.model, self.adapter = pick_model(self.model, self.adapter, DEFAULT_COMPLETION_MODEL)


@dataclass
class TranslationResult:
    text: str  # the source text
    translation: str
    source: str
    target: str
    sentences: int = 0  # sentences translated so far
    notes: list[str] = field(default_factory=list)
    tokens: int = 0  # generated so far, over every sentence
    tokens_per_second: float = 0.0
    backend: str = ""  # the decode path or remote engine that answered

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@lru_cache(maxsize=1)
def _examples() -> list[dict[str, str]]:
    return json.loads(files("lmdemo.data").joinpath("translation_shots.json").read_text(encoding="utf-8"))["examples"]


def build_prompt(text: str, source: str, target: str, shots: int) -> str:
    """Few-shot prompt: 'English: ...' / 'French: ...' pairs (where the examples have both), then the text."""
    src, tgt = LANGUAGES[source], LANGUAGES[target]
    examples = [ex for ex in _examples() if source in ex and target in ex][:shots]
    blocks = [f"{src}: {ex[source]}\n{tgt}: {ex[target]}" for ex in examples]
    blocks.append(f"{src}: {text.strip()}\n{tgt}:")
    return "\n\n".join(blocks)


def translate_stream(req: TranslationRequest, stop: threading.Event | None = None) -> Iterator[TranslationResult]:
    """Yield the translation so far; each sentence (or the whole text) is one greedy model call."""
    require_text(req.text, "text to translate")
    info = families.require(req.model, "translate")
    units = split_sentences(req.text) if req.by_sentence else [" ".join(req.text.split())]
    if families.is_remote(req.model):
        # The engine's tokenizer is not here: units are measured by remote.APPROX_TOKENIZER (docs/remote.md).
        answer, tokenizer, notes = _remote_answers(req, stop), remote.APPROX_TOKENIZER, []
    elif families.is_seq2seq(info):
        lm = load(req.model, head="seq2seq-lm", adapter=req.adapter, quantize=req.quantize)
        setup = seq2seq.translation_setup(lm, info, req.model, req.source, req.target)
        answer, tokenizer, notes = _local_answers(lm, _seq2seq_units(lm, setup), stop), lm.tokenizer, list(setup.notes)
        budget = seq2seq.text_budget(lm, setup)  # no unit may pass the encoder's limit
        units = [piece for unit in units for piece in token_chunks(lm.tokenizer, unit, budget)]
    else:
        lm = load(req.model, adapter=req.adapter, quantize=req.quantize)
        answer, tokenizer, notes = _local_answers(lm, _prompted_units(lm, req), stop), lm.tokenizer, []
    if not families.is_seq2seq(info) and req.shots and not any(req.source in ex and req.target in ex
                                                               for ex in _examples()):
        notes.append(f"No examples for {LANGUAGES[req.source]} → {LANGUAGES[req.target]}: the model is "
                     "prompted without examples.")
    params = GenerationParams(max_new_tokens=req.max_new_tokens, temperature=0, repetition_penalty=1.0)
    joiner = "" if req.target in NO_SPACE else " "
    done: list[str] = []
    spent = [0, 0.0, ""]  # tokens and seconds of the finished sentences, the back-end

    def result(pieces: list[str], stats=None) -> TranslationResult:
        tokens = spent[0] + (stats.tokens if stats else 0)
        seconds = spent[1] + (stats.seconds if stats else 0.0)
        return TranslationResult(req.text, joiner.join(pieces), req.source, req.target, len(done), notes, tokens,
                                 round(tokens / seconds, 2) if seconds > 0 else 0.0, spent[2])

    for unit in units:
        # A translation is rarely 3x its source in tokens; the cap ends a model that never stops.
        unit_tokens = len(tokenizer(unit, add_special_tokens=False).input_ids)
        params.max_new_tokens = min(req.max_new_tokens, 3 * unit_tokens + 20)
        piece, stats = "", None
        for piece, stats in answer(unit, params):
            spent[2] = stats.backend
            yield result(done + [piece.strip()], stats)
        done.append(piece.strip())
        if stats is not None:
            spent[0], spent[1] = spent[0] + stats.tokens, spent[1] + stats.seconds
        if stop is not None and stop.is_set():
            break
    yield result(done)


def _local_answers(lm: LoadedModel, prepare, stop: threading.Event | None):
    """A local model's answer stream for one unit, its inputs made by ``prepare``."""
    def answer(unit: str, params: GenerationParams):
        inputs, stop_strings, extra = prepare(unit)
        return stream(lm, inputs, params, stop=stop, stop_strings=stop_strings, extra=extra)
    return answer


def _remote_answers(req: TranslationRequest, stop: threading.Event | None):
    """A remote engine is a chat model: the same examples as chat turns (the source the user's, the translation
    the assistant's), the instruction before the first; its answer is its first line."""
    src, tgt = LANGUAGES[req.source], LANGUAGES[req.target]
    examples = [ex for ex in _examples() if req.source in ex and req.target in ex][:req.shots]
    instruction = f"Translate {src} text into {tgt}. Reply with the {tgt} translation only, on one line.\n\n"
    turns = [{"role": role, "content": ex[lang]} for ex in examples
             for role, lang in (("user", req.source), ("assistant", req.target))]

    def answer(unit: str, params: GenerationParams):
        messages = turns + [{"role": "user", "content": unit}]
        messages[0] = {"role": "user", "content": instruction + messages[0]["content"]}
        return remote.chat_stream(req.model, messages, params, stop=stop, stop_strings=["\n"])
    return answer


def _prompted_units(lm: LoadedModel, req: TranslationRequest):
    """A language model's unit: the few-shot prompt; each answer is one line, so the newline that would start
    the next example ends it."""
    def prepare(unit: str):
        prompt = build_prompt(unit, req.source, req.target, req.shots)
        return dict(lm.tokenizer(prompt, return_tensors="pt")), ["\n"], None
    return prepare


def _seq2seq_units(lm: LoadedModel, setup: seq2seq.Seq2SeqSetup):
    """A translation model's unit: the source as its family reads it, the target language forced first."""
    def prepare(unit: str):
        return seq2seq.encode(lm, unit, setup), None, setup.generate_kwargs()
    return prepare


def translate(req: TranslationRequest, stop: threading.Event | None = None) -> TranslationResult:
    """The whole translation."""
    return run_to_end(translate_stream(req, stop))


run, run_stream = translate, translate_stream  # the job shape every job module has
