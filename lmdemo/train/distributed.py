"""Training across processes: which process this is, rank 0's jobs, and the torchrun command that starts several.

``torchrun`` (and ``accelerate launch``) start one copy of ``lmdemo finetune`` per process and tell each its place
through the ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE`` environment variables. The transformers Trainer reads them:
it joins the process group (gloo on CPU, nccl on CUDA), wraps the model in DDP and gives each process its own
shard of the data. What happens around training is lmdemo's: every process trains, rank 0 alone writes the
adapter, and the others wait for it (:func:`save_once`) before they leave. Without those variables every
function here is the one-process answer, so the single-process path is unchanged.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Sequence

from lmdemo.errors import InputError

MAX_CPU_PROCESSES = 8  # beyond this, CPU processes share cores and every step waits on the gradient all-reduce


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def rank() -> int:
    """This process's place among all of them (0 when not launched by torchrun/accelerate)."""
    return _env_int("RANK", 0)


def local_rank() -> int:
    """This process's place on its machine: the CUDA device it trains on."""
    return _env_int("LOCAL_RANK", 0)


def world_size() -> int:
    """How many processes train together (1 when not launched by torchrun/accelerate)."""
    return max(1, _env_int("WORLD_SIZE", 1))


def is_main() -> bool:
    """True in the process that saves, evaluates and reports (rank 0, or the only process)."""
    return rank() == 0


def _group():
    """torch.distributed when a process group is up (the Trainer starts it), else None."""
    if world_size() < 2:
        return None
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def barrier() -> None:
    """Wait until every process gets here; a no-op in a single process."""
    dist = _group()
    if dist is not None:
        dist.barrier()


def finish() -> None:
    """Leave the process group (torch warns at exit about one left open)."""
    dist = _group()
    if dist is not None:
        dist.destroy_process_group()


def bind_device() -> None:
    """Put this process on its own GPU before the model loads.

    lmdemo loads on ``cuda`` (the current device), and a 4-bit base is placed by ``device_map={"": "cuda"}``,
    which the Trainer never moves; selecting ``cuda:LOCAL_RANK`` first gives each rank its own copy on its own
    GPU, the ``device_map={"": local_rank}`` of QLoRA under DDP.
    """
    if world_size() < 2:
        return
    import torch

    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank())


def save_once(model, output_dir: str | Path, meta: dict) -> Path:
    """Rank 0 writes the adapter (atomically, adapters.save_adapter); every process returns once it is in place."""
    from lmdemo.models.adapters import save_adapter

    with _whole_weights(model):  # every rank takes part in a ZeRO-3 gather, rank 0 alone writes
        out = save_adapter(model, output_dir, meta) if is_main() else Path(output_dir)
    barrier()
    return out


def _whole_weights(model):
    """Under DeepSpeed ZeRO-3 each rank holds a slice of every weight: gather the trained ones for the save.

    Untested here (deepspeed is not a dependency); without deepspeed loaded it is a no-op.
    """
    import contextlib

    if "deepspeed" not in sys.modules:
        return contextlib.nullcontext()
    import deepspeed

    params = [p for p in model.parameters() if p.requires_grad and hasattr(p, "ds_id")]
    return deepspeed.zero.GatheredParameters(params, modifier_rank=None) if params else contextlib.nullcontext()


def report(trainer) -> None:
    """One stderr line per process after training, so a multi-process run shows that every rank took part."""
    if world_size() > 1:
        print(f"rank {rank()}/{world_size()}: trained {trainer.state.global_step} steps "
              f"(Trainer world size {trainer.args.world_size})", file=sys.stderr, flush=True)


def gpu_count() -> int:
    """CUDA devices this process sees (0 without CUDA): the Fine-tune tab offers several processes from 2."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def max_processes() -> int:
    """The most processes `--processes` accepts here: one per GPU, else one per CPU core up to 8."""
    from lmdemo.config import get_settings
    from lmdemo.models.loading import resolve_device

    if resolve_device(get_settings().device).type == "cuda":
        import torch

        return torch.cuda.device_count()
    return max(1, min(os.cpu_count() or 1, MAX_CPU_PROCESSES))


def check_processes(processes: int) -> int:
    """`processes` when this machine can run that many training processes, else an InputError naming the limit."""
    limit = max_processes()
    if not 1 <= processes <= limit:
        from lmdemo.config import get_settings
        from lmdemo.models.loading import resolve_device

        where = ("GPU(s)" if resolve_device(get_settings().device).type == "cuda"
                 else f"CPU processes (one per core, at most {MAX_CPU_PROCESSES})")
        raise InputError(f"`--processes` must be between 1 and {limit} here ({limit} {where}); got {processes}.")
    return processes


def launch_command(processes: int, argv: Sequence[str], module: str = "lmdemo") -> list[str]:
    """The torchrun command that runs ``python -m lmdemo <argv>`` in `processes` processes on this machine.

    ``--standalone`` picks a free rendezvous port, so two runs on one machine do not collide; the Trainer
    chooses the backend (nccl on CUDA, gloo on CPU).
    """
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
            "-m", module, *argv]


def should_stop(stop_event) -> bool:
    """Whether training stops after this step: in several processes, when any rank's stop is set (all-reduced, so
    every rank stops at the same step; ranks stopping one step apart would leave DDP waiting)."""
    flag = bool(stop_event is not None and stop_event.is_set())
    dist = _group()
    if dist is None:
        return flag
    import torch

    backend = dist.get_backend()
    value = torch.tensor([int(flag)], device=f"cuda:{local_rank()}" if backend == "nccl" else "cpu")
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


class StopFile:
    """A stop event that another process sets by creating a file (the app's worker, to stop its ranks)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def is_set(self) -> bool:
        return self.path.exists()

    def set(self) -> None:
        self.path.touch()
