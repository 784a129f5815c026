"""Concurrency and soak: N gradio_client users against the app on loopback for a bounded time.

The app runs in its own process (so its RSS is its own). After a warm-up call per endpoint, each user loops
over short /generate, /sentiment and /translate calls until the time is up (on a slow machine, longer, until
--min-requests are done, at most --max-seconds). Printed: failed requests,
p50/p95 latency per endpoint, throughput, the server's RSS after 50 and after 300 requests, and a session
isolation check: two clients chatting through the Generate tab's own events (each its own session) never see
each other's history, and one session's Stop does not stop the other's reply.

    python bench/soak.py [--users 8] [--seconds 120] [--json-out RESULT.json]

Exits 1 when a check fails. Loopback only; every request has a timeout.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
from _common import print_json, print_table  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RSS_AT = (50, 300)  # requests after which the server's RSS is sampled
RSS_TOLERANCE = 0.10
SERVE = "from webui.app import launch; launch(port={port}, host='127.0.0.1', warm=False)"

# Short jobs, so one request is seconds, not minutes: the point is many requests, not long ones.
PROMPTS = ["Name a colour.", "Say hello in French.", "What is 2 + 2?", "Name a fruit.", "Give one word for happy."]
REVIEWS = ["The battery lasts all day.", "It broke after a week.", "Friendly staff and quick service.",
           "The food was cold.", "Great value for money.", "I want a refund."]
SENTENCES = ["Good morning.", "Where is the station?", "I like green tea.", "The shop opens at nine."]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve(log_path: Path, env: dict[str, str] | None = None, start_timeout: float = 300):
    """Start the app in a subprocess on a free loopback port; yield (url, process); stop it afterwards."""
    import httpx

    port = free_port()
    full_env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT), **(env or {}))
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-c", SERVE.format(port=port)], cwd=ROOT, env=full_env,
                                stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}/"
        try:
            deadline = time.monotonic() + start_timeout
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"the app exited with {proc.returncode}; see {log_path}")
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(url, timeout=5).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the app did not answer within {start_timeout:.0f} s; see {log_path}")
                time.sleep(1)
            yield url, proc
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def rss_mb(pid: int) -> float:
    import psutil

    return psutil.Process(pid).memory_info().rss / 2**20


def job(kind: str, i: int) -> dict:
    """The i-th request of a kind: keyword arguments for Client.predict."""
    if kind == "generate":
        return dict(prompt=PROMPTS[i % len(PROMPTS)], max_new_tokens=10, temperature=0, api_name="/generate")
    if kind == "sentiment":
        return dict(text=REVIEWS[i % len(REVIEWS)], api_name="/sentiment")
    return dict(text=SENTENCES[i % len(SENTENCES)], source="en", target="fr", api_name="/translate")


KINDS = ("generate", "sentiment", "translate")
# Each user cycles through this mix: the two model-bound jobs share one queue (one at a time on 2 cores),
# so a second sentiment call per cycle keeps the encoder busy while that queue drains.
MIX = ("generate", "sentiment", "translate", "sentiment")


def check_result(kind: str, out) -> None:
    """A wrong-shaped or empty answer counts as a failure, not only an exception."""
    key = {"generate": "text", "sentiment": "label", "translate": "translation"}[kind]
    if not isinstance(out, dict) or not str(out.get(key, "")).strip():
        raise ValueError(f"bad {kind} result: {out!r}")


class Soak:
    def __init__(self, url: str, pid: int, users: int, seconds: float, timeout: float, min_requests: int = 0,
                 max_seconds: float | None = None):
        self.url, self.pid, self.users, self.seconds, self.timeout = url, pid, users, seconds, timeout
        self.min_requests = min_requests
        self.max_seconds = max(seconds, max_seconds or seconds)
        self.lock = threading.Lock()
        self.samples: list[tuple[str, float, bool, str]] = []  # kind, seconds, ok, error
        self.rss: dict[int, float] = {}

    def record(self, kind: str, seconds: float, ok: bool, error: str = "") -> None:
        with self.lock:
            self.samples.append((kind, seconds, ok, error))
            n = len(self.samples)
        if n in RSS_AT:  # sampled outside the lock; the count is exact because each n is reached once
            self.rss[n] = rss_mb(self.pid)

    def going(self, deadline: float, hard_deadline: float) -> bool:
        """Until the planned time is up and, on a slower machine, until min_requests are done (within the cap)."""
        now = time.monotonic()
        with self.lock:
            short = len(self.samples) < self.min_requests
        return now < deadline or (short and now < hard_deadline)

    def user(self, index: int, deadline: float, hard_deadline: float) -> None:
        from gradio_client import Client

        client = Client(self.url, verbose=False)  # one session per user
        i = index
        while self.going(deadline, hard_deadline):
            kind = MIX[i % len(MIX)]
            start = time.perf_counter()
            try:
                out = client.submit(**job(kind, i // len(MIX))).result(timeout=self.timeout)
                check_result(kind, out)
                self.record(kind, time.perf_counter() - start, True)
            except Exception as exc:  # noqa: BLE001 - every failure is counted and shown
                self.record(kind, time.perf_counter() - start, False, f"{type(exc).__name__}: {exc}"[:200])
            i += 1

    def run(self) -> float:
        start = time.monotonic()
        deadline, hard_deadline = start + self.seconds, start + self.max_seconds
        threads = [threading.Thread(target=self.user, args=(u, deadline, hard_deadline), daemon=True)
                   for u in range(self.users)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(self.max_seconds + self.timeout + 30)
        return time.monotonic() - start


def percentile(values: list[float], q: float) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def isolation_check(url: str, timeout: float) -> dict:
    """Two sessions chat through the page's own events; histories and Stop stay per session."""
    import re

    from gradio_client import Client

    alice, bob = Client(url, verbose=False), Client(url, verbose=False)  # two sessions, like two browser tabs

    def chat(client, history, max_new_tokens=48):
        # the Generate tab's inputs after the history: mode, model, quantize, max_new, T, top-p, top-k, rep., seed
        return client.submit(history, "chat", "", "none", max_new_tokens, 0.7, 0.9, 50, 1.1, 1, api_name="/ui_chat")

    def tokens(stats: str) -> int:
        found = re.search(r"\*\*(\d+)\*\* tokens", stats or "")
        return int(found.group(1)) if found else 0

    def streaming(j) -> None:
        deadline = time.monotonic() + timeout
        while not j.outputs() and not j.done() and time.monotonic() < deadline:
            time.sleep(0.05)

    def msg(role, content):  # the Chatbot's message format: typed content parts
        return {"role": role, "content": [{"type": "text", "text": content}]}

    def plain(message) -> str:
        content = message["content"]
        return content if isinstance(content, str) else "".join(str(part.get("text", "")) for part in content)

    def turns(name):
        return [msg("user", f"My name is {name}."), msg("assistant", f"Nice to meet you, {name}."),
                msg("user", "What is my name? Answer in one sentence.")]

    # 1. Different histories at the same time: each reply's conversation is its own, the other name never in it.
    a_job, b_job = chat(alice, turns("Alice")), chat(bob, turns("Bob"))
    (a_hist, _), (b_hist, _) = a_job.result(timeout=timeout), b_job.result(timeout=timeout)
    text = lambda h: " ".join(plain(m) for m in h)  # noqa: E731
    histories_own = ([plain(m) for m in a_hist[:3]] == [plain(t) for t in turns("Alice")]
                     and [plain(m) for m in b_hist[:3]] == [plain(t) for t in turns("Bob")]
                     and len(a_hist) == len(b_hist) == 4 and "Bob" not in text(a_hist) and "Alice" not in text(b_hist))
    # 2. Bob presses Stop while Alice's reply streams: Alice's reply runs to its end.
    a_job = chat(alice, [msg("user", "Tell me a story about a lighthouse keeper.")], 96)
    streaming(a_job)
    bob.predict(api_name="/ui_stop_chat")
    _, a_stats = a_job.result(timeout=timeout)
    # 3. Control: Alice's own Stop ends Alice's reply early, so check 2 can fail.
    a_long = chat(alice, [msg("user", "Count from one to three hundred in words.")], 600)
    streaming(a_long)
    alice.predict(api_name="/ui_stop_chat")
    stopped_at = time.monotonic()
    with contextlib.suppress(Exception):  # a cancelled event may end without a final value
        a_long.result(timeout=timeout)
    long_stats = a_long.outputs()[-1][1] if a_long.outputs() else ""
    result = {
        "histories_own": histories_own,
        "other_stop_ignored": a_stats.rstrip().endswith(("length", "eos")) and tokens(a_stats) > 0,
        "own_stop_works": tokens(long_stats) < 600 and time.monotonic() - stopped_at < 30,
        "alice_reply_finish": a_stats.rsplit("·", 1)[-1].strip(), "alice_stopped_after_tokens": tokens(long_stats),
    }
    result["ok"] = all(v for v in result.values() if isinstance(v, bool))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--timeout", type=float, default=120, help="per request, seconds")
    parser.add_argument("--json-out", help="also write the result JSON here")
    parser.add_argument("--log", default=None, help="server log file (default: a temporary file)")
    parser.add_argument("--min-requests", type=int, default=RSS_AT[1],
                        help="keep going past --seconds until this many requests are done (the RSS check needs "
                             f"{RSS_AT[1]}), at most --max-seconds")
    parser.add_argument("--max-seconds", type=float, default=420)
    args = parser.parse_args(argv)
    import tempfile

    log_path = Path(args.log or tempfile.mkstemp(prefix="lmdemo-soak-", suffix=".log")[1])
    with serve(log_path) as (url, proc):
        from gradio_client import Client

        warm = Client(url, verbose=False)
        t0 = time.perf_counter()
        for kind in KINDS:  # model loads happen here, not inside the measured latencies
            check_result(kind, warm.predict(**job(kind, 0)))
        warm_up = time.perf_counter() - t0
        isolation = isolation_check(url, args.timeout)
        soak = Soak(url, proc.pid, args.users, args.seconds, args.timeout, args.min_requests, args.max_seconds)
        elapsed = soak.run()
        rss_end = rss_mb(proc.pid)
        alive = proc.poll() is None

    samples = soak.samples
    failures = [s for s in samples if not s[2]]
    per_kind = {}
    for kind in KINDS:
        lat = [s[1] for s in samples if s[0] == kind and s[2]]
        per_kind[kind] = {"n": sum(1 for s in samples if s[0] == kind), "p50": round(percentile(lat, 50), 3) if lat else None,
                          "p95": round(percentile(lat, 95), 3) if lat else None, "max": round(max(lat), 3) if lat else None}
    rss = {str(n): round(v, 1) for n, v in sorted(soak.rss.items())}
    growth = (soak.rss[300] - soak.rss[50]) / soak.rss[50] if 50 in soak.rss and 300 in soak.rss else None
    result = {
        "users": args.users, "seconds": round(elapsed, 1), "requests": len(samples), "failed": len(failures),
        "throughput_rps": round(len(samples) / elapsed, 2), "endpoints": per_kind, "rss_mb": rss,
        "rss_end_mb": round(rss_end, 1), "rss_growth_50_to_300": None if growth is None else round(growth, 4),
        "warm_up_seconds": round(warm_up, 1), "isolation": isolation, "server_alive": alive,
        "errors": sorted({s[3] for s in failures})[:5], "cpus": os.cpu_count(), "log": str(log_path),
    }
    checks = {
        "0 failed requests": not failures,
        f"at least {RSS_AT[1]} requests": len(samples) >= RSS_AT[1],
        f"RSS after {RSS_AT[1]} within {RSS_TOLERANCE:.0%} of after {RSS_AT[0]}": growth is not None
        and abs(growth) <= RSS_TOLERANCE,
        "sessions isolated": isolation["ok"],
        "server still up": alive,
    }
    result["checks"] = checks

    print_table(f"soak: {args.users} users, {elapsed:.0f} s, {len(samples)} requests, "
                f"{result['throughput_rps']} req/s", ["endpoint", "requests", "p50 s", "p95 s", "max s"],
                [[f"/{k}", v["n"], v["p50"], v["p95"], v["max"]] for k, v in per_kind.items()])
    print_table("checks", ["check", "result"], [[name, "pass" if ok else "FAIL"] for name, ok in checks.items()])
    print(f"\nserver RSS: {rss} MB (end {rss_end:.1f} MB); warm-up {warm_up:.1f} s; isolation {isolation}")
    if failures:
        print("errors:", *result["errors"], sep="\n  ")
    print_json("soak", result)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result, indent=2))
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
