"""Summarisation job: an instruct model prompted for a summary of a chosen length; long input is chunked."""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator

from lmdemo.engine.streaming import GenerationParams, neutralise_special_tokens, stream
from lmdemo.errors import InputError
from lmdemo.jobs.base import pick_model, require_text, run_to_end, split_sentences
from lmdemo.models.loading import LoadedModel, load
from lmdemo.models.registry import DEFAULT_CHAT_MODEL

# SmolLM2 holds 8k tokens, but its summaries get vague well before that; chunks of this size
# keep each partial summary faithful and leave room for the prompt and the answer.
CHUNK_TOKENS = 1500
# Beyond 8 parts (~9,000 words) a 2-core CPU takes minutes; longer input is refused, not queued for an hour.
MAX_INPUT_TOKENS = 8 * CHUNK_TOKENS


@dataclass
class SummaryRequest:
    text: str
    length: int = field(default=2, metadata={"help": "summary length in `unit`s (1-10 sentences, 5-300 words)"})
    unit: str = field(default="sentences", metadata={"help": "sentences or words"})
    model: str | None = field(default=None, metadata={"help": "built-in, folder, Hub id or adapter name"})
    adapter: str | None = None
    quantize: str | None = None

    def __post_init__(self) -> None:
        if self.unit not in ("sentences", "words"):
            raise InputError(f"`unit` must be sentences or words; got {self.unit!r}")
        try:
            self.length = int(self.length)
        except (TypeError, ValueError):
            raise InputError(f"`length` must be a whole number; got {self.length!r}") from None
        lo, hi = (1, 10) if self.unit == "sentences" else (5, 300)
        if not lo <= self.length <= hi:
            raise InputError(f"`length` in {self.unit} must be between {lo} and {hi}; got {self.length}")
        self.model, self.adapter = pick_model(self.model, self.adapter, DEFAULT_CHAT_MODEL)


@dataclass
class SummaryResult:
    summary: str
    input_words: int
    summary_words: int
    input_tokens: int
    chunks: int = 1
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _instruction(req: SummaryRequest) -> str:
    if req.unit == "sentences":
        n = "one sentence" if req.length == 1 else f"{req.length} sentences"
    else:
        n = f"at most {req.length} words"
    return f"Summarize the following text in {n}. Reply with the summary only."


def _max_new_tokens(req: SummaryRequest) -> int:
    # ~1.4 tokens per English word, ~30 words per sentence, plus slack for the model to finish.
    return int(req.length * 1.6) + 16 if req.unit == "words" else req.length * 45 + 16


def _prompt(lm: LoadedModel, text: str, req: SummaryRequest) -> dict:
    tok = lm.tokenizer
    body = neutralise_special_tokens(text, tok)
    messages = [{"role": "user", "content": f"{_instruction(req)}\n\n{body}"}]
    ids = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    return {"input_ids": ids["input_ids"], "attention_mask": ids["attention_mask"]}


def _chunks(lm: LoadedModel, text: str) -> list[str]:
    """Split on paragraph, then sentence, boundaries into pieces of at most CHUNK_TOKENS tokens."""
    tok = lm.tokenizer
    pieces = [s for para in text.split("\n\n") for s in (split_sentences(para) or [para])]
    chunks, current, size = [], [], 0
    for piece in pieces:
        ids = tok(piece, add_special_tokens=False).input_ids
        n = len(ids)
        if n > CHUNK_TOKENS:  # one giant "sentence": cut it by tokens
            parts = [tok.decode(ids[i:i + CHUNK_TOKENS]) for i in range(0, len(ids), CHUNK_TOKENS)]
        else:
            parts = [piece]
        for part in parts:
            m = min(n, CHUNK_TOKENS)
            if current and size + m > CHUNK_TOKENS:
                chunks.append(" ".join(current))
                current, size = [], 0
            current.append(part)
            size += m
    if current:
        chunks.append(" ".join(current))
    return chunks


def summarize_stream(req: SummaryRequest, stop: threading.Event | None = None) -> Iterator[SummaryResult]:
    """Yield the growing summary; text longer than one chunk is summarised piece by piece, then combined."""
    text = require_text(req.text, "text to summarise").strip()
    lm = load(req.model, adapter=req.adapter, quantize=req.quantize)
    input_tokens = len(lm.tokenizer(text, add_special_tokens=False).input_ids)
    if input_tokens > MAX_INPUT_TOKENS:
        raise InputError(f"The text is {input_tokens} tokens; the summariser takes at most {MAX_INPUT_TOKENS} "
                         f"(about {MAX_INPUT_TOKENS * 3 // 4} words): summarise it in parts.")
    result = SummaryResult("", len(text.split()), 0, input_tokens)
    chunks = _chunks(lm, text) if input_tokens > CHUNK_TOKENS else [text]
    if len(chunks) > 1:
        result.chunks = len(chunks)
        result.notes.append(f"The text is {input_tokens} tokens: summarised in {len(chunks)} parts, then combined.")
        partial_req = SummaryRequest("-", length=2, unit="sentences", model=req.model, adapter=req.adapter)
        partials = []
        for i, chunk in enumerate(chunks, 1):
            out, _ = run_to_end(stream(lm, _prompt(lm, chunk, partial_req), _params(partial_req), stop=stop))
            partials.append(out.strip())
            result.summary = f"(part {i}/{len(chunks)} summarised…)"
            yield result
            if stop is not None and stop.is_set():
                return
        text = "\n".join(partials)
    out = ""
    for out, _ in stream(lm, _prompt(lm, text, req), _params(req), stop=stop):
        result.summary = out.strip()
        result.summary_words = len(result.summary.split())
        yield result
    result.summary = fit_length(out.strip(), req)
    result.summary_words = len(result.summary.split())
    yield result


def _params(req: SummaryRequest) -> GenerationParams:
    # A repetition penalty pushes a 135M model off the source's facts (seen: invented figures); greedy without it.
    return GenerationParams(max_new_tokens=_max_new_tokens(req), temperature=0, repetition_penalty=1.0)


def fit_length(summary: str, req: SummaryRequest) -> str:
    """Hold the summary to the asked length: the first N sentences, or whole sentences within N words."""
    sentences = split_sentences(summary) or [summary]
    if req.unit == "sentences":
        return " ".join(sentences[: req.length])
    kept: list[str] = []
    for sentence in sentences:
        if len(" ".join(kept + [sentence]).split()) > req.length:
            break
        kept.append(sentence)
    if kept:
        return " ".join(kept)
    return " ".join(summary.split()[: req.length]).rstrip(",;:") + "…"


def summarize(req: SummaryRequest, stop: threading.Event | None = None) -> SummaryResult:
    """The final summary."""
    return run_to_end(summarize_stream(req, stop))


run, run_stream = summarize, summarize_stream  # the job shape every job module has
