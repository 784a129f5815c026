"""Peak memory of generation-eval perplexity on one ~150 KB row versus one 1 KB row, per model.

Each case is a fresh Python process that loads the model and the metric, resets its peak RSS (VmHWM, through
/proc/self/clear_refs, so that loading's own transient peak does not hide scoring's), scores one generation row
through `lmdemo.eval.evaluation.run_rows` and reads VmHWM again: "+score" is that peak over the loaded process.
The long row is tests/data/long_text.md repeated to 150,000 characters (~46k tokens); the evaluation cuts it to
2048 tokens (512 with --demo) and takes the log-softmax a few positions at a time, so it costs what a 2048-token
row costs, not the 46k x vocabulary float logits (48 GB on Gemma's 262k vocabulary) a full-logits pass builds.
About 2 minutes on an idle 2-core machine (4 processes, each loading its model).

    python bench/eval_memory.py [--models NAME ...] [--demo]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
from _common import child_json, print_json, print_table  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SIZES = {"1 KB": 1_000, "150 KB": 150_000}

CHILD = """
import json, sys, time
from pathlib import Path
from lmdemo.eval import evaluation
from lmdemo.eval.metrics import load_metric
from lmdemo.models.loading import load

def status_mb(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024

name, size = sys.argv[1], int(sys.argv[2])
text = Path(sys.argv[3]).read_text(encoding="utf-8")
text = (text * (size // len(text) + 1))[:size]
load(name)
load_metric("perplexity", keep_in_memory=True)  # imports evaluate and datasets: not part of scoring
load_peak = status_mb("VmHWM")
with open("/proc/self/clear_refs", "w") as handle:
    handle.write("5")  # VmHWM := current RSS
loaded = status_mb("VmRSS")
start = time.perf_counter()
res = evaluation.run_rows("generation", [{"prompt": "Read this.", "response": text}], model=name)
print(json.dumps({"load_peak": load_peak, "loaded": loaded, "peak": status_mb("VmHWM"),
                  "seconds": time.perf_counter() - start, "perplexity": res.metrics["perplexity"],
                  "notes": res.notes}))
"""


def sample(name: str, size: int, demo: bool) -> dict:
    return child_json(["-c", CHILD, name, str(size), str(ROOT / "tests/data/long_text.md")], f"{name} {size} chars",
                      LMDEMO_DEMO_MODE="1" if demo else "0")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=["smollm2-135m-instruct", "gemma-3-270m"])
    parser.add_argument("--demo", action="store_true", help="demo mode: rows cut at DEMO_LIMITS.max_eval_tokens")
    args = parser.parse_args()
    rows, results = [], {}
    for name in args.models:
        got = {label: sample(name, size, args.demo) for label, size in SIZES.items()}
        short, long = got["1 KB"], got["150 KB"]
        added = {label: s["peak"] - s["loaded"] for label, s in got.items()}
        results[name] = {"samples": got, "peak_ratio": long["peak"] / short["peak"],
                         "added_mb": added}
        for label, s in got.items():
            rows.append([name, label, f"{s['load_peak']:.0f}", f"{s['loaded']:.0f}", f"{s['peak']:.0f}",
                         f"{added[label]:.0f}", f"{s['seconds']:.1f}", f"{s['perplexity']:.2f}",
                         "; ".join(s["notes"])[:60] or "-"])
        rows.append([name, "150 KB / 1 KB", "", "", f"{results[name]['peak_ratio']:.2f}x",
                     f"{added['150 KB'] - added['1 KB']:+.0f} MiB", "", "", ""])
    print_table("Generation-eval perplexity of one row, each case a fresh process: RSS in MiB "
                "(scoring peak = VmHWM while scoring)",
                ["model", "row", "load peak", "after load", "scoring peak", "+score", "seconds", "perplexity",
                 "notes"], rows)
    print_json("eval_memory", {"demo": args.demo, "results": results})


if __name__ == "__main__":
    main()
