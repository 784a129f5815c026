"""Print the README's table of default-model scores by running `python -m lmdemo eval TASK --json` per bundled set.

    python scripts/eval_table.py [--limit N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TASKS = ["sentiment", "translation", "summarisation", "generation"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--limit", type=int, help="first N examples of each set (default: all)")
    parser.add_argument("--translation-limit", type=int,
                        help="first N translation examples (the set interleaves its 8 directions)")
    args = parser.parse_args()
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    print("| task | model | examples | metrics | seconds |\n|---|---|---|---|---|")
    for task in TASKS:
        limit = args.translation_limit if task == "translation" and args.translation_limit else args.limit
        cmd = [sys.executable, "-m", "lmdemo", "eval", task, "--json"] + (["--limit", str(limit)] if limit else [])
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        metrics = ", ".join(f"{k} {v:.3f}" if v < 10 else f"{k} {v:.1f}" for k, v in r["metrics"].items())
        model = r["model"] + (" + sentiment adapter" if task == "sentiment" else "")
        print(f"| {task} | {model} | {r['n']} | {metrics} | {r['seconds']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
