"""Cached-load time of each built-in: lmdemo's `load()` vs plain `from_pretrained` of the same folder.

Each sample is a fresh Python process (imports done before the clock starts), so the figure is what a
second and later start of the app pays for a model that is already converted. Runs are interleaved
(lmdemo, baseline, lmdemo, ...) so both see the same machine state.

    python bench/load_time.py [--runs 5] [--models NAME ...]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
from _common import print_json, print_table, summarise  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

LMDEMO = """
import time, transformers, lmdemo.models.loading as L  # both sides import transformers before the clock
head = "encoder" if NAME == "all-minilm-l6-v2" else "causal-lm"
t = time.perf_counter(); L.load(NAME, head=head); print(time.perf_counter() - t)
"""
BASELINE = """
import time, torch, transformers
from lmdemo.models import store
folder = store.ensure(NAME)
cls = transformers.AutoModel if NAME == "all-minilm-l6-v2" else transformers.AutoModelForCausalLM
t = time.perf_counter()
transformers.AutoTokenizer.from_pretrained(folder); cls.from_pretrained(folder, dtype=torch.bfloat16)
print(time.perf_counter() - t)
"""


def sample(code: str, name: str) -> float:
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", f"NAME={name!r}\n{code}"], capture_output=True, text=True,
                         env=env, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    from lmdemo.models import store

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--models", nargs="*", default=list(store.BUILTINS))
    args = parser.parse_args()
    store.prepare(args.models)
    rows, results = [], {}
    for name in args.models:
        ours, base = [], []
        for _ in range(args.runs):
            ours.append(sample(LMDEMO, name))
            base.append(sample(BASELINE, name))
        o, b = summarise(ours), summarise(base)
        ratios = sorted(x / y for x, y in zip(ours, base))
        results[name] = {"lmdemo_s": o, "from_pretrained_s": b, "ratio_median": ratios[len(ratios) // 2]}
        rows.append([name, f"{o['median']:.2f} ({o['min']:.2f}-{o['max']:.2f})",
                     f"{b['median']:.2f} ({b['min']:.2f}-{b['max']:.2f})", f"{ratios[len(ratios) // 2]:.2f}x",
                     "yes" if o["median"] < 3 else "NO"])
    print_table(f"Cached load, seconds, median (min-max) of {args.runs} fresh processes",
                ["model", "lmdemo load()", "plain from_pretrained", "ratio", "< 3 s"], rows)
    print_json("load_time", results)


if __name__ == "__main__":
    main()
