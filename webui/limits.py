"""What the web server itself refuses before any handler runs: oversized request bodies and files given by URL."""

from __future__ import annotations

import json
import re
import secrets

import gradio as gr
from gradio_client import utils as client_utils

MAX_BODY_BYTES = 4 * 2**20  # a JSON request: 1 MB of text escapes to a few MB; uploads have their own limit
DELETE_CACHE = (1800, 3600)  # every 30 min, gradio's copies of uploads and results older than an hour go
URL_REFUSED = "Files are uploaded, not fetched from a URL: upload the file itself."
VISITOR_COOKIE = "lmdemo_visitor"
_VISITOR_ID = re.compile(r"[0-9a-f]{32}")


def visitor_id(cookies: dict | None) -> str | None:
    """The browser's visitor id from its cookie (a random secret set by :class:`VisitorCookie`), if well formed."""
    value = (cookies or {}).get(VISITOR_COOKIE)
    return value if isinstance(value, str) and _VISITOR_ID.fullmatch(value) else None


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
            return await _too_large(send, self.max_bytes)
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


async def _too_large(send, limit: int) -> None:
    body = json.dumps({"error": f"The request body is over {limit // 2**20} MB; send less text, or upload "
                                "files through the upload route."}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def local_files_only(component):
    """The component's file inputs must be uploads: a FileData naming a URL would make the server download it
    (no size limit applies to that), so it is refused. Bound on the instance: a subclass of a gradio component
    would make gradio write a .pyi stub beside this module."""
    move, async_move = component.move_resource_to_block_cache, component.async_move_resource_to_block_cache

    def refuse_urls(url_or_file_path):
        if url_or_file_path is not None and client_utils.is_http_url_like(str(url_or_file_path)):
            raise gr.Error(URL_REFUSED, print_exception=False)

    def checked(url_or_file_path):
        refuse_urls(url_or_file_path)
        return move(url_or_file_path)

    async def async_checked(url_or_file_path):
        refuse_urls(url_or_file_path)
        return await async_move(url_or_file_path)

    component.move_resource_to_block_cache = checked
    component.async_move_resource_to_block_cache = async_checked
    return component


def File(*args, **kwargs) -> gr.File:
    """gr.File that takes uploads only."""
    return local_files_only(gr.File(*args, **kwargs))


def Chatbot(*args, **kwargs) -> gr.Chatbot:
    """gr.Chatbot whose messages can carry uploaded files only."""
    return local_files_only(gr.Chatbot(*args, **kwargs))
