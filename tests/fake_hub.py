"""A loopback stand-in for the parts of the Hub HTTP API that huggingface_hub uses to create a repo,
commit files and download a snapshot. It records every request so tests can check what was sent."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeHub:
    def __init__(self) -> None:
        self.repos: dict[str, dict] = {}  # repo_id -> {"type", "private", "files": {path: bytes}}
        self.requests: list[dict] = []  # method, path, authorization
        self.refuse_token: str | None = None  # answer 401 to requests carrying this token
        self.validated: list[dict] = []  # bodies sent to /api/validate-yaml
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def _send(self, status: int, body: bytes = b"", headers: dict | None = None, head: bool = False) -> None:
                self.send_response(status)
                for k, v in (headers or {"Content-Type": "application/json"}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def _json(self, status: int, payload) -> None:
                self._send(status, json.dumps(payload).encode())

            def _record(self) -> bytes:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                hub.requests.append({"method": self.command, "path": self.path,
                                     "authorization": self.headers.get("Authorization", "")})
                return body

            def _refused(self) -> bool:
                if hub.refuse_token and hub.refuse_token in self.headers.get("Authorization", ""):
                    self._json(401, {"error": "Invalid credentials in Authorization header"})
                    return True
                return False

            def do_POST(self) -> None:
                body = self._record()
                if self._refused():
                    return
                if self.path == "/api/repos/create":
                    req = json.loads(body)
                    repo_id = f"{req.get('organization')}/{req['name']}" if req.get("organization") else req["name"]
                    private = req.get("private", req.get("visibility", "public") == "private")
                    hub.repos.setdefault(repo_id, {"type": req.get("type", "model"), "private": private,
                                                   "files": {}})
                    return self._json(200, {"url": f"http://{self.headers['Host']}/{repo_id}"})
                if self.path == "/api/validate-yaml":  # the Hub checks a README's front matter before a commit
                    hub.validated.append(json.loads(body))
                    return self._json(200, {"errors": [], "warnings": []})
                m = re.fullmatch(r"/api/models/([^/]+/[^/]+)/preupload/([^/?]+)", self.path.split("?")[0])
                if m:
                    files = json.loads(body)["files"]
                    return self._json(200, {"files": [{"path": f["path"], "uploadMode": "regular",
                                                       "shouldIgnore": False} for f in files]})
                m = re.fullmatch(r"/api/models/([^/]+/[^/]+)/commit/([^/?]+)", self.path.split("?")[0])
                if m:
                    repo = hub.repos.setdefault(m.group(1), {"type": "model", "private": None, "files": {}})
                    for line in body.decode().splitlines():
                        item = json.loads(line)
                        if item.get("key") == "file":
                            repo["files"][item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                    return self._json(200, {"commitUrl": f"http://{self.headers['Host']}/{m.group(1)}/commit/1",
                                            "commitOid": hub.sha(m.group(1))})
                self._json(404, {"error": f"not handled: {self.path}"})

            def _get(self, head: bool) -> None:
                self._record()
                if self._refused():
                    return
                path = self.path.split("?")[0]
                m = re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/revision/([^/]+))?", path)
                if m:
                    if m.group(1) not in hub.repos:
                        return self._send(404, b'{"error": "Repository not found"}',
                                          {"Content-Type": "application/json", "X-Error-Code": "RepoNotFound"}, head)
                    return self._json(200, {"id": m.group(1), "sha": hub.sha(m.group(1)), "private": False,
                                            "siblings": [{"rfilename": p, "size": hub.repos[m.group(1)].get(
                                                "sizes", {}).get(p, len(data))}
                                                for p, data in hub.repos[m.group(1)]["files"].items()]})
                m = re.fullmatch(r"/api/models/([^/]+/[^/]+)/tree/([^/]+)", path)
                if m and m.group(1) in hub.repos:
                    return self._json(200, [{"type": "file", "path": p, "size": len(data),
                                             "oid": hashlib.sha1(data).hexdigest()}
                                            for p, data in hub.repos[m.group(1)]["files"].items()])
                m = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
                if m and m.group(1) in hub.repos and m.group(3) in hub.repos[m.group(1)]["files"]:
                    data = hub.repos[m.group(1)]["files"][m.group(3)]
                    return self._send(200, data, {"Content-Type": "application/octet-stream",
                                                  "X-Repo-Commit": hub.sha(m.group(1)),
                                                  "ETag": f'"{hashlib.sha256(data).hexdigest()}"'}, head)
                self._send(404, b'{"error": "Entry not found"}',
                           {"Content-Type": "application/json", "X-Error-Code": "EntryNotFound"}, head)

            def do_GET(self) -> None:
                self._get(head=False)

            def do_HEAD(self) -> None:
                self._get(head=True)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def sha(self, repo_id: str) -> str:
        files = self.repos.get(repo_id, {}).get("files", {})
        return hashlib.sha1(b"".join(k.encode() + v for k, v in sorted(files.items()))).hexdigest()

    def __enter__(self) -> "FakeHub":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
