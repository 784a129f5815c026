"""Concurrency and soak: bench/soak.py at full size (8 users, 2 minutes, longer on a slow CPU until 300 requests
are done) against the app in its own process."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.soak
def test_eight_users_for_two_minutes(prepared, tmp_path):
    out = tmp_path / "soak.json"
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "soak.py"), "--users", "8", "--seconds", "120",
                          "--json-out", str(out), "--log", str(tmp_path / "server.log")],
                         capture_output=True, text=True, cwd=ROOT, timeout=900)
    print(run.stdout[-3000:])  # the figures, shown with -s or on failure
    assert out.exists(), run.stdout[-2000:] + run.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["users"] == 8 and result["seconds"] >= 120
    assert result["failed"] == 0, result["errors"]
    assert result["requests"] >= 300
    assert all(result["endpoints"][k]["n"] > 0 for k in ("generate", "sentiment", "translate"))
    assert abs(result["rss_growth_50_to_300"]) <= 0.10, result["rss_mb"]
    assert result["isolation"]["ok"], result["isolation"]
    assert result["server_alive"]
    assert run.returncode == 0, run.stdout[-2000:]


@pytest.mark.soak
def test_two_visitors_train_and_evaluate_while_six_chat(prepared, tmp_path):
    """bench/soak_visitors.py on a demo-mode app: 0 failures, and each visitor sees only their own run and adapters."""
    out = tmp_path / "visitors.json"
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "soak_visitors.py"), "--json-out", str(out),
                          "--log", str(tmp_path / "server.log")], capture_output=True, text=True, cwd=ROOT,
                         timeout=1500)
    print(run.stdout[-3000:])
    assert out.exists(), run.stdout[-2000:] + run.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["failed"] == 0, result["errors"]
    assert len(result["trainers"]) == 2
    for trainer in result["trainers"].values():
        assert trainer["saw_other"] == [] and "accuracy" in trainer, trainer
    assert sum(t["refused_busy"] for t in result["trainers"].values()) > 0  # one waited for the other's run
    assert result["chat_requests"] >= 6 and result["server_alive"]
    assert run.returncode == 0, run.stdout[-2000:]
