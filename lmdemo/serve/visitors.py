"""Who is calling a shared app, for every face that serves one (the gradio page, its API, the OpenAI API).

On a shared Space (demo mode) every visitor is an owner: the signed-in Hugging Face user, else the browser
(a random id in an HttpOnly cookie, so a reload keeps one's work), else the page session. Adapters, training
runs, results and scratch files belong to it. On one's own machine there are no visitors: the operator
(owner None) sees and owns everything. Plain ASGI, so the API-only server needs no gradio.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from pathlib import Path

from lmdemo.config import get_settings
from lmdemo.errors import InputError

MAX_BODY_BYTES = 4 * 2**20  # a JSON request: 1 MB of text escapes to a few MB; uploads have their own limit
VISITOR_COOKIE = "lmdemo_visitor"
_VISITOR_ID = re.compile(r"[0-9a-f]{32}")


def visitor_id(cookies: dict | None) -> str | None:
    """The browser's visitor id from its cookie (a random secret set by :class:`VisitorCookie`), if well formed."""
    value = (cookies or {}).get(VISITOR_COOKIE)
    return value if isinstance(value, str) and _VISITOR_ID.fullmatch(value) else None


def owner(user: str | None, browser: str | None, session: str | None) -> str | None:
    """The caller's owner id (a hash: it names folders and is never shown), or None outside demo mode."""
    if not get_settings().demo_mode:
        return None
    if not (user or browser or session):
        raise InputError("This shared app needs a browser or API session to keep your work apart; reload the page.")
    who = f"user:{user}" if user else f"browser:{browser}" if browser else f"session:{session}"
    return hashlib.sha256(who.encode()).hexdigest()[:24]


def _looks_like_path(value: str) -> bool:
    return value.startswith(("/", "~", ".", "\\")) or "\\" in value or value.count("/") > 1 \
        or Path(value).expanduser().exists()


def named(value: str | None, what: str = "model and adapter names") -> str:
    """The typed value; on a shared Space a visitor names things, and paths on the server are refused."""
    value = str(value or "").strip()
    if value and get_settings().demo_mode and _looks_like_path(value):
        raise InputError(f"This shared app takes {what}, not paths on the server.")
    return value


class VisitorCookie:
    """ASGI middleware: a browser without a visitor id gets one, so its work stays its own across reloads.

    HttpOnly, and Partitioned + SameSite=None over https: a Space shows the app in a huggingface.co iframe.
    A browser that refuses the cookie is still a visitor, for one page load (its gradio session).
    """

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or _has_cookie(scope):
            return await self.app(scope, receive, send)
        secure = scope.get("scheme") == "https" or dict(scope.get("headers") or []).get(b"x-forwarded-proto") == b"https"
        cookie = f"{VISITOR_COOKIE}={secrets.token_hex(16)}; Path=/; HttpOnly; Max-Age=2592000; " + (
            "SameSite=None; Secure; Partitioned" if secure else "SameSite=Lax")

        async def with_cookie(message):
            if message["type"] == "http.response.start":
                message = dict(message, headers=[*message.get("headers", []), (b"set-cookie", cookie.encode())])
            await send(message)

        return await self.app(scope, receive, with_cookie)


def _has_cookie(scope) -> bool:
    raw = b"; ".join(v for k, v in scope.get("headers") or [] if k == b"cookie").decode("latin-1")
    return any(part.strip().startswith(f"{VISITOR_COOKIE}=") for part in raw.split(";"))


class BodyLimit:
    """ASGI middleware: a request body over ``max_bytes`` gets 413 (by its Content-Length, or cut off while
    streaming). The upload route is left to gradio's ``max_file_size``, which it checks while streaming too."""

    def __init__(self, app, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("path", "").rstrip("/").endswith("/upload"):
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            return await _too_large(send, self.max_bytes, scope.get("path", ""))
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:  # a chunked body with no length: stop reading it
                    return {"type": "http.disconnect"}
            return message

        return await self.app(scope, counted, send)


async def _too_large(send, limit: int, path: str) -> None:
    message = (f"The request body is over {limit // 2**20} MB; send less text, or upload files through the "
               "upload route.")
    # The OpenAI routes answer in OpenAI's error shape, which its clients read.
    error = {"message": message, "type": "invalid_request_error", "param": None, "code": "request_too_large"} \
        if path.startswith("/v1/") else message
    body = json.dumps({"error": error}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
