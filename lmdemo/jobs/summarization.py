"""Summarisation job: a summary of a chosen length from a summariser (BART, T5, Pegasus: seq2seq models) or a
language model (a chat model prompted through its template, a base model with a completion-style prompt);
long input is summarised in chunks, then the part summaries are combined. The summary's numbers and names are
looked for in the text (lmdemo.jobs.factcheck); one the text does not state makes the job summarise again with a
stricter instruction, then trim what still carries it, and the result says which it did."""

from __future__ import annotations

import json
import re
import threading
from dataclasses import asdict, dataclass, field
from functools import cache
from importlib.resources import files
from typing import Any, Iterator, Literal

from lmdemo.engine import remote, seq2seq
from lmdemo.engine.streaming import GenerationParams, neutralise_special_tokens, stream
from lmdemo.errors import InputError
from lmdemo.jobs import factcheck
from lmdemo.jobs.base import pick_model, require_text, run_to_end, split_sentences, token_chunks
from lmdemo.models import families
from lmdemo.models.adapters import DEFAULT_PICKS
from lmdemo.models.loading import LoadedModel, load
from lmdemo.models.registry import DEFAULT_CHAT_MODEL, DEFAULT_COMPLETION_MODEL

# SmolLM2 holds 8k tokens, but its summaries get vague well before that; chunks of this size
# keep each partial summary faithful and leave room for the prompt and the answer.
CHUNK_TOKENS = 1500
# Beyond 8 parts (~9,000 words) a 2-core CPU takes minutes; longer input is refused, not queued for an hour.
MAX_INPUT_TOKENS = 8 * CHUNK_TOKENS
# "Here's a concise summary of the text in 2 sentences:" - SmolLM2's lead-in, which is not the summary (and its
# "2" is no fact of the text).
_PREAMBLE = re.compile(r"^(?:(?:sure|okay|certainly)\b[,!.]?\s*)?(?:here(?:'s| is| are)\b[^:\n]{0,100}:|"
                       r"(?:a |the )?(?:concise |brief |short )?summary(?: of [^:\n]{0,60})?:)\s*", re.IGNORECASE)
# What the fact check did: nothing to fix, summarised again, cut the sentence/clause with the fact, or fell back
# to the text's opening sentences (every sentence carried one); "unchecked" when stopped before it ran.
FactCheck = Literal["passed", "regenerated", "trimmed", "lead", "unchecked"]
# The default one-sentence summariser: Gemma 3 270M with a LoRA trained on written news briefs
# (bench/summary_lora.py --base gemma-3-270m). It always writes one sentence, so other lengths use SmolLM2.
DEFAULT_ADAPTER = str(files("lmdemo.data").joinpath("adapters", "news-summary-gemma"))


@cache
def _prompts() -> dict[str, Any]:
    return json.loads(files("lmdemo.data").joinpath("summary_prompts.json").read_text(encoding="utf-8"))


def prompt_names() -> list[str]:
    """The instructions a chat model can be given (lmdemo/data/summary_prompts.json)."""
    return list(_prompts()["prompts"])


@dataclass
class SummaryRequest:
    text: str
    # 1 sentence, 3 worked examples first: the best ROUGE-L on the dev half of the bundled news set
    # (bench/summary_prompts.py; table in bench/README.md)
    length: int = field(default=1, metadata={"help": "summary length in `unit`s (1-10 sentences, 5-300 words)"})
    unit: str = field(default="sentences", metadata={"help": "sentences or words"})
    model: str | None = field(default=None, metadata={"help": "built-in, folder, Hub id or adapter name; default: "
                                                             "the bundled news LoRA on Gemma 270M for 1 sentence, "
                                                             "SmolLM2 for other lengths"})
    adapter: str | None = None
    quantize: str | None = None
    prompt: str = field(default="shots-3", metadata={"help": "a chat model's instruction: a name in "
                                                           "lmdemo/data/summary_prompts.json"})

    def __post_init__(self) -> None:
        if self.prompt not in prompt_names():
            raise InputError(f"`prompt` must be one of {', '.join(prompt_names())}; got {self.prompt!r}")
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
        elif _is_default(self.model) and not self.adapter and (self.unit, self.length) == ("sentences", 1):
            self.model, self.adapter = DEFAULT_COMPLETION_MODEL, DEFAULT_ADAPTER
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
    fact_check: FactCheck = "unchecked"
    flagged: list[str] = field(default_factory=list)  # numbers/names of the first summary that the text lacks
    unsupported: list[str] = field(default_factory=list)  # those still in the final summary (none once fixed)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _is_default(model: str | None) -> bool:
    return (model or "").strip() in DEFAULT_PICKS


def _length(req: SummaryRequest) -> str:
    if req.unit == "sentences":
        return "one sentence" if req.length == 1 else f"{req.length} sentences"
    return f"at most {req.length} words"


def _messages(req: SummaryRequest, text: str, strict: bool = False) -> list[dict[str, str]]:
    """The chat: the request's instruction (or the strict one) with the text, after its worked examples if any."""
    prompt = _prompts()["strict"] if strict else _prompts()["prompts"][req.prompt]
    if isinstance(prompt, str):
        prompt = {"instruction": prompt, "shots": 0}
    template = prompt["instruction"] if "{text}" in prompt["instruction"] else prompt["instruction"] + "\n\n{text}"

    def ask(body: str) -> dict[str, str]:
        return {"role": "user", "content": template.replace("{length}", _length(req)).replace("{text}", body)}

    shown = [m for ex in _prompts()["examples"][:prompt["shots"]]
             for m in (ask(ex["text"]), {"role": "assistant", "content": ex["summary"]})]
    return [*shown, ask(text)]


def completion_prompt(text: str, req: SummaryRequest, strict: bool = False) -> str:
    """What a base model continues (the bundled adapter was trained on this wording)."""
    strictly = ", using only names and numbers from the text" if strict else ""
    return f"Text: {text}\n\nSummary of the text above in {_length(req)}{strictly}:"


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

    def __call__(self, text: str, req: SummaryRequest, stop: threading.Event | None, strict: bool = False):
        """The stream of (summary so far, stats) for ``text``; ``strict`` asks a chat model to add no facts."""
        tok = self.lm.tokenizer
        params = _params(req)
        if self.setup is not None:
            return stream(self.lm, seq2seq.encode(self.lm, text, self.setup), params, stop=stop,
                          extra=self.setup.generate_kwargs())
        body = neutralise_special_tokens(text, tok)
        if self.style == "completion":  # the blank line a base model starts next with ends the summary
            prompt = completion_prompt(body, req, strict)
            return stream(self.lm, dict(tok(prompt, return_tensors="pt")), params, stop=stop,
                          stop_strings=["\n\n", "\nText:"])
        messages = _messages(req, body, strict)
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

    def __call__(self, text: str, req: SummaryRequest, stop: threading.Event | None, strict: bool = False):
        messages = _messages(req, text, strict)
        return remote.chat_stream(self.model, messages, _params(req), stop=stop)


def summarize_stream(req: SummaryRequest, stop: threading.Event | None = None) -> Iterator[SummaryResult]:
    """Yield the growing summary; text longer than one chunk is summarised piece by piece, then combined."""
    text = source = require_text(req.text, "text to summarise").strip()
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
        partial_req = SummaryRequest("-", length=2, unit="sentences", model=req.model, adapter=req.adapter,
                                     prompt=req.prompt)
        partials = []
        for i, chunk in enumerate(chunks, 1):
            out, _ = run_to_end(summarise(chunk, partial_req, stop))
            partials.append(_answer(out))
            result.summary = f"(part {i}/{len(chunks)} summarised…)"
            yield result
            if stop is not None and stop.is_set():
                return
        text = "\n".join(partials)
        if summarise.setup is not None:  # the combining pass must fit the encoder too
            text = token_chunks(tokenizer, text, size)[0]
    out = ""
    for out, stats in summarise(text, req, stop):
        result.summary = _answer(out)
        result.summary_words = len(result.summary.split())
        result.tokens, result.backend = stats.tokens, stats.backend
        result.tokens_per_second = round(stats.tokens_per_second, 2)
        yield result
    result.summary = _final(out, req, summarise)
    result.summary_words = len(result.summary.split())
    if stop is not None and stop.is_set():
        yield result
        return
    yield from _check_facts(result, source, text, summarise, req, stop)


def _check_facts(result: SummaryResult, source: str, text: str, summarise, req: SummaryRequest,
                 stop: threading.Event | None) -> Iterator[SummaryResult]:
    """Hold the summary to the source's numbers and names: summarise ``text`` again with the strict instruction,
    then trim what still carries a fact the source lacks (the text's opening sentences when nothing is left)."""
    flags = factcheck.unsupported(result.summary, source)
    result.flagged = [f.text for f in flags]
    if not flags:
        result.fact_check = "passed"
        yield result
        return
    missing = ", ".join(result.flagged)
    if summarise.setup is None:  # a seq2seq model has no instruction to tighten: greedy would repeat itself
        result.notes.append(f"Not in the text: {missing}. Summarising again, told to use only its names and numbers.")
        yield result
        out, stats = run_to_end(summarise(text, req, stop, strict=True))
        if stop is not None and stop.is_set():
            return
        retry = _final(out, req, summarise)
        retry_flags = factcheck.unsupported(retry, source)
        if len(retry_flags) <= len(flags):
            result.summary, flags = retry, retry_flags
            result.tokens, result.tokens_per_second = stats.tokens, round(stats.tokens_per_second, 2)
        if not retry_flags:
            result.fact_check = "regenerated"
    if flags:
        trimmed = factcheck.trim(result.summary, flags)
        if trimmed:
            result.fact_check = "trimmed"
            result.notes.append(f"Cut the part stating {', '.join(f.text for f in flags)}: not in the text.")
        else:
            trimmed = fit_length(" ".join(split_sentences(source)[:req.length if req.unit == "sentences" else 3]),
                                 req)
            result.fact_check = "lead"
            result.notes.append(f"Every sentence of the summary stated something not in the text "
                                f"({', '.join(f.text for f in flags)}): showing the text's opening instead.")
        result.summary = trimmed
    elif result.fact_check == "regenerated":
        result.notes.append("The second summary states only names and numbers found in the text.")
    result.unsupported = [f.text for f in factcheck.unsupported(result.summary, source)]
    result.summary_words = len(result.summary.split())
    yield result


def _final(out: str, req: SummaryRequest, summarise) -> str:
    """The answer held to the asked length; a base model's (greedy Gemma can loop) also cut before a repeat."""
    answer = _answer(out)
    return fit_length(drop_repeats(answer) if getattr(summarise, "style", "") == "completion" else answer, req)


def drop_repeats(summary: str, n: int = 3) -> str:
    """The summary up to the clause that says again n words it already said: "… pounds, with 350 engineers hired,
    and 350 engineers hired, and …" ends after the first "hired". (Banning repeats while decoding would also ban
    the text's own phrases, which a summary should copy: ROUGE-L fell to 0.29.)"""
    clauses = re.split(r"(?<=[,;:])\s+", summary.strip())
    seen: set[tuple[str, ...]] = set()
    kept: list[str] = []
    for clause in clauses:
        words = re.findall(r"\w+", clause.lower())
        grams = {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}
        if kept and grams & seen:
            return " ".join(kept).rstrip(",;: ") + "."
        kept.append(clause)
        seen |= grams
    return summary.strip()


def _answer(out: str) -> str:
    """The model's answer without a lead-in ("Here is a summary...:")."""
    return _PREAMBLE.sub("", out.strip(), count=1).strip()


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
