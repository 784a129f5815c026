"""One fine-tuning job at a time, run in a separate worker process.

The app stays responsive, a crash in training cannot take it down, Cancel ends the worker for real
(gracefully first, so the adapter trained so far is saved), and a reloaded page re-attaches to the
job because its state lives here, not in the page.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import queue
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lmdemo.errors import InputError

CANCEL_GRACE_S = 90  # one SFT step on 2 cores can take ~10 s; beyond this the worker is terminated


@dataclass
class JobStatus:
    state: str = "idle"  # idle | starting | running | finished | failed | cancelled
    name: str = ""
    task: str = ""
    step: int = 0
    max_steps: int = 0
    started: float = 0.0
    message: str = ""
    output_dir: str = ""
    losses: list[dict] = field(default_factory=list)  # {"step", "loss"} and {"step", "eval_loss"}
    comparison: dict = field(default_factory=dict)  # base vs fine-tuned metrics and examples
    notes: list[str] = field(default_factory=list)  # e.g. demo-mode caps applied to this run
    run: dict = field(default_factory=dict)  # after training: {"actual": ..., "estimate": ...} (lmdemo.train.runlog)
    first_step: tuple[int, float] | None = None  # (step, time) of the first step seen: the rate leaves out start-up
    owner: str | None = None  # who started it: only they see its details and may cancel it
    restored: bool = False  # read back from disk after a restart

    @property
    def running(self) -> bool:
        return self.state in ("starting", "running")

    @property
    def elapsed(self) -> float:
        return time.time() - self.started if self.started else 0.0

    @property
    def steps_per_second(self) -> float:
        """Measured from the first step, so starting the worker and loading the model do not count."""
        if not self.first_step or self.step <= self.first_step[0]:
            return 0.0
        return (self.step - self.first_step[0]) / max(1e-6, time.time() - self.first_step[1])

    @property
    def eta_seconds(self) -> float | None:
        rate = self.steps_per_second
        return (self.max_steps - self.step) / rate if rate and self.max_steps else None


def demo_limits(task: str, train: list[dict], validation: list[dict], config: dict
                ) -> tuple[list[dict], list[dict], dict, list[str]]:
    """In demo mode, cap rows, epochs and steps so one visitor's run cannot hold a shared Space for long."""
    from lmdemo.config import DEMO_LIMITS, get_settings

    if not get_settings().demo_mode:
        return train, validation, config, []
    lim, notes, config = DEMO_LIMITS, [], dict(config)
    if len(train) > lim.max_train_rows:
        notes.append(f"demo mode: trained on the first {lim.max_train_rows} of {len(train)} rows")
        train = train[: lim.max_train_rows]
    validation = validation[: max(20, lim.max_train_rows // 4)]
    if config.get("epochs", 0) > lim.max_epochs:
        notes.append(f"demo mode: {lim.max_epochs} epochs at most")
        config["epochs"] = float(lim.max_epochs)
    if task == "sft":
        config["max_steps"] = min(config.get("max_steps") or lim.max_steps, lim.max_steps)
        notes.append(f"demo mode: {config['max_steps']} steps at most")
    elif task == "classification":
        from lmdemo.train.classifier import ClassifierTrainConfig, schedule

        steps = schedule(len(train), ClassifierTrainConfig(**config))[1]
        if steps > lim.max_steps:
            config["max_steps"] = lim.max_steps
            notes.append(f"demo mode: {lim.max_steps} steps at most")
    return train, validation, config, notes


def _watch_parent(parent: int) -> None:
    """End the worker when the app that started it is gone (killed, crashed): no orphan keeps training."""
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os._exit(3)


def _end_with_parent() -> None:
    """In torchrun's process: be sent SIGTERM when this worker dies, so no launcher outlives a killed worker
    (torchrun passes it on to its ranks). Linux only; elsewhere a no-op."""
    import ctypes
    import signal

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _train_in_ranks(processes: int, task: str, train: list[dict], validation: list[dict], config: dict, log,
                    stop) -> str:
    """Train in ``processes`` processes under torchrun (:mod:`lmdemo.train.ranks`), passing rank 0's progress to
    ``log`` and a Cancel on to every rank; returns the adapter folder rank 0 saved."""
    import subprocess
    import tempfile

    from lmdemo.train import distributed

    with tempfile.TemporaryDirectory(prefix="lmdemo-ranks-") as tmp:
        folder = Path(tmp)
        (folder / "job.json").write_text(json.dumps({"task": task, "train": train, "validation": validation,
                                                     "config": config}))
        err = open(folder / "stderr.log", "w+", encoding="utf-8")
        proc = subprocess.Popen(distributed.launch_command(processes, [str(folder)], module="lmdemo.train.ranks"),
                                stdout=err, stderr=subprocess.STDOUT, preexec_fn=_end_with_parent)
        read = 0
        while True:
            done = proc.poll() is not None
            if stop.is_set():
                distributed.StopFile(folder / "stop").set()
            progress = folder / "progress.jsonl"
            if progress.exists():
                with open(progress, encoding="utf-8") as f:
                    f.seek(read)
                    for line in f.readlines():
                        if line.endswith("\n"):
                            read += len(line.encode("utf-8"))
                            log(json.loads(line))
            if done:
                break
            time.sleep(0.5)
        if proc.returncode != 0 or not (folder / "result.json").exists():
            err.seek(0)
            lines = [line for line in err.read().splitlines() if line.strip()]
            cause = next((line for line in reversed(lines) if "Error" in line), lines[-1] if lines else "")
            raise RuntimeError(f"training in {processes} processes failed (exit {proc.returncode}): {cause[:300]}")
        err.close()
        return json.loads((folder / "result.json").read_text())["output_dir"]


def _worker(task: str, train: list[dict], validation: list[dict], config: dict, events, stop,
            parent: int | None = None, processes: int = 1, estimate: dict | None = None) -> None:
    """Runs in the child process: train (in several processes under torchrun when ``processes`` > 1), compare
    with the base model, report through ``events``."""
    if parent is not None:
        threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    try:
        from lmdemo.train import runlog
        from lmdemo.train.plan import train_rows

        clock = runlog.RunClock()  # after the imports above: memory counted from here is the run's own

        def log(entry: dict) -> None:
            clock.on_log(entry)
            events.put({"type": "log", **{k: v for k, v in entry.items() if isinstance(v, (int, float, str))}})

        if processes > 1:
            output_dir = _train_in_ranks(processes, task, train, validation, config, log, stop)
        else:
            output_dir = train_rows(task, train, validation, config, on_log=log, stop_event=stop).output_dir
        events.put({"type": "status", "message": "evaluating base and fine-tuned models on the validation split"})
        from lmdemo.eval.compare import compare_base_and_adapter

        comparison = compare_base_and_adapter(task, validation, config.get("base_model"), output_dir)
        record = runlog.record(clock, task, config, estimate, comparison, stop.is_set())
        if processes > 1:  # the ranks' memory is not this process's
            record["actual"].pop("peak_memory_mb", None)
        runlog.write(output_dir, record)
        events.put({"type": "done", "output_dir": output_dir, "comparison": comparison, "stopped": stop.is_set(),
                    "run": {"actual": record["actual"], "estimate": estimate}})
    except BaseException as exc:  # reported to the app; the worker then exits
        events.put({"type": "error", "message": f"{type(exc).__name__}: {exc}".splitlines()[0]})


class TrainingJobs:
    """The app's single training slot, and each owner's last job.

    One run at a time for the whole app (a 2-core machine trains one thing well); who started it is recorded,
    so on a shared Space a visitor sees and cancels only their own run. Each owner's last end state is written
    to ``$LMDEMO_HOME/jobs`` and shown again after a restart.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ctx = mp.get_context("spawn")  # a fresh interpreter: no torch thread state inherited by fork
        self._proc = None
        self._events = None
        self._stop = None
        self.status = JobStatus()
        self._last: dict[str | None, JobStatus] = {}  # owner -> their last job, once the slot moved on

    def start(self, name: str, task: str, train: list[dict], validation: list[dict], config: dict,
              owner: str | None = None, processes: int = 1, estimate: dict | None = None) -> JobStatus:
        """Start a job; in demo mode its size is capped first (``status.message`` names the caps). ``processes``
        > 1: trained by that many processes under torchrun (one per GPU). ``estimate``: the Estimate made for this
        plan, kept beside the measured figures."""
        train, validation, config, notes = demo_limits(task, train, validation, config)
        with self._lock:
            self._drain()
            if self.status.running:
                if self.status.owner != owner:
                    raise InputError("The app's training slot is busy with another visitor's run"
                                     + (f" (about {self.status.eta_seconds:.0f} s left)" if self.status.eta_seconds
                                        else "") + "; try again when it ends.")
                raise InputError(f"A training job ({self.status.name}) is already running; wait for it or cancel it.")
            if self.status.state != "idle":
                self._last[self.status.owner] = self.status
            self._events, self._stop = self._ctx.Queue(), self._ctx.Event()
            self.status = JobStatus(state="starting", name=name, task=task, started=time.time(),
                                    output_dir=config["output_dir"], notes=notes, owner=owner,
                                    message="starting the worker process")
            self._proc = self._ctx.Process(target=_worker, args=(task, train, validation, config, self._events,
                                                                 self._stop, os.getpid(), processes, estimate),
                                           daemon=True, name="lmdemo-train")
            self._proc.start()
            return self.status

    def cancel(self, owner: str | None = None) -> JobStatus:
        """Ask the owner's worker to stop after the current step (it saves the adapter); kill it if it does not."""
        with self._lock:
            self._drain()
            if not self.status.running or self._proc is None:
                return self._view(owner)
            if self.status.owner != owner:
                raise InputError("The running training job is another visitor's; you can cancel only your own.")
            self._stop.set()
            self.status.message = "cancelling: stopping after the current step and saving the adapter"
            proc = self._proc
        threading.Thread(target=self._reap, args=(proc,), daemon=True).start()
        return self.status

    def _reap(self, proc) -> None:
        proc.join(CANCEL_GRACE_S)
        if proc.is_alive():
            proc.terminate()
            proc.join(10)

    def poll(self, owner: str | None = None) -> JobStatus:
        """The owner's job: the running one if it is theirs, else their last one (idle when none)."""
        with self._lock:
            self._drain()
            return self._view(owner)

    def busy(self) -> bool:
        """Whether the slot runs anybody's job (a visitor learns no more than that about another's run)."""
        with self._lock:
            self._drain()
            return self.status.running

    def _view(self, owner: str | None) -> JobStatus:
        if self.status.owner == owner and self.status.state != "idle":
            return self.status
        return self._last.get(owner) or _restore(owner) or JobStatus()

    def wait(self, timeout: float | None = None) -> JobStatus:
        """Block until the job ends (CLI and tests)."""
        deadline = None if timeout is None else time.time() + timeout
        while self.busy() and (deadline is None or time.time() < deadline):
            time.sleep(0.5)
        return self.status

    def shutdown(self) -> None:
        """Stop the worker now (the app is closing)."""
        with self._lock:
            proc = self._proc
        if proc is not None and proc.is_alive():
            self._stop.set()
            proc.join(5)
            if proc.is_alive():
                proc.terminate()

    def _drain(self) -> None:
        if self._events is None:
            return
        st = self.status
        was_running = st.running
        while True:
            try:
                event = self._events.get_nowait()
            except (queue.Empty, OSError, ValueError):
                break
            kind = event.pop("type")
            if kind == "log":
                if st.state == "starting":
                    st.state, st.message = "running", "training"
                st.step = int(event.get("step", st.step))
                if st.first_step is None and st.step >= 1:
                    st.first_step = (st.step, time.time())
                st.max_steps = int(event.get("max_steps", st.max_steps) or st.max_steps)
                for key in ("loss", "eval_loss"):
                    if key in event:
                        st.losses.append({"step": st.step, key: float(event[key])})
            elif kind == "status":
                st.message = event["message"]
            elif kind == "done":
                st.state = "cancelled" if event["stopped"] else "finished"
                st.output_dir, st.comparison = event["output_dir"], event["comparison"]
                st.run = event.get("run") or {}
                st.message = ("cancelled; the adapter trained so far is saved" if event["stopped"]
                              else "finished")
            elif kind == "error":
                st.state, st.message = "failed", event["message"]
        if st.running and self._proc is not None and not self._proc.is_alive():
            st.state = "cancelled" if self._stop is not None and self._stop.is_set() else "failed"
            st.message = st.message if st.state == "cancelled" else f"the worker exited with code {self._proc.exitcode}"
            if st.state == "cancelled" and not Path(st.output_dir, "adapter_model.safetensors").exists():
                st.message = "cancelled before an adapter could be saved"
        if was_running and not st.running:
            _ended(st)


def _jobs_file(owner: str | None) -> Path:
    from lmdemo.config import get_settings
    from lmdemo.models.adapters import safe_name

    return get_settings().home / "jobs" / f"{safe_name(owner) if owner else 'local'}.json"


def _ended(st: JobStatus) -> None:
    """A finished run: its adapter's cached copies are stale now, and its end state is kept on disk."""
    from lmdemo.models.loading import CACHE

    if st.output_dir:
        CACHE.forget_adapter(st.output_dir)
    path = _jobs_file(st.owner)
    try:
        from lmdemo.train.runlog import write_json

        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, asdict(st))
    except OSError:  # a full disk must not turn a finished run into an error
        pass


def _restore(owner: str | None) -> JobStatus | None:
    """The owner's last end state written before a restart, if any."""
    try:
        data = json.loads(_jobs_file(owner).read_text())
        fields = {k: v for k, v in data.items() if k in JobStatus.__dataclass_fields__}
        return JobStatus(**dict(fields, restored=True))
    except (OSError, ValueError, TypeError):
        return None


JOBS = TrainingJobs()  # app-wide on purpose: one training slot for the whole app
