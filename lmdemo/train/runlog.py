"""A run's record beside its adapter: loss curves, settings, the estimate and the measured time and memory.

The Fine-tune tab shows it again for any past run; the CLI writes the same file. It stays on this machine
(`run.json` is not among the files an adapter push uploads): timings say nothing about the adapter itself.
"""

from __future__ import annotations

import json
import os
import resource
import time
from pathlib import Path
from typing import Any

RUN_FILE = "run.json"
MAX_POINTS = 2000  # curve points kept per run: a long run logs every few steps, the file stays small


class RunClock:
    """Collects a run's loss points and step times from the trainers' ``on_log`` entries.

    Timing starts at the first optimiser step, so worker start and model load are not counted as training.
    """

    def __init__(self) -> None:
        import psutil

        self.rss0 = psutil.Process().memory_info().rss
        self.curve: list[dict[str, float]] = []
        self.first: tuple[int, float] | None = None  # (step, time) of the first step seen
        self.last: tuple[int, float] | None = None

    def on_log(self, entry: dict) -> None:
        step = int(entry.get("step") or 0)
        if step >= 1:
            now = time.time()
            if self.first is None:
                self.first = (step, now)
            self.last = (step, now)
        point = {k: float(entry[k]) for k in ("loss", "eval_loss", "eval_accuracy") if k in entry}
        if point and len(self.curve) < MAX_POINTS:
            self.curve.append({"step": step, **point})

    def actual(self) -> dict[str, Any]:
        """Steps, seconds per step (first to last step), training seconds and peak memory growth in MB."""
        out: dict[str, Any] = {"steps": self.last[0] if self.last else 0}
        if self.first and self.last and self.last[0] > self.first[0]:
            per_step = (self.last[1] - self.first[1]) / (self.last[0] - self.first[0])
            out.update(seconds_per_step=per_step, train_seconds=per_step * self.last[0])
        # ru_maxrss is in KiB on Linux: the process's peak, less what it held before loading the model
        out["peak_memory_mb"] = max(0.0, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - self.rss0) / 2**20)
        return out


def write_json(path: Path, data: Any) -> Path:
    """Write ``data`` as JSON at ``path`` atomically: a reader sees the old file or the new one, never half."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, default=str), encoding="utf-8")
    os.replace(tmp, path)
    return path


def write(output_dir: str | Path, record: dict[str, Any]) -> Path | None:
    """Write ``run.json`` into the adapter folder; None when the folder is gone (a failed run)."""
    folder = Path(output_dir)
    return write_json(folder / RUN_FILE, record) if folder.is_dir() else None


def record(clock: RunClock, task: str, config: dict[str, Any], estimate: dict | None = None,
           comparison: dict | None = None, stopped: bool = False) -> dict[str, Any]:
    """The run record: when, task, settings (no paths), curve, actual figures, the estimate made before, metrics."""
    return {"finished": time.strftime("%Y-%m-%d %H:%M:%S"), "task": task, "stopped": stopped,
            "settings": {k: v for k, v in config.items() if k != "output_dir"},
            "curve": clock.curve, "actual": clock.actual(), "estimate": estimate or None,
            "metrics": (comparison or {}).get("metrics"), "paired": (comparison or {}).get("paired"),
            "warning": worse_than_base(task, comparison)}


def read(output_dir: str | Path) -> dict[str, Any]:
    """A folder's run record; empty when there is none or it cannot be read."""
    try:
        data = json.loads((Path(output_dir) / RUN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def versus(actual: dict[str, Any], estimate: dict | None) -> str:
    """One line: the estimate beside what the run took."""
    def part(seconds: float | None, per_step: float | None, mb: float | None) -> str:
        bits = []
        if seconds is not None:
            bits.append(f"{seconds:.0f} s")
        if per_step is not None:
            bits.append(f"{per_step:.2f} s/step")
        if mb is not None:
            bits.append(f"{mb:.0f} MB")
        return ", ".join(bits) or "?"

    done = part(actual.get("train_seconds"), actual.get("seconds_per_step"), actual.get("peak_memory_mb"))
    if not estimate:
        return f"took {done} ({actual.get('steps', 0)} steps)"
    guess = part(estimate.get("total_seconds") or None, estimate.get("seconds_per_step"), estimate.get("peak_memory_mb"))
    return f"estimated {guess} · took {done} ({actual.get('steps', 0)} steps)"


def worse_figures(task: str, comparison: dict | None) -> tuple[str, float, float] | None:
    """(metric, fine-tuned, base) when the saved adapter scores worse than its base model on validation."""
    from lmdemo.eval.evaluation import EXAMPLE_SCORES

    key, higher = EXAMPLE_SCORES.get({"sft": "generation"}.get(task, task), ("", True))
    metrics = (comparison or {}).get("metrics") or {}
    base, tuned = (metrics.get("base") or {}).get(key), (metrics.get("fine-tuned") or {}).get(key)
    if not isinstance(base, (int, float)) or not isinstance(tuned, (int, float)):
        return None
    return (key, tuned, base) if ((tuned < base) if higher else (tuned > base)) else None


def worse_than_base(task: str, comparison: dict | None) -> str | None:
    """A plain warning when the saved adapter scores worse than its base model on validation, else None."""
    worse = worse_figures(task, comparison)
    return None if worse is None else worse_sentence(*worse)


def worse_sentence(key: str, tuned: float, base: float) -> str:
    """The warning for worse_figures' (metric, fine-tuned, base)."""
    return (f"Warning: the fine-tuned adapter is WORSE than the base model on the validation rows ({key} "
            f"{tuned:.3f} vs {base:.3f} for the base). It was saved, but the base model alone does better: try "
            "more data, more steps or another learning rate before using it.")
