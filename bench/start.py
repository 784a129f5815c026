"""App start to first answer: `python app.py` in a fresh process until `gradio_client` gets a reply.

For each run a new LMDEMO_HOME is made holding only the already-downloaded model wheels (copied before the
clock starts), then:

- cold: the app starts on it, so it converts the three built-ins (GGUF -> safetensors) before it can
  answer; network time is left out (the wheels are there) and the OS file cache cannot be dropped in this
  container (no root), so the wheels are read from memory;
- warm: the app starts again on the same, now converted, home: a second and later start.

Three times are taken from the process start: the page answers HTTP, the first /generate reply (chat,
greedy, 8 new tokens) and the first /sentiment reply after it. Cold and warm alternate run by run.

    python bench/start.py [--runs 5] [--cold-runs N] [--quick]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
from _common import print_json, print_table, summarise  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_once(home: Path, log: Path) -> dict[str, float]:
    from gradio_client import Client

    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    env = dict(os.environ, LMDEMO_HOME=str(home), HF_HUB_OFFLINE="1", GRADIO_SERVER_PORT=str(port),
               GRADIO_ANALYTICS_ENABLED="False", PYTHONPATH=str(ROOT))
    with open(log, "a") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err)
        try:
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"app.py exited with {proc.returncode}; see {log}")
                try:
                    urllib.request.urlopen(url, timeout=2).read()
                    break
                except OSError:
                    time.sleep(0.05)
            page = time.perf_counter() - t0
            client = Client(url, verbose=False)
            reply = client.predict(prompt="What is the capital of France?", temperature=0, max_new_tokens=8,
                                   api_name="/generate")
            generate = time.perf_counter() - t0
            client.predict(text="I loved it", api_name="/sentiment")
            sentiment = time.perf_counter() - t0
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    if not reply.get("text"):
        raise RuntimeError(f"empty reply {reply!r}")
    return {"page": page, "generate": generate, "sentiment": sentiment}


def main() -> None:
    from lmdemo.config import get_settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="warm starts")
    parser.add_argument("--cold-runs", type=int, default=None, help="cold starts (default: --runs); each converts ~2 min")
    parser.add_argument("--quick", action="store_true", help="2 warm starts, 1 cold")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.cold_runs = 2, 1
    cold_runs = args.runs if args.cold_runs is None else args.cold_runs
    downloads = get_settings().downloads_dir
    if not any(downloads.glob("*/*.whl")):
        raise SystemExit(f"no downloaded wheels in {downloads}: run `python -m lmdemo models prepare` once")
    samples: dict[str, dict[str, list[float]]] = {"cold": {}, "warm": {}}
    log = Path(tempfile.gettempdir()) / "lmdemo-bench-start.log"
    with tempfile.TemporaryDirectory() as scratch:
        home = Path(scratch) / "home"
        for i in range(max(args.runs, cold_runs)):
            if i < cold_runs:
                shutil.rmtree(home, ignore_errors=True)
                shutil.copytree(downloads, home / "downloads")
                for key, value in start_once(home, log).items():
                    samples["cold"].setdefault(key, []).append(value)
            if i < args.runs:
                # Warm: the home the cold start just converted, or the configured one when no cold runs.
                warm_home = home if cold_runs else get_settings().home
                for key, value in start_once(warm_home, log).items():
                    samples["warm"].setdefault(key, []).append(value)
    rows, results = [], {}
    for kind, by_key in samples.items():
        if not by_key:
            continue
        results[kind] = {key: summarise(values) for key, values in by_key.items()}
        r = results[kind]
        fmt = lambda s: f"{s['median']:.1f} ({s['min']:.1f}-{s['max']:.1f})"  # noqa: E731
        rows.append([kind, str(r["page"]["n"]), fmt(r["page"]), fmt(r["generate"]), fmt(r["sentiment"])])
    print_table("App start, seconds from `python app.py` to ..., median (min-max)",
                ["start", "runs", "page answers", "first /generate reply", "first /sentiment reply"], rows)
    warm = results.get("warm", {}).get("generate", {}).get("median")
    print_json("start", {"results": results, "warm_under_10s": warm is not None and warm < 10})


if __name__ == "__main__":
    main()
