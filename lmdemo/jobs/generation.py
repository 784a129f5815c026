"""Text generation job: multi-turn chat with an instruct model, raw completion with a base model."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Iterator

from lmdemo.errors import InputError
from lmdemo.models.loading import LoadedModel, load
from lmdemo.models.registry import DEFAULT_CHAT_MODEL, DEFAULT_COMPLETION_MODEL
from lmdemo.engine.streaming import GenerationParams, GenerationStats, neutralise_special_tokens, require_text, run_to_end, stream


@dataclass
class GenerationRequest:
    """One generation call; ``history`` holds earlier turns as {"role", "content"} dicts (chat mode)."""

    prompt: str
    mode: str = "chat"  # chat | completion
    model: str | None = None
    adapter: str | None = None
    quantize: str | None = None
    params: GenerationParams = field(default_factory=GenerationParams)
    history: list[dict[str, str]] = field(default_factory=list)
    system_prompt: str | None = None

    def __post_init__(self) -> None:
        if self.mode not in ("chat", "completion"):
            raise InputError(f"`mode` must be chat or completion; got {self.mode!r}")
        self.model = (self.model or "").strip() or (DEFAULT_CHAT_MODEL if self.mode == "chat" else DEFAULT_COMPLETION_MODEL)
        for turn in self.history:
            if turn.get("role") not in ("user", "assistant", "system") or not isinstance(turn.get("content"), str):
                raise InputError("Each history turn needs a role (user/assistant/system) and text content.")


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
    while True:
        ids = tok.apply_chat_template(system + turns, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        if ids["input_ids"].shape[1] <= budget:
            return {"input_ids": ids["input_ids"], "attention_mask": ids["attention_mask"]}
        if len(turns) <= 1:
            raise InputError(f"The message is {ids['input_ids'].shape[1]} tokens; this model takes at most {budget}.")
        turns = turns[2:] if len(turns) > 2 else turns[1:]  # drop the oldest exchange


def generate_stream(req: GenerationRequest, stop: threading.Event | None = None) -> Iterator[tuple[str, GenerationStats]]:
    """Stream (text so far, stats) for a chat reply or a completion."""
    require_text(req.prompt, "prompt")
    lm = load(req.model, adapter=req.adapter, quantize=req.quantize)
    yield from stream(lm, build_inputs(lm, req), req.params, stop=stop)


def generate(req: GenerationRequest) -> tuple[str, GenerationStats]:
    """The whole reply at once."""
    return run_to_end(generate_stream(req))
