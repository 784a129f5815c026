"""Shared-Space soak: 2 visitors train and evaluate while 6 others chat, against the app in demo mode.

Each visitor is its own gradio_client session. The two trainers take turns in the app's one training slot
(a start while the other's run holds it is refused with "busy", and retried: not a failure), each trains a
small classifier, evaluates it against the default and removes it. Meanwhile 6 chatters loop short /generate
calls. Printed: failures (must be 0), chat latencies, how long each trainer waited and trained, and what each
trainer saw of the other (must be nothing: no foreign run name in its status, no foreign adapter in its list).

    python bench/soak_visitors.py [--chatters 6] [--json-out RESULT.json]

Exits 1 when a check fails. Loopback only; every request has a timeout.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
from _common import print_json, print_table  # noqa: E402
from soak import PROMPTS, percentile, serve  # noqa: E402


class VisitorSoak:
    def __init__(self, url: str, chatters: int, timeout: float, max_seconds: float) -> None:
        self.url, self.chatters, self.timeout, self.max_seconds = url, chatters, timeout, max_seconds
        self.lock = threading.Lock()
        self.failures: list[str] = []
        self.chat_latency: list[float] = []
        self.trainers: dict[str, dict] = {}
        self.done = threading.Event()

    def fail(self, who: str, error: str) -> None:
        with self.lock:
            self.failures.append(f"{who}: {error}"[:300])

    def chatter(self, index: int) -> None:
        from gradio_client import Client

        client = Client(self.url, verbose=False)
        i = index
        while not self.done.is_set():
            start = time.perf_counter()
            try:
                out = client.submit(prompt=PROMPTS[i % len(PROMPTS)], max_new_tokens=12, temperature=0,
                                    api_name="/generate").result(timeout=self.timeout)
                if not str(out.get("text", "")).strip():
                    raise ValueError(f"empty reply: {out!r}")
                with self.lock:
                    self.chat_latency.append(time.perf_counter() - start)
            except Exception as exc:  # noqa: BLE001 - every failure is counted
                self.fail(f"chatter {index}", f"{type(exc).__name__}: {exc}")
            i += 1

    def trainer(self, index: int, names: list[str]) -> None:
        from gradio_client import Client

        name, others = names[index], [n for i, n in enumerate(names) if i != index]
        who = f"trainer {index}"
        record = {"name": name, "refused_busy": 0, "saw_other": [], "wait_s": 0.0, "train_s": 0.0}
        with self.lock:
            self.trainers[name] = record
        client = Client(self.url, verbose=False)
        deadline = time.monotonic() + self.max_seconds

        def status() -> dict:
            st = client.predict(api_name="/finetune_status")
            seen = json.dumps(st)
            for other in others:
                if other in seen:
                    record["saw_other"].append(f"status: {other}")
            return st

        try:
            t0 = time.monotonic()
            while True:  # take the slot when it is free
                try:
                    # one epoch's 8 steps: the visitors' isolation is measured, not how well they learn (the
                    # few-shot floor of 40 steps would triple the run)
                    client.predict(task="classification", sample="topics (4 classes)", epochs=1, max_steps=8,
                                   name=name, api_name="/finetune_start")
                    break
                except Exception as exc:  # noqa: BLE001
                    if "busy" not in str(exc) or time.monotonic() > deadline:
                        raise
                    record["refused_busy"] += 1
                    status()
                    time.sleep(3)
            t1 = time.monotonic()
            record["wait_s"] = round(t1 - t0, 1)
            while (st := status())["state"] in ("starting", "running"):
                if time.monotonic() > deadline:
                    raise TimeoutError("training did not end in time")
                time.sleep(2)
            record["train_s"] = round(time.monotonic() - t1, 1)
            if st["state"] != "finished" or st["name"] != name:
                raise ValueError(f"own run ended {st['state']!r} as {st['name']!r}: {st['message']}")
            listed = client.predict(api_name="/adapters")
            owned = {a["name"] for a in listed if a["owned"]}
            if owned != {name}:
                raise ValueError(f"owned adapters {owned}, expected only {name}")
            record["saw_other"] += [f"adapters: {o}" for o in others if o in {a["name"] for a in listed}]
            scores = client.predict(task="classification", models=f"default, {name}", limit=20,
                                    api_name="/evaluate")
            labels = [r["label"] for r in scores["results"]]
            if labels != ["default", name] or any(r["n"] != 20 for r in scores["results"]):
                raise ValueError(f"evaluation gave {labels}")
            record["accuracy"] = {r["label"]: round(r["metrics"]["accuracy"], 3) for r in scores["results"]}
            client.predict(name, api_name="/adapters_remove")
        except Exception as exc:  # noqa: BLE001
            self.fail(who, f"{type(exc).__name__}: {exc}")

    def run(self) -> float:
        start = time.monotonic()
        names = [f"soak-visitor-{i}" for i in range(2)]
        chatters = [threading.Thread(target=self.chatter, args=(i,), daemon=True) for i in range(self.chatters)]
        trainers = [threading.Thread(target=self.trainer, args=(i, names), daemon=True) for i in range(2)]
        for t in chatters + trainers:
            t.start()
        for t in trainers:
            t.join(self.max_seconds + 60)
        self.done.set()
        for t in chatters:
            t.join(self.timeout + 30)
        return time.monotonic() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chatters", type=int, default=6)
    parser.add_argument("--timeout", type=float, default=180, help="per request, seconds")
    parser.add_argument("--max-seconds", type=float, default=900, help="for both trainers to finish")
    parser.add_argument("--json-out", help="also write the result JSON here")
    parser.add_argument("--log", default=None, help="server log file (default: a temporary file)")
    args = parser.parse_args(argv)
    import tempfile

    log_path = Path(args.log or tempfile.mkstemp(prefix="lmdemo-soak-visitors-", suffix=".log")[1])
    home = tempfile.mkdtemp(prefix="lmdemo-soak-visitors-home-")
    import os

    from lmdemo.config import get_settings

    # Its own adapters and jobs folders (the models are linked from this machine's home): nothing is left behind.
    os.symlink(get_settings().models_dir, Path(home) / "models")
    with serve(log_path, env={"LMDEMO_DEMO_MODE": "1", "LMDEMO_HOME": home}) as (url, proc):
        from gradio_client import Client

        Client(url, verbose=False).predict(prompt=PROMPTS[0], max_new_tokens=4, api_name="/generate")  # warm
        soak = VisitorSoak(url, args.chatters, args.timeout, args.max_seconds)
        elapsed = soak.run()
        alive = proc.poll() is None

    lat = soak.chat_latency
    result = {
        "chatters": args.chatters, "seconds": round(elapsed, 1), "chat_requests": len(lat),
        "chat_p50": round(percentile(lat, 50), 2) if lat else None,
        "chat_p95": round(percentile(lat, 95), 2) if lat else None,
        "failed": len(soak.failures), "errors": soak.failures[:5], "trainers": soak.trainers,
        "server_alive": alive, "log": str(log_path),
    }
    checks = {
        "0 failures": not soak.failures,
        "both trainers trained and evaluated": len(soak.trainers) == 2
        and all("accuracy" in t for t in soak.trainers.values()),
        "each saw only their own": all(not t["saw_other"] for t in soak.trainers.values()),
        "chatters answered throughout": len(lat) >= args.chatters,
        "server still up": alive,
    }
    result["checks"] = checks
    print_table(f"visitors soak: 2 training + {args.chatters} chatting, {elapsed:.0f} s",
                ["trainer", "waited s", "trained s", "busy refusals", "accuracy default / tuned", "saw others"],
                [[t["name"], t["wait_s"], t["train_s"], t["refused_busy"],
                  " / ".join(str(v) for v in t.get("accuracy", {}).values()), len(t["saw_other"])]
                 for t in soak.trainers.values()])
    print(f"\nchat: {len(lat)} replies, p50 {result['chat_p50']} s, p95 {result['chat_p95']} s")
    print_table("checks", ["check", "result"], [[name, "pass" if ok else "FAIL"] for name, ok in checks.items()])
    if soak.failures:
        print("errors:", *soak.failures[:5], sep="\n  ")
    print_json("soak_visitors", result)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result, indent=2))
    import shutil

    shutil.rmtree(home, ignore_errors=True)
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
