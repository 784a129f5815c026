"""Remote OpenAI-compatible engines (vLLM, llama.cpp's server, any `/v1` server) as back-ends: the one owner of
their addresses, keys, HTTP and streams (docs/remote.md).

A model box takes `openai:http://HOST:PORT/v1#MODEL` (without `#MODEL`: the server's first model) or the name of
a back-end in LMDEMO_BACKENDS (which names are remote is :func:`lmdemo.models.families.is_remote`). Streams yield
(text so far, GenerationStats) exactly like :func:`lmdemo.engine.streaming.stream`; Stop is checked between chunks
and closes the response, which is how an OpenAI-compatible server learns to stop generating.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Iterator
from urllib.parse import urlsplit

import httpx

from lmdemo.config import ConfigError, engine_address, get_settings
from lmdemo.engine.streaming import GenerationParams, GenerationStats
from lmdemo.errors import InputError, LmdemoError, ModelNotFoundError
from lmdemo.models import families

# Connecting fails fast (a wrong address should not hang a page); a chunk may take long: a CPU engine reads a
# long prompt before its first token, and a busy one queues the request.
TIMEOUT = httpx.Timeout(connect=10.0, read=120.0, write=30.0, pool=30.0)
MAX_LINE_BYTES = 1 << 20  # one SSE line (one chunk's JSON) is a few hundred bytes
MAX_RESPONSE_BYTES = 32 << 20  # a whole reply: ~400 bytes a chunk x 4096 tokens is under 2 MB
MAX_ERROR_BYTES = 64 << 10  # of an error body read
MAX_ERROR_CHARS = 300  # of a server's own message, on the one line the user sees
MODELS_TTL_S = 60.0  # the model list is asked again after this: a restarted server may serve another model
KEY_ENV = "LMDEMO_REMOTE_API_KEY"  # every remote engine's key; LMDEMO_BACKEND_KEY_<NAME> overrides it per back-end


@dataclass(frozen=True)
class Endpoint:
    """A remote engine: its base URL (ending in /v1 as a rule), the model asked for, and its back-end name."""

    base_url: str
    model: str | None  # None: the server's first model
    name: str | None = None  # its name in LMDEMO_BACKENDS; None for a typed address

    def headers(self) -> dict[str, str]:
        # Keys come from the operator's environment only: never from a model box, never in Settings' repr or a log.
        key = (os.environ.get(key_variable(self.name)) if self.name else None) or os.environ.get(KEY_ENV)
        return {"Authorization": f"Bearer {key}"} if key else {}

    def where(self) -> str:
        """How messages name it: a shared app does not tell visitors its operator's addresses."""
        if self.name:
            return self.name if get_settings().demo_mode else f"{self.name} ({self.base_url})"
        return self.base_url

    def label(self, model: str) -> str:
        """The stats line's engine name: openai:NAME, or openai:HOST:PORT#MODEL."""
        return f"openai:{self.name}" if self.name else f"openai:{urlsplit(self.base_url).netloc}#{model}"


def key_variable(name: str) -> str:
    """The variable holding a back-end's own key: LMDEMO_BACKEND_KEY_ and its name, upper-case, `.`/`-` as `_`."""
    return "LMDEMO_BACKEND_KEY_" + re.sub(r"[^A-Z0-9]", "_", name.upper())


def endpoint(name: str) -> Endpoint:
    """The engine a model box value names; refused on a shared app unless it is one of the operator's back-ends."""
    name = (name or "").strip()
    if not families.is_remote(name):
        raise ModelNotFoundError(f"{name!r} is not a remote engine (openai:http://HOST:PORT/v1 or a back-end name).")
    families.check_remote_allowed(name)
    backends = get_settings().backends
    try:
        if name in backends:
            return Endpoint(*engine_address(backends[name], f"back-end {name!r}"), name=name)
        return Endpoint(*engine_address(name, "The model"))
    except ConfigError as exc:
        raise InputError(str(exc)) from None


def check_options(name: str, adapter: str | None, quantize: str | None) -> None:
    """A remote engine runs its own weights: an adapter or a quantisation asked for here cannot apply."""
    if adapter:
        raise InputError(f"{name!r} is a remote engine: adapters apply to local models only.")
    if quantize not in (None, "", "none"):
        raise InputError(f"{name!r} is a remote engine: `quantize` applies to local models only; got {quantize!r}.")


# ---------------------------------------------------------------- HTTP

_CLIENT: list[httpx.Client] = []
_CLIENT_LOCK = threading.Lock()


def _client() -> httpx.Client:
    """One pooled client per process (httpx's client is thread-safe); redirects are not followed, so a shared
    app's named back-end cannot send it elsewhere."""
    with _CLIENT_LOCK:
        if not _CLIENT:
            _CLIENT.append(httpx.Client(timeout=TIMEOUT, follow_redirects=False))
        return _CLIENT[0]


def _transport_error(ep: Endpoint, exc: httpx.TransportError) -> LmdemoError:
    if isinstance(exc, httpx.ReadTimeout):
        return InputError(f"The engine at {ep.where()} sent nothing for {TIMEOUT.read:.0f} s: stopped waiting.")
    if isinstance(exc, httpx.TimeoutException):
        why = f"no answer within {TIMEOUT.connect:.0f} s"
    else:
        why = re.sub(r"^\[Errno -?\d+\]\s*", "", str(exc).strip().splitlines()[0] if str(exc).strip() else "")
        why = why[:1].lower() + why[1:] if why else type(exc).__name__
    return ModelNotFoundError(f"Cannot reach the engine at {ep.where()}: {why}")


def _server_message(body: bytes) -> str:
    """The server's own words from an error body: OpenAI's error.message, FastAPI's detail, or the text."""
    text = body.decode("utf-8", "replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        err = data.get("error", data.get("detail", data.get("message")))
        if isinstance(err, dict):
            err = err.get("message") or err
        text = err if isinstance(err, str) else json.dumps(err)
    text = " ".join(text.split())
    return text[:MAX_ERROR_CHARS] + ("…" if len(text) > MAX_ERROR_CHARS else "")


def _read_bounded(response: httpx.Response, limit: int) -> bytes:
    body = b""
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) >= limit:
            break
    return body[:limit]


def _http_error(ep: Endpoint, model: str | None, response: httpx.Response) -> LmdemoError:
    status = response.status_code
    said = _server_message(_read_bounded(response, MAX_ERROR_BYTES)) or response.reason_phrase
    if status in (401, 403):
        keys = f"{KEY_ENV}" + (f" or {key_variable(ep.name)}" if ep.name else "")
        return InputError(f"The engine at {ep.where()} refused the request (HTTP {status}: {said}); its key comes "
                          f"from {keys} in lmdemo's environment.")
    if status == 404 and model and "model" in said.lower():
        return ModelNotFoundError(f"The engine at {ep.where()} has no model {model!r} (HTTP 404: {said}).")
    return InputError(f"The engine at {ep.where()} answered HTTP {status}: {said}")


_MODELS: dict[str, tuple[float, list[str] | None]] = {}
_MODELS_LOCK = threading.Lock()


def served_models(ep: Endpoint) -> list[str] | None:
    """The ids GET /models lists (cached for MODELS_TTL_S); None when the server has no model list."""
    with _MODELS_LOCK:
        cached = _MODELS.get(ep.base_url)
    if cached and time.monotonic() - cached[0] < MODELS_TTL_S:
        return cached[1]
    try:
        with _client().stream("GET", f"{ep.base_url}/models", headers=ep.headers()) as response:
            if response.status_code in (404, 405):
                ids = None
            elif response.status_code >= 400:
                raise _http_error(ep, None, response)
            else:
                body = _read_bounded(response, MAX_LINE_BYTES)
                try:
                    ids = [str(m["id"]) for m in json.loads(body)["data"] if isinstance(m, dict) and "id" in m]
                except (ValueError, KeyError, TypeError):
                    raise InputError(f"The engine at {ep.where()} answered GET /models with something that is not "
                                     "an OpenAI model list: is the address its /v1 base URL?") from None
    except httpx.TransportError as exc:
        raise _transport_error(ep, exc) from None
    with _MODELS_LOCK:
        _MODELS[ep.base_url] = (time.monotonic(), ids)
    return ids


def model_id(ep: Endpoint) -> str:
    """The model to ask for: the one named (checked against the server's list), else the server's first."""
    models = served_models(ep)
    if ep.model:
        if models is not None and ep.model not in models:
            listed = ", ".join(models[:8]) + (", …" if len(models) > 8 else "") if models else "none"
            raise ModelNotFoundError(f"The engine at {ep.where()} serves no model {ep.model!r}; it serves: {listed}.")
        return ep.model
    if models is None:
        raise ModelNotFoundError(f"The engine at {ep.where()} has no model list (GET /models: not found): is the "
                                 "address its /v1 base URL? Otherwise name the model: openai:URL#MODEL.")
    if not models:
        raise ModelNotFoundError(f"The engine at {ep.where()} lists no models: name one after the address "
                                 "(openai:URL#MODEL).")
    return models[0]


# ---------------------------------------------------------------- streams

def chat_stream(name: str, messages: list[dict[str, str]], params: GenerationParams,
                stop: threading.Event | None = None, stop_strings: list[str] | None = None,
                ) -> Iterator[tuple[str, GenerationStats]]:
    """Stream a chat reply (POST /chat/completions; the server applies its model's chat template)."""
    return _stream(name, "chat/completions", {"messages": messages}, params, stop, stop_strings)


def completion_stream(name: str, prompt: str, params: GenerationParams, stop: threading.Event | None = None,
                      stop_strings: list[str] | None = None) -> Iterator[tuple[str, GenerationStats]]:
    """Stream a raw completion (POST /completions: the prompt as it is, no template)."""
    return _stream(name, "completions", {"prompt": prompt}, params, stop, stop_strings)


def _body(model: str, params: GenerationParams) -> dict[str, Any]:
    # Only what every OpenAI-compatible server takes: top_k and the repetition penalty are not in the API
    # (OpenAI itself refuses unknown fields), so the engine's own defaults apply to them.
    body: dict[str, Any] = {"model": model, "stream": True, "stream_options": {"include_usage": True},
                            "max_tokens": params.max_new_tokens, "temperature": params.temperature,
                            "top_p": params.top_p}
    if params.seed is not None:
        body["seed"] = params.seed
    return body


def _stream(name: str, path: str, payload: dict[str, Any], params: GenerationParams, stop: threading.Event | None,
            stop_strings: list[str] | None) -> Iterator[tuple[str, GenerationStats]]:
    ep = endpoint(name)
    model = model_id(ep)
    stats = GenerationStats(backend=ep.label(model))
    start = time.perf_counter()
    text, pieces, usage, reason, halted, choice = "", 0, None, None, None, {}
    try:
        with _client().stream("POST", f"{ep.base_url}/{path}", json=dict(payload, **_body(model, params)),
                              headers=ep.headers()) as response:
            if response.status_code >= 400:
                raise _http_error(ep, model, response)
            for event in _events(ep, response):
                if event.get("error"):
                    said = _server_message(json.dumps(event).encode())
                    raise InputError(f"The engine at {ep.where()} failed: {said}")
                usage = event.get("usage") or usage
                choice = (event.get("choices") or [{}])[0]
                reason = choice.get("finish_reason") or reason
                piece = (choice.get("delta") or {}).get("content") or (choice.get("message") or {}).get("content") \
                    or choice.get("text")
                if piece:
                    pieces += 1
                    text += piece
                    stats.first_token_seconds = stats.first_token_seconds or time.perf_counter() - start
                    stats.tokens, stats.seconds = pieces, time.perf_counter() - start
                    cut = _cut(text, stop_strings)
                    if cut != text:
                        halted = "stop_string"
                        break
                    yield text, stats
                if stop is not None and stop.is_set():
                    halted = "stopped"
                    break
                if pieces > params.max_new_tokens:  # a server ignoring max_tokens: every chunk holds a token at least
                    halted = "length"
                    break
    except httpx.TransportError as exc:
        raise _transport_error(ep, exc) from None
    # Leaving the `with` closed the response: an engine stops generating when its client goes.
    stats.seconds = time.perf_counter() - start
    stats.tokens = pieces if halted or not usage else int(usage.get("completion_tokens") or pieces)
    if usage:
        stats.prompt_tokens = int(usage.get("prompt_tokens") or 0)
    if halted:
        stats.finish_reason = halted
    elif reason == "length":
        stats.finish_reason = "length"
    elif reason == "stop" and isinstance(choice.get("stop_reason"), str):  # vLLM names the stop string it met
        stats.finish_reason = "stop_string"
    else:
        stats.finish_reason = "eos"
    yield _cut(text, stop_strings), stats


def _events(ep: Endpoint, response: httpx.Response) -> Iterator[dict[str, Any]]:
    """The JSON objects of a server-sent-events stream (`data:` lines up to `[DONE]`), within the size bounds; a
    server that answers with one JSON object instead of a stream gives that object."""
    if not response.headers.get("content-type", "").startswith("text/event-stream"):
        body = _read_bounded(response, MAX_RESPONSE_BYTES)
        try:
            event = json.loads(body)
        except ValueError:
            raise InputError(f"The engine at {ep.where()} answered with neither a stream nor JSON.") from None
        if isinstance(event, dict):
            yield event
        return
    buffer, total = b"", 0
    for chunk in response.iter_bytes():
        total += len(chunk)
        if total > MAX_RESPONSE_BYTES:
            raise InputError(f"The engine at {ep.where()} sent more than {MAX_RESPONSE_BYTES >> 20} MB for one "
                             "reply: stopped reading.")
        *lines, buffer = (buffer + chunk).split(b"\n")
        if len(buffer) > MAX_LINE_BYTES:
            raise InputError(f"The engine at {ep.where()} sent a line over {MAX_LINE_BYTES >> 20} MB: stopped reading.")
        for line in lines:
            line = line.rstrip(b"\r")
            if not line.startswith(b"data:"):
                continue  # comments, event names, keep-alives
            data = line[5:].strip()
            if data == b"[DONE]":
                return
            try:
                event = json.loads(data)
            except ValueError:
                raise InputError(f"The engine at {ep.where()} sent a chunk that is not JSON: {data[:80]!r}") from None
            if isinstance(event, dict):
                yield event


def _cut(text: str, stop_strings: list[str] | None) -> str:
    """Text before the first stop string, looked for after the reply's leading whitespace (a chat reply that starts
    with a newline has not ended). Stop strings are applied here, not sent: then `stop_string` is told apart from
    an end of text on every server, and the response is closed as soon as one appears."""
    if not stop_strings:
        return text
    begin = len(text) - len(text.lstrip())
    positions = [text.find(s, begin) for s in stop_strings if s and text.find(s, begin) >= 0]
    return text[: min(positions)] if positions else text


# ---------------------------------------------------------------- text measured without the engine's tokenizer

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_PIECE = re.compile(rf"\s*(?:[{_CJK}]|[^\s{_CJK}]{{1,4}})")


class ApproxTokenizer:
    """Token counts and cuts for text sent to a remote engine, whose tokenizer is not here: up to 4 characters of
    a word make one token, a CJK character one. It errs high for English (about 1.5 pieces a word where BPE
    tokenizers take about 1.3), so chunks measured by it stay within what the engine takes. It has the two calls
    lmdemo.jobs.base.token_chunks makes of a tokenizer."""

    def __call__(self, text: str, add_special_tokens: bool = False) -> SimpleNamespace:
        return SimpleNamespace(input_ids=_PIECE.findall(text))

    def decode(self, ids: list[str]) -> str:
        return "".join(ids).strip()


APPROX_TOKENIZER = ApproxTokenizer()


def approx_tokens(text: str) -> int:
    """About how many tokens ``text`` is (see ApproxTokenizer)."""
    return len(_PIECE.findall(text))
