"""Summarisation job: a summary of a chosen length from a summariser (BART, T5, Pegasus: seq2seq models) or a
language model (a chat model prompted through its template, a base model with a completion-style prompt);
long input is summarised in chunks, then the part summaries are combined."""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator

from lmdemo.engine import remote, seq2seq
from lmdemo.engine.streaming import GenerationParams, neutralise_special_tokens, stream
from lmdemo.errors import InputError
from lmdemo.jobs.base import pick_model, require_text, run_to_end, split_sentences, token_chunks
from lmdemo.models import families
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
        if families.is_remote(self.model):
            remote.check_options(self.model, self.adapter, self.quantize)
        else:
            self.model, self.adapter = pick_model(self.model, self.adapter, DEFAULT_CHAT_MODEL)


@dataclass
class SummaryResult:
    summary: str
    input_words: int
    summary_words: int
    input_tokens: int
    chunks: int = 1
    notes: list[str] = field(default_factory=list)
    tokens: int = 0  # generated for the summary (the final pass)
    tokens_per_second: float = 0.0
    backend: str = ""  # the decode path or remote engine that answered

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _length(req: SummaryRequest) -> str:
    if req.unit == "sentences":
        return "one sentence" if req.length == 1 else f"{req.length} sentences"
    return f"at most {req.length} words"


def _instruction(req: SummaryRequest) -> str:
    return f"Summarize the following text in {_length(req)}. Reply with the summary only."


def _max_new_tokens(req: SummaryRequest) -> int:
    # ~1.4 tokens per English word, ~30 words per sentence, plus slack for the model to finish.
    return int(req.length * 1.6) + 16 if req.unit == "words" else req.length * 45 + 16


class _Summariser:
    """How one model is asked for a summary: chat (the template), completion (a base LM continues "Summary:")
    or seq2seq (the text itself, T5's prefix applied, read by the encoder)."""

    def __init__(self, lm: LoadedModel, info: families.ModelInfo | None):
        self.lm = lm
        self.setup = seq2seq.summary_setup(info) if families.is_seq2seq(info) else None
        chat = bool(getattr(lm.tokenizer, "chat_template", None))
        self.style = "seq2seq" if self.setup else "chat" if chat else "completion"
        # An encoder reads at most its position table: its chunks are that long, not CHUNK_TOKENS.
        self.chunk_tokens = min(CHUNK_TOKENS, seq2seq.text_budget(lm, self.setup)) if self.setup else CHUNK_TOKENS

    def __call__(self, text: str, req: SummaryRequest, stop: threading.Event | None):
        """The stream of (summary so far, stats) for ``text``."""
        tok = self.lm.tokenizer
        params = _params(req)
        if self.setup is not None:
            return stream(self.lm, seq2seq.encode(self.lm, text, self.setup), params, stop=stop,
                          extra=self.setup.generate_kwargs())
        body = neutralise_special_tokens(text, tok)
        if self.style == "completion":  # the blank line a base model starts next with ends the summary
            prompt = f"Text: {body}\n\nSummary of the text above in {_length(req)}:"
            return stream(self.lm, dict(tok(prompt, return_tensors="pt")), params, stop=stop,
                          stop_strings=["\n\n", "\nText:"])
        messages = [{"role": "user", "content": f"{_instruction(req)}\n\n{body}"}]
        ids = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        return stream(self.lm, {"input_ids": ids["input_ids"], "attention_mask": ids["attention_mask"]}, params,
                      stop=stop)


class _RemoteSummariser:
    """A remote engine asked as a chat model, with the local chat prompt; its tokenizer is not here, so text is
    measured and cut by remote.APPROX_TOKENIZER (docs/remote.md)."""

    setup = None
    chunk_tokens = CHUNK_TOKENS

    def __init__(self, model: str):
        self.model = model

    def __call__(self, text: str, req: SummaryRequest, stop: threading.Event | None):
        messages = [{"role": "user", "content": f"{_instruction(req)}\n\n{text}"}]
        return remote.chat_stream(self.model, messages, _params(req), stop=stop)


def summarize_stream(req: SummaryRequest, stop: threading.Event | None = None) -> Iterator[SummaryResult]:
    """Yield the growing summary; text longer than one chunk is summarised piece by piece, then combined."""
    text = require_text(req.text, "text to summarise").strip()
    info = families.require(req.model, "summarise")
    if families.is_remote(req.model):
        summarise, tokenizer = _RemoteSummariser(req.model), remote.APPROX_TOKENIZER
    else:
        lm = load(req.model, head="seq2seq-lm" if families.is_seq2seq(info) else "causal-lm", adapter=req.adapter,
                  quantize=req.quantize)
        summarise, tokenizer = _Summariser(lm, info), lm.tokenizer
    input_tokens = len(tokenizer(text, add_special_tokens=False).input_ids)
    if input_tokens > MAX_INPUT_TOKENS:
        raise InputError(f"The text is {input_tokens} tokens; the summariser takes at most {MAX_INPUT_TOKENS} "
                         f"(about {MAX_INPUT_TOKENS * 3 // 4} words): summarise it in parts.")
    result = SummaryResult("", len(text.split()), 0, input_tokens)
    size = summarise.chunk_tokens
    chunks = token_chunks(tokenizer, text, size) if input_tokens > size else [text]
    if len(chunks) > 1:
        result.chunks = len(chunks)
        result.notes.append(f"The text is {input_tokens} tokens: summarised in {len(chunks)} parts, then combined.")
        partial_req = SummaryRequest("-", length=2, unit="sentences", model=req.model, adapter=req.adapter)
        partials = []
        for i, chunk in enumerate(chunks, 1):
            out, _ = run_to_end(summarise(chunk, partial_req, stop))
            partials.append(out.strip())
            result.summary = f"(part {i}/{len(chunks)} summarised…)"
            yield result
            if stop is not None and stop.is_set():
                return
        text = "\n".join(partials)
        if summarise.setup is not None:  # the combining pass must fit the encoder too
            text = token_chunks(tokenizer, text, size)[0]
    out = ""
    for out, stats in summarise(text, req, stop):
        result.summary = out.strip()
        result.summary_words = len(result.summary.split())
        result.tokens, result.backend = stats.tokens, stats.backend
        result.tokens_per_second = round(stats.tokens_per_second, 2)
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
