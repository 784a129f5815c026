"""Helpers shared by the benchmark scripts: median/min/max tables and a JSON line."""

from __future__ import annotations

import functools
import json
import statistics


def summarise(samples: list[float]) -> dict[str, float]:
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples), "n": len(samples)}


@functools.cache
def machine() -> str:
    """CPU model, core count and the vector extensions that decide which kernels are fast."""
    import os
    import platform

    name, flags = platform.processor() or platform.machine(), set()
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name") and name in ("", platform.machine(), platform.processor()):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    isa = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    return f"{name}, {os.cpu_count()} CPUs, {' '.join(isa) or 'no AVX2'}"


def print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    print(f"\n{title}\nmachine: {machine()}")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(str(x).ljust(w) for x, w in zip(row, widths)))


def child_json(args: list[str], what: str, **env: str):
    """Run ``python ARGS`` offline on this checkout, in a process of its own (its memory and load time are its
    own), and return the JSON its last output line holds."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    full_env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(root), TOKENIZERS_PARALLELISM="false", **env)
    out = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=full_env)
    if out.returncode != 0:
        raise RuntimeError(f"{what} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def print_json(name: str, payload: dict) -> None:
    print(json.dumps({"bench": name, "machine": machine(), **payload}))
