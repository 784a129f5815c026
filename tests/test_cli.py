import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "lmdemo", *args], capture_output=True, text=True, cwd=ROOT,
                          env=dict(os.environ, **(env or {})), timeout=300)


def test_models_lists_the_three_builtins_as_ready(prepared):
    out = run_cli("models")
    assert out.returncode == 0, out.stderr
    for name in ("smollm2-135m-instruct", "gemma-3-270m", "all-minilm-l6-v2"):
        line = next(l for l in out.stdout.splitlines() if l.startswith(name))
        assert "ready" in line
    rows = json.loads(run_cli("models", "--json").stdout)
    assert {r["name"]: r["status"] for r in rows} == dict.fromkeys(
        ["smollm2-135m-instruct", "gemma-3-270m", "all-minilm-l6-v2"], "ready")


def test_bad_input_is_one_line_and_nonzero():
    out = run_cli("models", "prepare", "not-a-model")
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [out.stderr.strip()] and "not-a-model" in out.stderr
    out = run_cli("models", env={"LMDEMO_QUANTIZE": "2bit"})
    assert out.returncode == 2 and "quantize" in out.stderr and "Traceback" not in out.stderr
