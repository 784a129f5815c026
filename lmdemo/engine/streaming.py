"""Shared text-generation core: validated sampling parameters, streaming with a real stop, timing."""

from __future__ import annotations

import math
import queue
import threading
import time
import weakref
from dataclasses import dataclass, fields
from typing import Any, Callable, Iterator

import torch

from lmdemo.errors import InputError
from lmdemo.models.loading import LoadedModel

# transformers' sampling draws from torch's process-wide RNG; seeded runs hold this lock so that
# two sampled generations never interleave their draws (greedy runs need no lock).
_RNG_LOCK = threading.Lock()
# per model, the fastgen weight kinds whose copies are already in the model's size_bytes
_COUNTED: "weakref.WeakKeyDictionary[Any, set[str]]" = weakref.WeakKeyDictionary()
_COUNTED_LOCK = threading.Lock()
_ACTIVE = [0]  # generations running now, for background work that should wait (see busy())
_ACTIVE_LOCK = threading.Lock()


def busy() -> bool:
    """Whether a generation is running in this process (background warm-up waits for it to end)."""
    return _ACTIVE[0] > 0


# Model threads are kept and reused: a fresh thread's first torch ops cost ~25 ms more (Gemma's first token
# after 185 ms instead of 159 ms on 2 vCPUs, measured), which is most of what a short prompt takes.
_IDLE_WORKERS: list[queue.SimpleQueue] = []
_WORKERS_LOCK = threading.Lock()
_RUNNING = [0]  # jobs executing on model threads right now


def _run_on_worker(job: Callable[[], None]) -> threading.Event:
    """Run ``job`` on an idle model thread (a new one when all are busy); the event is set when it has returned."""
    done = threading.Event()
    with _WORKERS_LOCK:
        inbox = _IDLE_WORKERS.pop() if _IDLE_WORKERS else None
        _RUNNING[0] += 1
    if inbox is None:
        inbox = queue.SimpleQueue()
        threading.Thread(target=_worker, args=(inbox,), daemon=True, name="lmdemo-generate").start()
    inbox.put((job, done))
    return done


def _worker(inbox: queue.SimpleQueue) -> None:
    while True:
        job, done = inbox.get()
        try:
            job()
        finally:
            with _WORKERS_LOCK:
                _RUNNING[0] -= 1
                _IDLE_WORKERS.append(inbox)
            done.set()


def jobs_running() -> int:
    """Generation jobs executing on model threads now (0 once every stream has ended or been stopped)."""
    return _RUNNING[0]


@dataclass
class GenerationParams:
    """Decoding settings; temperature 0 means greedy."""

    max_new_tokens: int = 256  # a chat answer of a few tips or paragraphs ends by itself well before this
    temperature: float = 0.7
    top_p: float = 0.9
    top_k: int = 50
    repetition_penalty: float = 1.1
    seed: int | None = 0

    _RANGES = {
        "max_new_tokens": (1, 4096),
        "temperature": (0.0, 5.0),
        "top_p": (0.0, 1.0),
        "top_k": (0, 1000),
        "repetition_penalty": (0.5, 3.0),
        "seed": (0, 2**32 - 1),
    }

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "seed" and value is None:
                continue
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise InputError(f"`{f.name}` must be a number; got {value!r}") from None
            lo, hi = self._RANGES[f.name]
            if not math.isfinite(number) or not lo <= number <= hi:
                raise InputError(f"`{f.name}` must be between {lo} and {hi}; got {value!r}")
            if f.name in ("max_new_tokens", "top_k", "seed"):
                if number != int(number):
                    raise InputError(f"`{f.name}` must be a whole number; got {value!r}")
                number = int(number)
            setattr(self, f.name, number)
        if self.top_p == 0:
            raise InputError("`top_p` must be above 0 (1 keeps every token)")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def generate_kwargs(self) -> dict[str, Any]:
        # One beam always: a model's own generation config may ask for beams (Marian: 4), which cannot stream.
        # max_length=None: max_new_tokens bounds the answer (a config's max_length of 512 would only warn).
        kwargs: dict[str, Any] = {"max_new_tokens": self.max_new_tokens, "repetition_penalty": self.repetition_penalty,
                                  "num_beams": 1, "max_length": None}
        if self.greedy:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            kwargs.update(do_sample=True, temperature=self.temperature, top_p=self.top_p, top_k=self.top_k or None)
        return kwargs


@dataclass
class GenerationStats:
    tokens: int = 0
    seconds: float = 0.0
    prompt_tokens: int = 0  # what the model read (the encoder's input for a seq2seq model)
    first_token_seconds: float | None = None
    finish_reason: str = "running"  # running | length | eos | stopped | stop_string
    # transformers | fastgen (lmdemo's CPU decode loop, same tokens) | fastgen-int8/-int4/-gguf (opt-ins)
    backend: str = "transformers"

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


class _Watch:
    """Stopping criterion that ends generation when the stop event is set, and counts new tokens."""

    def __init__(self, prompt_len: int, stop: threading.Event | None):
        self.prompt_len = prompt_len
        self.stop = stop
        self.new_tokens = 0

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs) -> torch.BoolTensor:
        self.new_tokens = input_ids.shape[1] - self.prompt_len
        halt = bool(self.stop is not None and self.stop.is_set())
        return torch.full((input_ids.shape[0],), halt, dtype=torch.bool, device=input_ids.device)


def stream(lm: LoadedModel, inputs: dict[str, torch.Tensor], params: GenerationParams,
           stop: threading.Event | None = None, stop_strings: list[str] | None = None,
           extra: dict[str, Any] | None = None) -> Iterator[tuple[str, GenerationStats]]:
    """Generate on a background thread, yielding (text so far, stats) as tokens arrive.

    Setting ``stop`` ends the model thread itself at the next token. ``stop_strings`` end generation
    when produced; the returned text is cut before them. ``extra`` goes to ``generate`` as it is (a seq2seq
    model's forced first token, a summary's no-repeat n-gram size), never to the fastgen loop. An encoder-decoder
    model reads ``inputs`` with its encoder; its answer starts from the decoder's start token, with the rest of its
    own generation config.
    """
    from transformers import StoppingCriteriaList, TextIteratorStreamer

    inputs = {k: v.to(lm.device) for k, v in inputs.items()}
    # The stopping criteria see decoder ids: for an encoder-decoder model only the decoder start precedes the answer.
    prompt_len = 1 if getattr(lm.model.config, "is_encoder_decoder", False) else inputs["input_ids"].shape[1]
    streamer = TextIteratorStreamer(lm.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=600)
    watch = _Watch(prompt_len, stop)
    kwargs = dict(inputs, streamer=streamer, stopping_criteria=StoppingCriteriaList([watch]),
                  pad_token_id=lm.tokenizer.pad_token_id, **params.generate_kwargs())
    if stop_strings:
        kwargs.update(stop_strings=stop_strings, tokenizer=lm.tokenizer)
    kwargs.update(extra or {})
    failure: list[BaseException] = []
    fast = not extra and _use_fastgen(lm, inputs)  # fastgen knows none of generate's extra options
    weights = _fastgen_weights(lm, inputs, params) if fast else "exact"
    generate = (lambda: _fast_generate(lm, inputs, params, streamer, watch, stop_strings, weights)) if fast \
        else (lambda: lm.model.generate(**kwargs))

    def run() -> None:
        try:
            with torch.inference_mode():
                if params.greedy:
                    generate()
                else:
                    with _RNG_LOCK:
                        torch.manual_seed(params.seed if params.seed is not None else int(time.time()))
                        generate()
        except BaseException as exc:  # surfaced to the caller below, not lost in the thread
            failure.append(exc)
            streamer.end()

    stats = GenerationStats(backend=("fastgen" if weights == "exact" else f"fastgen-{weights}") if fast
                            else "transformers", prompt_tokens=int(inputs["input_ids"].shape[1]))
    start = time.perf_counter()
    with _ACTIVE_LOCK:
        _ACTIVE[0] += 1
    finished = _run_on_worker(run)
    text = ""
    completed = False
    try:
        for piece in streamer:
            if not piece:
                continue
            if stats.first_token_seconds is None:
                stats.first_token_seconds = time.perf_counter() - start
            text += piece
            stats.tokens, stats.seconds = watch.new_tokens, time.perf_counter() - start
            yield _cut(text, stop_strings), stats
        completed = True
    finally:
        if not completed:
            # The consumer went away (closed page, error): end the model thread too.
            watch.stop = stop = stop or threading.Event()
            stop.set()
        finished.wait()
        with _ACTIVE_LOCK:
            _ACTIVE[0] -= 1
    if failure:
        raise failure[0]
    stats.tokens, stats.seconds = watch.new_tokens, time.perf_counter() - start
    cut = _cut(text, stop_strings)
    if stop is not None and stop.is_set():
        stats.finish_reason = "stopped"
    elif cut != text:
        stats.finish_reason = "stop_string"
    elif stats.tokens >= params.max_new_tokens:
        stats.finish_reason = "length"
    else:
        stats.finish_reason = "eos"
    yield cut, stats


def _use_fastgen(lm: LoadedModel, inputs: dict[str, torch.Tensor]) -> bool:
    """The lean CPU loop takes unpadded single prompts on models it covers; everything else goes to generate."""
    from lmdemo.config import get_settings
    from lmdemo.engine.fastgen import unsupported_reason

    mask = inputs.get("attention_mask")
    return (get_settings().fast_generation and inputs["input_ids"].shape[0] == 1
            and (mask is None or bool(mask.all())) and unsupported_reason(lm.model, lm.device) is None)


def _fastgen_weights(lm: LoadedModel, inputs: dict[str, torch.Tensor], params: GenerationParams) -> str:
    """exact, or the opt-in that applies: int8/int4 on a bf16 or fp32 model, gguf on a built-in that ships as
    a GGUF file, within llama.cpp's context."""
    from lmdemo.config import get_settings

    weights = get_settings().fastgen_weights
    if weights == "gguf":
        from lmdemo.engine.llamacpp import CONTEXT
        from lmdemo.models.registry import BUILTINS, GGUFSource

        builtin = BUILTINS.get(lm.spec.model)
        fits = inputs["input_ids"].shape[1] + params.max_new_tokens <= CONTEXT
        return "gguf" if builtin is not None and isinstance(builtin.source, GGUFSource) and fits else "exact"
    return weights if lm.model.dtype in (torch.bfloat16, torch.float32) else "exact"


def _decoder(lm: LoadedModel, weights: str) -> str | None:
    """Build (once) the fast decoder for these weights and count its copies; returns the GGUF path for gguf."""
    from lmdemo.engine.fastgen import decoder_for

    gguf = None
    if weights == "gguf":
        from lmdemo.models.store import gguf_file

        gguf = str(gguf_file(lm.spec.model))
    with _COUNTED_LOCK:
        counted = _COUNTED.setdefault(lm.model, set())
        if weights not in counted:  # the model cache's memory budget should see the copies too
            lm.size_bytes += decoder_for(lm.model, weights, gguf).extra_bytes
            counted.add(weights)
    return gguf


def prepare_decoder(lm: LoadedModel) -> None:
    """Do now what a first short request on ``lm`` would do before its first token (packing or quantising the
    weights, loading llama.cpp): the app's warm-up calls it so that the first visitor does not wait for it."""
    inputs = {"input_ids": torch.zeros((1, 1), dtype=torch.long)}
    if not _use_fastgen(lm, inputs):
        return
    _decoder(lm, _fastgen_weights(lm, inputs, GenerationParams(max_new_tokens=1)))


def _fast_generate(lm: LoadedModel, inputs: dict[str, torch.Tensor], params: GenerationParams, streamer,
                   watch: _Watch, stop_strings: list[str] | None, weights: str = "exact") -> None:
    """`generate`'s job through lmdemo.engine.fastgen: tokens to the streamer, the stop event and stop strings honoured."""
    from lmdemo.engine.fastgen import Sampling, generate_tokens

    gguf = _decoder(lm, weights)
    kw = params.generate_kwargs()
    sampling = Sampling(max_new_tokens=params.max_new_tokens, do_sample=kw["do_sample"], temperature=kw["temperature"],
                        top_p=kw["top_p"], top_k=kw["top_k"], repetition_penalty=params.repetition_penalty)
    eos = lm.model.generation_config.eos_token_id
    eos = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
    longest = max((len(s) for s in stop_strings or [] if s), default=0)

    def should_stop(new: list[int]) -> bool:
        if watch.stop is not None and watch.stop.is_set():
            return True
        if longest:
            # Every token spells at least one character, so the last `longest` tokens hold any stop string just made.
            tail = lm.tokenizer.decode(new[-longest:], skip_special_tokens=True)
            return any(s and s in tail for s in stop_strings)
        return False

    streamer.put(inputs["input_ids"].cpu())  # the streamer skips the prompt, as with generate
    try:
        for token in generate_tokens(lm.model, inputs["input_ids"], sampling, eos, should_stop, weights, gguf):
            watch.new_tokens += 1
            streamer.put(torch.tensor([token]))
    finally:
        streamer.end()


def _cut(text: str, stop_strings: list[str] | None) -> str:
    if not stop_strings:
        return text
    positions = [text.find(s) for s in stop_strings if s and s in text]
    return text[: min(positions)] if positions else text


def neutralise_special_tokens(text: str, tokenizer) -> str:
    """Keep user text from forging template markup: special-token strings are broken with a zero-width space."""
    for token in sorted(set(tokenizer.all_special_tokens) | set(getattr(tokenizer, "added_tokens_encoder", {})),
                        key=len, reverse=True):
        if len(token) > 1 and token in text:
            text = text.replace(token, token[0] + "\u200b" + token[1:])
    return text
