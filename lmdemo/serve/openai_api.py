"""The OpenAI-compatible API: ``/v1/models``, ``/v1/chat/completions`` and ``/v1/completions``.

Served on the app's own port (``python app.py``) and alone (``python -m lmdemo serve --api-only``), so any
OpenAI client, Open WebUI or another lmdemo can use lmdemo's models. Each call is the generation job's request
(same defaults, same bounds), runs in the model slot the page's jobs hold (:mod:`lmdemo.serve.slots`), and on a
shared Space sees only the caller's own and the shared adapters (:mod:`lmdemo.serve.visitors`). Plain Starlette:
no gradio here.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from lmdemo.config import get_settings
from lmdemo.engine.streaming import GenerationParams
from lmdemo.errors import AdapterError, ConfigError, HubError, InputError, LmdemoError, ModelNotFoundError
from lmdemo.jobs.generation import GenerationRequest, GenerationResult, generate_stream
from lmdemo.serve import slots, visitors

log = logging.getLogger("lmdemo.openai")
MAX_MESSAGES = 256  # the job keeps the last 64 turns anyway; more is a malformed or hostile request
API_SESSION = "openai-api"  # the owner of a shared Space's API caller that sends no visitor cookie: owns nothing
_FINISH = {"eos": "stop", "stop_string": "stop", "stopped": "stop", "length": "length"}
# Features lmdemo's models do not have: refused by name rather than silently ignored.
_UNSUPPORTED = {"tools": None, "tool_choice": None, "functions": None, "function_call": None, "logprobs": False,
                "top_logprobs": None, "echo": False, "suffix": None, "best_of": 1, "audio": None,
                "prediction": None, "logit_bias": None}


class APIError(Exception):
    """An OpenAI-shaped error: HTTP status, type, the offending parameter and a code."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.kind, self.param, self.code = status, kind, param, code

    def response(self) -> JSONResponse:
        return JSONResponse({"error": {"message": str(self), "type": self.kind, "param": self.param,
                                       "code": self.code}}, status_code=self.status)


def _from_library(exc: BaseException) -> APIError:
    """A library error as the OpenAI error a client expects (the message is already one line for a user)."""
    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, slots.BusyError):
        return APIError(429, str(exc), "rate_limit_error", code="server_busy")
    if isinstance(exc, ModelNotFoundError):
        return APIError(404, str(exc), param="model", code="model_not_found")
    if isinstance(exc, HubError):
        return APIError(502, str(exc), "api_error", code="hub_error")
    if isinstance(exc, (InputError, ConfigError, AdapterError)):
        return APIError(400, str(exc), param=_param_named(str(exc)))
    if isinstance(exc, LmdemoError):
        return APIError(500, str(exc), "api_error")
    log.exception("unexpected error in the OpenAI API")
    return APIError(500, f"Internal error ({type(exc).__name__}); the server log has the details.", "api_error")


_PARAMS = {"max_new_tokens": "max_tokens", "temperature": "temperature", "top_p": "top_p", "seed": "seed",
           "stop": "stop", "prompt": "messages"}


def _param_named(message: str) -> str | None:
    """The request parameter a library message names in backticks (its OpenAI name)."""
    if "`" in message:
        name = message.split("`")[1]
        return _PARAMS.get(name, name)
    return None


# ---------------------------------------------------------------- callers

def _check_key(request: Request) -> None:
    key = get_settings().api_key
    if not key:
        return
    given = request.headers.get("authorization", "")
    token = given[7:].strip() if given.lower().startswith("bearer ") else ""
    if not secrets.compare_digest(token.encode(), key.encode()):
        raise APIError(401, "Invalid or missing API key: send it as `Authorization: Bearer <key>` (LMDEMO_API_KEY).",
                       "authentication_error", code="invalid_api_key")


def _owner(request: Request) -> str | None:
    """The caller's owner on a shared Space: its browser's visitor cookie if it sends one, else nobody's work."""
    if not get_settings().demo_mode:
        return None
    return visitors.owner(None, visitors.visitor_id(dict(request.cookies)), API_SESSION)


# ---------------------------------------------------------------- models

def model_list(owner: str | None) -> list[dict[str, Any]]:
    """The model ids a caller can use: the generative built-ins, the named remote engines, then its own and the
    shared LM adapters."""
    from lmdemo.models.adapters import list_adapters
    from lmdemo.models.registry import BUILTINS

    out = [{"id": name, "object": "model", "created": 0, "owned_by": "lmdemo"}
           for name, m in BUILTINS.items() if m.family in ("chat-lm", "base-lm")]
    demo = get_settings().demo_mode
    # The operator's named remote engines: lmdemo passes the call on, as a gateway (docs/remote.md).
    out += [{"id": name, "object": "model", "created": 0, "owned_by": "remote"} for name in get_settings().backends]
    for a in list_adapters("sft", owner=owner):
        out.append({"id": a.name, "object": "model", "created": int(a.path.stat().st_mtime),
                    "owned_by": "you" if demo and a.owned else "lmdemo" if a.bundled else "shared" if demo else "local",
                    "parent": a.base_model})
    return out


def _resolve(model: Any, owner: str | None) -> tuple[str, str | None]:
    """(base model, adapter folder) for a request's ``model``: a listed id, or a Hub id / folder where allowed."""
    from lmdemo.models.adapters import resolve_pick

    if not isinstance(model, str) or not model.strip():
        raise APIError(400, "`model` is required: GET /v1/models lists the ids.", param="model")
    name = visitors.named(model)
    if name not in {m["id"] for m in model_list(owner)} and "/" not in name:
        raise APIError(404, f"The model `{name}` does not exist here: GET /v1/models lists the ids.", param="model",
                       code="model_not_found")
    base, adapter = resolve_pick(name, owner)
    return base or name, adapter


# ---------------------------------------------------------------- requests

def _number(value: Any, name: str, kind: type, default: Any, low: float, high: float) -> Any:
    """A request's number ``name`` checked against its type and range; ``default`` when absent."""
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and value != int(value)):
        raise APIError(400, f"`{name}` must be {'an integer' if kind is int else 'a number'}; got {value!r}.",
                       param=name)
    if not low <= value <= high:
        raise APIError(400, f"`{name}` must be between {low:g} and {high:g}; got {value!r}.", param=name)
    return kind(value)


def _params(body: dict) -> tuple[GenerationParams, list[str]]:
    """Sampling settings and stop strings; absent ones take the generation job's defaults."""
    for name, neutral in _UNSUPPORTED.items():
        if body.get(name) not in (None, neutral, [], {}):
            raise APIError(400, f"`{name}` is not supported by lmdemo's models.", param=name, code="unsupported")
    if body.get("n") not in (None, 1):
        raise APIError(400, "`n` must be 1: lmdemo returns one choice.", param="n")
    d = GenerationParams()
    max_tokens = _number(body.get("max_completion_tokens", body.get("max_tokens")), "max_tokens", int,
                         d.max_new_tokens, 1, GenerationParams._RANGES["max_new_tokens"][1])
    temperature = _number(body.get("temperature"), "temperature", float, d.temperature, 0, 2)
    top_p = _number(body.get("top_p"), "top_p", float, d.top_p, 0, 1)
    if top_p == 0:
        raise APIError(400, "`top_p` must be above 0.", param="top_p")
    params = GenerationParams(max_new_tokens=max_tokens, temperature=temperature, top_p=top_p,
                              seed=_number(body.get("seed"), "seed", int, d.seed, 0, 2**32 - 1),
                              top_k=d.top_k, repetition_penalty=d.repetition_penalty)
    stop = body.get("stop")
    stop = [] if stop is None else [stop] if isinstance(stop, str) else stop
    if not isinstance(stop, list):
        raise APIError(400, "`stop` must be a string or a list of strings.", param="stop")
    return params, stop


def _text_of(content: Any, where: str) -> str:
    """A message's text: a string, or OpenAI's list of text parts (images and audio are refused)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) for p in content):
        if any(p.get("type") != "text" or not isinstance(p.get("text"), str) for p in content):
            raise APIError(400, f"{where}: only text parts are supported.", param="messages")
        return "".join(p["text"] for p in content)
    raise APIError(400, f"{where}: `content` must be text.", param="messages")


def chat_request(body: dict, owner: str | None) -> GenerationRequest:
    """The generation job's chat request for a /v1/chat/completions body."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise APIError(400, "`messages` must be a non-empty list of {role, content}.", param="messages")
    if len(messages) > MAX_MESSAGES:
        raise APIError(400, f"`messages` has {len(messages)} entries; at most {MAX_MESSAGES}.", param="messages")
    system, turns = [], []
    for n, m in enumerate(messages):
        role = m.get("role") if isinstance(m, dict) else None
        if role not in ("system", "developer", "user", "assistant"):
            raise APIError(400, f"messages[{n}]: `role` must be system, user or assistant; got {role!r}.",
                           param="messages")
        content = _text_of(m.get("content"), f"messages[{n}]")
        if role in ("system", "developer"):
            system.append(content)
        else:
            turns.append({"role": role, "content": content})
    if not turns or turns[-1]["role"] != "user":
        raise APIError(400, "The last message must be the user's.", param="messages")
    params, stop = _params(body)
    model, adapter = _resolve(body.get("model"), owner)
    return GenerationRequest(turns[-1]["content"], mode="chat", model=model, adapter=adapter, params=params,
                             history=turns[:-1], system_prompt="\n\n".join(system) or None, stop=stop)


def completion_request(body: dict, owner: str | None) -> GenerationRequest:
    """The generation job's completion request for a /v1/completions body."""
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise APIError(400, "`prompt` must be one string.", param="prompt")
    params, stop = _params(body)
    model, adapter = _resolve(body.get("model"), owner)
    return GenerationRequest(prompt, mode="completion", model=model, adapter=adapter, params=params, stop=stop)


# ---------------------------------------------------------------- running

async def _events(req: GenerationRequest, gone: threading.Event) -> AsyncIterator[GenerationResult]:
    """The job's growing results, produced on a thread that holds the model slot; ``gone`` (the caller left)
    stops the model at its next token."""
    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue = asyncio.Queue()

    def put(item) -> None:
        try:
            loop.call_soon_threadsafe(inbox.put_nowait, item)
        except RuntimeError:  # the server is shutting down
            gone.set()

    def produce() -> None:
        try:
            with slots.CAUSAL_LM.hold(gone):
                for result in generate_stream(req, stop=gone):
                    put(("result", result))
        except BaseException as exc:  # handed to the caller
            put(("error", exc))
        finally:
            put(("end", None))

    slots.CAUSAL_LM.check_line()  # a full line answers 429 before any stream starts
    threading.Thread(target=produce, daemon=True, name="lmdemo-openai").start()
    try:
        while True:
            kind, value = await inbox.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        gone.set()  # a client that went away (or any early exit) ends the model's work too


def _usage(stats) -> dict[str, int]:
    return {"prompt_tokens": stats.prompt_tokens, "completion_tokens": stats.tokens,
            "total_tokens": stats.prompt_tokens + stats.tokens}


@dataclass
class _Reply:
    """How one endpoint names its objects and puts text into a choice."""

    object: str
    chunk_object: str
    prefix: str
    whole: Callable[[str], dict]
    delta: Callable[[str, bool], dict]


_CHAT = _Reply("chat.completion", "chat.completion.chunk", "chatcmpl",
               lambda text: {"message": {"role": "assistant", "content": text}},
               lambda text, first: {"delta": ({"role": "assistant", "content": text} if first else {"content": text})})
_COMPLETION = _Reply("text_completion", "text_completion", "cmpl",
                     lambda text: {"text": text, "logprobs": None}, lambda text, first: {"text": text, "logprobs": None})


async def _answer(request: Request, build: Callable[[dict, str | None], GenerationRequest], shape: _Reply) -> Response:
    try:
        _check_key(request)
        try:
            body = json.loads(await request.body() or b"null")
        except (ValueError, UnicodeDecodeError):
            raise APIError(400, "The request body is not valid JSON.") from None
        if not isinstance(body, dict):
            raise APIError(400, "The request body must be a JSON object.")
        req = build(body, _owner(request))
        stream = body.get("stream", False)
        if not isinstance(stream, bool):
            raise APIError(400, "`stream` must be true or false.", param="stream")
        options = body.get("stream_options") or {}
        if not isinstance(options, dict):
            raise APIError(400, "`stream_options` must be an object.", param="stream_options")
        model = body["model"]
        head = {"id": f"{shape.prefix}-{secrets.token_hex(12)}", "created": int(time.time()), "model": model}
        gone = threading.Event()
        if stream:
            events = _events(req, gone)
            first = await _first(events)  # errors before the first token still get a status code
            return StreamingResponse(_sse(first, events, req, shape, head, bool(options.get("include_usage"))),
                                     media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        last = None
        async for last in _events(req, gone):
            pass
        if last is None:
            raise APIError(500, "The model produced no reply.", "api_error")
        choice = dict(index=0, **shape.whole(last.text), finish_reason=_FINISH.get(last.stats.finish_reason, "stop"))
        return JSONResponse(dict(head, object=shape.object, choices=[choice], usage=_usage(last.stats),
                                 system_fingerprint=last.stats.backend))
    except BaseException as exc:  # noqa: BLE001 - every failure is answered in OpenAI's shape
        if isinstance(exc, (asyncio.CancelledError, KeyboardInterrupt, SystemExit)):
            raise
        return _from_library(exc).response()


async def _first(events: AsyncIterator[GenerationResult]) -> GenerationResult | None:
    try:
        return await events.__anext__()
    except StopAsyncIteration:
        return None


async def _sse(first: GenerationResult | None, events: AsyncIterator[GenerationResult], req: GenerationRequest,
               shape: _Reply, head: dict, include_usage: bool) -> AsyncIterator[str]:
    """Server-sent events: the text in deltas, a last chunk with the finish reason, usage if asked, [DONE].

    With stop strings, the last few characters wait until the next piece shows they do not begin a stop string
    (the job cuts the text before one, so a sent delta could otherwise need taking back)."""
    hold = max((len(s) for s in req.stop), default=1) - 1
    sent, last, started = 0, first, False

    def chunk(choices: list[dict], usage: dict | None = None) -> str:
        data = dict(head, object=shape.chunk_object, choices=choices, system_fingerprint=last.stats.backend
                    if last else None)
        if include_usage:
            data["usage"] = usage
        return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"

    async def results() -> AsyncIterator[GenerationResult]:
        if first is not None:
            yield first
        async for result in events:
            yield result

    try:
        async for last in results():
            upto = len(last.text) - hold if last.stats.finish_reason == "running" else len(last.text)
            if upto > sent or not started:
                yield chunk([dict(index=0, **shape.delta(last.text[sent:max(upto, sent)], not started),
                                  finish_reason=None)])
                sent, started = max(upto, sent), True
    except Exception as exc:  # noqa: BLE001 - after the first byte the status is sent: the error goes in the stream
        error = _from_library(exc)
        yield f"data: {json.dumps({'error': {'message': str(error), 'type': error.kind, 'code': error.code}})}\n\n"
        yield "data: [DONE]\n\n"
        return
    text = last.text if last else ""
    finish = _FINISH.get(last.stats.finish_reason, "stop") if last else "stop"
    rest = shape.delta(text[sent:], not started) if len(text) > sent or not started else \
        ({"delta": {}} if shape is _CHAT else shape.delta("", False))
    yield chunk([dict(index=0, **rest, finish_reason=finish)])
    if include_usage and last is not None:
        yield chunk([], _usage(last.stats))
    yield "data: [DONE]\n\n"


async def chat_completions(request: Request) -> Response:
    return await _answer(request, chat_request, _CHAT)


async def completions(request: Request) -> Response:
    return await _answer(request, completion_request, _COMPLETION)


async def models(request: Request) -> Response:
    try:
        _check_key(request)
        return JSONResponse({"object": "list", "data": model_list(_owner(request))})
    except Exception as exc:  # noqa: BLE001
        return _from_library(exc).response()


async def model(request: Request) -> Response:
    try:
        _check_key(request)
        name = request.path_params["name"]
        for m in model_list(_owner(request)):
            if m["id"] == name:
                return JSONResponse(m)
        raise APIError(404, f"The model `{name}` does not exist here: GET /v1/models lists the ids.", param="model",
                       code="model_not_found")
    except Exception as exc:  # noqa: BLE001
        return _from_library(exc).response()


async def not_found(request: Request) -> Response:
    return APIError(404, f"Unknown endpoint {request.method} {request.url.path}: lmdemo serves /v1/models, "
                         "/v1/chat/completions and /v1/completions.", code="unknown_url").response()


def routes() -> list[Route]:
    """The /v1 routes, for the gradio app (same port) and the API-only server."""
    return [Route("/v1/models", models, methods=["GET"]),
            Route("/v1/models/{name:path}", model, methods=["GET"]),
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/v1/completions", completions, methods=["POST"]),
            Route("/v1/{rest:path}", not_found, methods=["GET", "POST", "PUT", "DELETE"])]


def app() -> Starlette:
    """The API alone (``lmdemo serve --api-only``): the routes behind the same body limit as the app."""
    return Starlette(routes=routes(), middleware=[Middleware(visitors.BodyLimit)])


def serve(host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run the API-only server until interrupted."""
    import uvicorn

    log.info("OpenAI-compatible API on http://%s:%d/v1", host, port)
    uvicorn.run(app(), host=host, port=port, log_level="info")

