"""What the server refuses before a handler runs: files given by URL, oversized bodies; and the visitor cookie."""

import json
import socket
import threading
import uuid
from http.server import BaseHTTPRequestHandler, HTTPServer

import httpx
import pytest

from webui.limits import MAX_BODY_BYTES, URL_REFUSED, VISITOR_COOKIE


def _fn_index(app_url: str, api_name: str) -> int:
    config = httpx.get(f"{app_url}config", timeout=30).json()
    return next(i for i, d in enumerate(config["dependencies"]) if d.get("api_name") == api_name)


def _run_event(app_url: str, fn_index: int, data: list) -> dict:
    """Call an event as the page does (queue join, then read its event stream): the final message."""
    session = uuid.uuid4().hex[:10]
    joined = httpx.post(f"{app_url}gradio_api/queue/join", timeout=30,
                        json={"data": data, "fn_index": fn_index, "session_hash": session, "event_data": None,
                              "trigger_id": None})
    assert joined.status_code == 200, joined.text
    with httpx.stream("GET", f"{app_url}gradio_api/queue/data", params={"session_hash": session},
                      timeout=120) as stream:
        for line in stream.iter_lines():
            if line.startswith("data:"):
                message = json.loads(line[5:])
                if message.get("msg") == "process_completed":
                    return message
    raise AssertionError("the event never completed")


class _Recorder(BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self):  # noqa: N802
        _Recorder.hits.append(self.path)
        body = b"text\nfetched by the server\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def remote_file():
    server = HTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Recorder.hits = []
    yield f"http://127.0.0.1:{server.server_address[1]}/reviews.csv"
    server.shutdown()


def test_a_file_given_by_url_is_refused_unfetched(app_url, remote_file):
    """A FileData payload naming a URL would make the server download it, past the upload size limit."""
    fn = _fn_index(app_url, "ui_sentiment_batch")
    payload = {"path": remote_file, "url": remote_file, "orig_name": "reviews.csv",
               "meta": {"_type": "gradio.FileData"}}
    done = _run_event(app_url, fn, ["", payload, "sentiment (bundled MiniLM + LoRA)"])
    assert done["success"] is False, done
    assert URL_REFUSED in json.dumps(done["output"]), done
    assert _Recorder.hits == []
    # the same event with typed lines works: the refusal is about the URL, not the event
    done = _run_event(app_url, fn, ["Great value, works perfectly.", None, "sentiment (bundled MiniLM + LoRA)"])
    assert done["success"] is True, done


def test_a_chat_message_carrying_a_url_file_is_refused(app_url, remote_file):
    fn = _fn_index(app_url, "ui_chat")
    file_part = {"file": {"path": remote_file, "url": remote_file, "meta": {"_type": "gradio.FileData"}},
                 "alt_text": None}
    history = [{"role": "user", "content": [file_part], "metadata": None, "options": None}]
    done = _run_event(app_url, fn, [history, "chat", "smollm2-135m-instruct", "none", 8, 0.7, 0.9, 50, 1.1, 0, None])
    assert done["success"] is False and URL_REFUSED in json.dumps(done["output"]), done
    assert _Recorder.hits == []


def test_an_oversized_body_is_refused_before_any_handler(app_url):
    big = json.dumps({"data": ["x" * (MAX_BODY_BYTES + 1)], "fn_index": 0, "session_hash": "big"})
    r = httpx.post(f"{app_url}gradio_api/queue/join", content=big, headers={"content-type": "application/json"},
                   timeout=60)
    assert r.status_code == 413 and "request body is over" in r.json()["error"], r.text
    # without a Content-Length (chunked), reading stops at the limit
    host, port = app_url.split("//")[1].rstrip("/").split(":")
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        sock.sendall(b"POST /gradio_api/queue/join HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        chunk = b"x" * 2**20
        sent = 0
        try:
            while sent <= MAX_BODY_BYTES + 2**20:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
            sock.sendall(b"0\r\n\r\n")
            answer = sock.recv(4096)
        except OSError:  # the server hung up on the body: refused too
            answer = b""
    assert not answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert httpx.get(f"{app_url}config", timeout=30).status_code == 200  # and it serves the next request


def test_a_browser_gets_a_private_visitor_cookie_once(app_url):
    first = httpx.get(app_url, timeout=30)
    cookie = first.headers.get("set-cookie", "")
    assert cookie.startswith(f"{VISITOR_COOKIE}=") and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    value = cookie.split(";")[0].split("=", 1)[1]
    assert len(value) == 32 and int(value, 16) >= 0
    again = httpx.get(app_url, cookies={VISITOR_COOKIE: value}, timeout=30)
    assert "set-cookie" not in again.headers or VISITOR_COOKIE not in again.headers["set-cookie"]
    assert httpx.get(app_url, timeout=30).headers["set-cookie"] != cookie  # each browser its own
