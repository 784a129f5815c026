"""Text generation job: multi-turn chat with an instruct model, raw completion with a base model."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Iterator, NamedTuple

from lmdemo.engine import remote
from lmdemo.engine.streaming import GenerationParams, GenerationStats, neutralise_special_tokens, stream
from lmdemo.errors import InputError
from lmdemo.jobs.base import pick_model, require_text, run_to_end
from lmdemo.models import families
from lmdemo.models.loading import LoadedModel, load
from lmdemo.models.registry import DEFAULT_CHAT_MODEL, DEFAULT_COMPLETION_MODEL

# Earlier turns beyond these are dropped before templating: a model's context holds far less anyway.
MAX_HISTORY_TURNS = 64
MAX_HISTORY_CHARS = 32_000
MAX_STOP_STRINGS, MAX_STOP_CHARS = 4, 64  # OpenAI's own caps on `stop`


@dataclass
class GenerationRequest:
    """One generation call; ``history`` holds earlier turns as {"role", "content"} dicts (chat mode)."""

    prompt: str
    mode: str = field(default="chat", metadata={"help": "chat (instruct model, chat template) or completion (raw text)"})
    model: str | None = field(default=None, metadata={"help": "built-in, folder, Hub id or adapter name"})
    adapter: str | None = None
    quantize: str | None = field(default=None, metadata={"help": "none, 8bit or 4bit (bitsandbytes)"})
    params: GenerationParams = field(default_factory=GenerationParams)
    history: list[dict[str, str]] = field(default_factory=list)
    system_prompt: str | None = None
    stop: list[str] = field(default_factory=list, metadata={"help": "strings that end the reply (not included)"})

    def __post_init__(self) -> None:
        stop = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        if len(stop) > MAX_STOP_STRINGS or not all(isinstance(s, str) and 0 < len(s) <= MAX_STOP_CHARS for s in stop):
            raise InputError(f"`stop` takes up to {MAX_STOP_STRINGS} strings of 1 to {MAX_STOP_CHARS} characters.")
        self.stop = stop
        if self.mode not in ("chat", "completion"):
            raise InputError(f"`mode` must be chat or completion; got {self.mode!r}")
        if self.quantize is not None and self.quantize not in ("none", "8bit", "4bit"):
            raise InputError(f"`quantize` must be none, 8bit or 4bit; got {self.quantize!r}")
        default = DEFAULT_CHAT_MODEL if self.mode == "chat" else DEFAULT_COMPLETION_MODEL
        if families.is_remote(self.model):
            remote.check_options(self.model, self.adapter, self.quantize)
        else:
            self.model, self.adapter = pick_model(self.model, self.adapter, default)
        history = list(self.history or [])[-MAX_HISTORY_TURNS:]
        for turn in history:
            if (not isinstance(turn, dict) or turn.get("role") not in ("user", "assistant", "system")
                    or not isinstance(turn.get("content"), str)):
                raise InputError("Each history turn needs a role (user/assistant/system) and text content.")
        kept, chars = len(history), 0
        while kept and chars + len(history[kept - 1]["content"]) <= MAX_HISTORY_CHARS:
            kept -= 1
            chars += len(history[kept]["content"])
        self.history = history[kept:]


def _context_limit(lm: LoadedModel) -> int:
    limit = getattr(lm.model.config, "max_position_embeddings", None) or lm.tokenizer.model_max_length
    return int(min(limit, 32768))


def build_inputs(lm: LoadedModel, req: GenerationRequest) -> dict:
    """Token ids for the request: the chat template (oldest turns dropped to fit) or the raw prompt."""
    tok = lm.tokenizer
    budget = _context_limit(lm) - req.params.max_new_tokens
    if budget < 16:
        raise InputError(f"`max_new_tokens` ({req.params.max_new_tokens}) leaves no room for the prompt in "
                         f"this model's context of {_context_limit(lm)} tokens.")
    if req.mode == "completion":
        ids = tok(req.prompt, return_tensors="pt")
        if ids["input_ids"].shape[1] > budget:
            raise InputError(f"The prompt is {ids['input_ids'].shape[1]} tokens; this model takes at most {budget} "
                             f"with {req.params.max_new_tokens} new tokens.")
        return dict(ids)
    if not getattr(tok, "chat_template", None):
        raise InputError(f"Model {req.model!r} has no chat template (a base model?): use completion mode.")
    clean = lambda text: neutralise_special_tokens(text, tok)  # noqa: E731
    turns = [{"role": t["role"], "content": clean(t["content"])} for t in req.history]
    turns.append({"role": "user", "content": clean(req.prompt)})
    system = [{"role": "system", "content": clean(req.system_prompt)}] if req.system_prompt else []


    def template(start: int):
        return tok.apply_chat_template(system + turns[start:], add_generation_prompt=True, return_tensors="pt",
                                       return_dict=True)

    ids = template(0)
    if ids["input_ids"].shape[1] <= budget:
        return {"input_ids": ids["input_ids"], "attention_mask": ids["attention_mask"]}
    # Drop the oldest exchanges until it fits: the fewest dropped, found by bisection (a few templatings).
    last = len(turns) - 1
    ids = template(last)
    if ids["input_ids"].shape[1] > budget:
        raise InputError(f"The message is {ids['input_ids'].shape[1]} tokens; this model takes at most {budget}.")
    low, high = 0, last  # template(low) is too long, template(high) fits
    while high - low > 1:
        mid = (low + high) // 2
        if template(mid)["input_ids"].shape[1] <= budget:
            high = mid
        else:
            low = mid
    if high % 2 and high < last:  # start on a user turn, as the exchanges were
        high += 1
    ids = template(high)
    return {"input_ids": ids["input_ids"], "attention_mask": ids["attention_mask"]}


class GenerationResult(NamedTuple):
    """The reply so far (or whole) and its stats; unpacks as ``text, stats``."""

    text: str
    stats: GenerationStats

    def to_dict(self) -> dict[str, Any]:
        s = self.stats
        return {"text": self.text, "tokens": s.tokens, "prompt_tokens": s.prompt_tokens,
                "tokens_per_second": round(s.tokens_per_second, 2),
                "first_token_seconds": round(s.first_token_seconds or 0.0, 3), "finish_reason": s.finish_reason,
                "backend": s.backend}


def generate_stream(req: GenerationRequest, stop: threading.Event | None = None) -> Iterator[GenerationResult]:
    """Stream the growing chat reply or completion."""
    require_text(req.prompt, "prompt")
    families.require(req.model, "generate")
    if families.is_remote(req.model):
        yield from _remote_stream(req, stop)
        return
    lm = load(req.model, adapter=req.adapter, quantize=req.quantize)
    for text, stats in stream(lm, build_inputs(lm, req), req.params, stop=stop, stop_strings=req.stop or None):
        yield GenerationResult(text, stats)


def _remote_stream(req: GenerationRequest, stop: threading.Event | None) -> Iterator[GenerationResult]:
    """The request on a remote engine (docs/remote.md): the turns as chat messages, which its server templates (and
    fits to its context, or refuses with its own message), or the raw prompt as a completion."""
    stops = req.stop or None
    if req.mode == "completion":
        events = remote.completion_stream(req.model, req.prompt, req.params, stop, stops)
    else:
        system = [{"role": "system", "content": req.system_prompt}] if req.system_prompt else []
        turns = [{"role": t["role"], "content": t["content"]} for t in req.history]
        events = remote.chat_stream(req.model, system + turns + [{"role": "user", "content": req.prompt}],
                                    req.params, stop, stops)
    for text, stats in events:
        yield GenerationResult(text, stats)


def generate(req: GenerationRequest, stop: threading.Event | None = None) -> GenerationResult:
    """The whole reply at once."""
    return run_to_end(generate_stream(req, stop))


run, run_stream = generate, generate_stream  # the job shape every job module has
