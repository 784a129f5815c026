"""A fine-tuning run planned once for every face: the data read and checked, the settings with their defaults.

The CLI's ``finetune``, the Fine-tune tab and the API all build a :class:`FinetuneRequest` and call
:func:`plan`; the defaults per task are the training configs' own (:func:`task_defaults`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmdemo.data import tabular
from lmdemo.errors import InputError
from lmdemo.models import families
from lmdemo.models.adapters import new_adapter_path
from lmdemo.train.classifier import ClassifierTrainConfig
from lmdemo.train.seq2seq import Seq2SeqConfig
from lmdemo.train.sft import SFTConfig

# translation and summarisation train encoder-decoder models on source/target pairs (lmdemo.train.seq2seq).
TASKS = ("classification", "sft", "translation", "summarisation")
SEQ2SEQ = ("translation", "summarisation")
CONFIGS = {"classification": ClassifierTrainConfig, "sft": SFTConfig, "translation": Seq2SeqConfig,
           "summarisation": Seq2SeqConfig}
# The estimate's synthetic batch per task: (rows per step, tokens per row).
ESTIMATE_SHAPE = {"classification": (32, 128), "sft": (8, 256), "translation": (8, 128), "summarisation": (8, 256)}


def task_name(task: str) -> str:
    task = {"sentiment": "classification", "summarization": "summarisation"}.get(str(task).strip(), str(task).strip())
    if task not in TASKS:
        raise InputError(f"Unknown fine-tuning task {task!r}; use classification (or sentiment), sft, translation "
                         "or summarisation.")
    return task


def task_defaults(task: str) -> dict[str, Any]:
    """base, epochs, learning_rate, lora_r of a task: its training config's own defaults."""
    fields = {f.name: f.default for f in dataclasses.fields(CONFIGS[task_name(task)])}
    return {"base": fields["base_model"], "epochs": fields["epochs"], "learning_rate": fields["learning_rate"],
            "lora_r": fields["lora_r"]}


@dataclass
class FinetuneRequest:
    """One LoRA fine-tuning run: data, base model and the settings a user may change (None: the task's default)."""

    task: str = field(default="classification", metadata={"help": "classification (alias sentiment), sft, or "
                                                                   "translation/summarisation (seq2seq models)"})
    data: str | None = field(default=None, metadata={"help": "CSV, JSONL or Parquet file, or a Hub dataset id"})
    sample: str | None = field(default=None, metadata={"help": "a bundled sample instead of a file: "
                                                                 + ", ".join(tabular.SAMPLES)})
    eval_data: str | None = field(default=None, metadata={"help": "validation file (default: 10 % held back)"})
    output: str = field(default="", metadata={"help": "adapter name (in the adapters folder) or a folder path"})
    base: str | None = field(default=None, metadata={"help": "base model (default: the task's)"})
    epochs: float | None = None
    max_steps: int | None = None
    learning_rate: float | None = None
    lora_r: int | None = None
    quantize: str | None = field(default=None, metadata={"help": "4bit: QLoRA (base loaded in 4-bit)"})
    seed: int | None = None
    columns: dict[str, str] = field(default_factory=dict, metadata={"help": "file column -> field (text/label, "
                                                                            "prompt/response, source/target)"})
    source: str | None = field(default=None, metadata={"help": "translation: source language (default en)"})
    target: str | None = field(default=None, metadata={"help": "translation: target language (default fr)"})

    def __post_init__(self) -> None:
        self.task = task_name(self.task)
        if self.quantize in ("", "none"):
            self.quantize = None
        if not self.data and not self.sample:
            raise InputError("Upload a CSV/JSONL/Parquet file or pick a sample set.")
        self.columns = {k: v for k, v in (self.columns or {}).items() if k and v and k != v}


@dataclass
class TrainingPlan:
    name: str
    output_dir: str
    data: tabular.TrainingData
    config: dict[str, Any]  # the training config's keyword arguments

    @property
    def task(self) -> str:
        return self.data.task

    def summary(self) -> dict[str, Any]:
        return {"name": self.name, "task": self.task, "output_dir": self.output_dir,
                "train_rows": len(self.data.train), "validation_rows": len(self.data.validation),
                "labels": self.data.labels, "notes": self.data.notes, "config": self.config}

    to_dict = summary


def output_folder(output: str, task: str) -> Path:
    """A bare name goes into the adapters folder (so every model picker lists it); a path is used as given."""
    output = (output or "").strip() or f"{task}-adapter"
    if "/" in output or output.startswith((".", "~")):
        return Path(output).expanduser()
    return new_adapter_path(output)


def read_data(req: FinetuneRequest) -> tabular.TrainingData:
    """The request's rows, renamed, checked and split into train and validation."""
    source, validation = req.data, req.eval_data
    if req.sample and not req.data:
        sample_task, train, heldout = tabular.sample_path(req.sample)
        if sample_task != req.task:
            raise InputError(f"Sample {req.sample!r} is {sample_task} data; pick a {req.task} file.")
        source, validation = str(train), validation or str(heldout)
    return tabular.prepare(source, req.task, req.columns, validation=validation)


def plan(req: FinetuneRequest, settle: bool = True) -> TrainingPlan:
    """Read and check the data and settle every setting, before any model is loaded.

    ``settle=False`` checks the data alone (the Fine-tune tab's data check, before a base model is picked).
    """
    data = read_data(req)
    out = output_folder(req.output, req.task)
    config: dict[str, Any] = {"output_dir": str(out), "base_model": (req.base or "").strip() or task_defaults(req.task)["base"]}
    for key in ("epochs", "learning_rate", "lora_r", "quantize", "seed"):
        if getattr(req, key) is not None:
            config[key] = getattr(req, key)
    if req.task in SEQ2SEQ:
        config["task"] = req.task
        config.update({k: getattr(req, k) for k in ("source", "target") if getattr(req, k)})
    if req.max_steps is not None:
        config["max_steps"] = req.max_steps
    if settle:
        CONFIGS[req.task](**config)  # validated now, so a bad setting fails before the worker starts
        # A base of the wrong family is refused from its config, before any weights load.
        families.require(config["base_model"], {"classification": "train-classifier", "sft": "train-sft"}.get(
            req.task, "train-seq2seq"))
    return TrainingPlan(out.name, str(out), data, config)


def estimate_plan(planned: TrainingPlan):
    """Seconds per step and epoch, and memory, of the planned run (two real optimiser steps)."""
    from lmdemo.train.estimate import estimate

    batch, length = ESTIMATE_SHAPE[planned.task]
    n = len(planned.data.train)
    config = CONFIGS[planned.task](**planned.config)
    if planned.task == "classification":
        from lmdemo.train.classifier import schedule

        batch, steps = schedule(n, config)
    else:
        batch = getattr(config, "batch_size", batch)
        steps = config.max_steps or math.ceil(config.epochs * math.ceil(n / batch))
    return estimate(planned.task, planned.config["base_model"], n, batch, length,
                    quantize=planned.config.get("quantize"), labels=max(2, len(planned.data.labels)),
                    lora_r=int(planned.config.get("lora_r") or task_defaults(planned.task)["lora_r"]), total_steps=steps)


def train_rows(task: str, train: list[dict], validation: list[dict], config: dict[str, Any], on_log=None,
               stop_event=None):
    """Train with the task's trainer; the CLI runs it in-process, the app in its worker process.

    Under torchrun/accelerate every process calls this: each trains on its shard, rank 0 alone saves.
    """
    from lmdemo.train.distributed import bind_device

    bind_device()  # each rank's model (a 4-bit base included) on its own GPU
    if task == "classification":
        from lmdemo.train.classifier import train_classifier

        return train_classifier(train, validation, ClassifierTrainConfig(**config), on_log=on_log,
                                stop_event=stop_event)
    if task in SEQ2SEQ:
        from lmdemo.train.seq2seq import train_seq2seq

        return train_seq2seq(train, validation, Seq2SeqConfig(**config), on_log=on_log, stop_event=stop_event)
    from lmdemo.train.sft import train_sft

    return train_sft(train, validation, SFTConfig(**config), on_log=on_log, stop_event=stop_event)


def run_plan(planned: TrainingPlan, on_log=None, stop_event=None):
    """Train the planned run in this process."""
    return train_rows(planned.task, planned.data.train, planned.data.validation, planned.config, on_log, stop_event)
