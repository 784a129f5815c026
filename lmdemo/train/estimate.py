"""Before training: memory and time per epoch, measured on this device with two real LoRA steps."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import psutil
import torch

from lmdemo.models.loading import load_for_training


@dataclass
class Estimate:
    seconds_per_step: float
    steps_per_epoch: int
    seconds_per_epoch: float
    peak_memory_mb: float
    trainable_params: int
    total_params: int
    total_steps: int = 0  # the planned run's steps (0: unknown)

    @property
    def total_seconds(self) -> float:
        return self.total_steps * self.seconds_per_step

    def to_dict(self) -> dict:
        return {"text": self.text(), "seconds_per_step": self.seconds_per_step, "steps_per_epoch": self.steps_per_epoch,
                "seconds_per_epoch": self.seconds_per_epoch, "peak_memory_mb": self.peak_memory_mb,
                "trainable_params": self.trainable_params, "total_params": self.total_params,
                "total_steps": self.total_steps, "total_seconds": self.total_seconds}

    def text(self) -> str:
        run = f" · {self.total_steps} steps: ~{self.total_seconds:.0f} s of training" if self.total_steps else ""
        return (f"~{self.seconds_per_epoch / 60:.1f} min per epoch ({self.steps_per_epoch} steps × "
                f"{self.seconds_per_step:.2f} s){run} · ~{self.peak_memory_mb:.0f} MB of memory · "
                f"{self.trainable_params:,} trainable of {self.total_params:,} parameters")


def estimate(task: str, base_model: str, n_train: int, batch_size: int, max_length: int, quantize: str | None = None,
             labels: int = 2, lora_r: int = 8, total_steps: int = 0) -> Estimate:
    """Time two optimiser steps on a synthetic full-length batch; memory is the process's RSS growth."""
    from peft import LoraConfig, TaskType, get_peft_model

    from lmdemo.models.adapters import CAUSAL_HEAD, TASK_HEADS
    from lmdemo.train.classifier import TARGET_MODULES

    rss0 = psutil.Process().memory_info().rss
    head = TASK_HEADS.get(task, CAUSAL_HEAD)[0]
    classify = head == "sequence-classification"
    lm = load_for_training(base_model, head=head, labels=[str(i) for i in range(labels)] if classify else None,
                           quantize=quantize)
    kind = {"sequence-classification": TaskType.SEQ_CLS, "seq2seq-lm": TaskType.SEQ_2_SEQ_LM}.get(head, TaskType.CAUSAL_LM)
    model = get_peft_model(lm.model, LoraConfig(task_type=kind, r=lora_r,
                                                target_modules=TARGET_MODULES.get(lm.model.config.model_type)))
    model.train()
    optim = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    # Classification rows are short; an SFT row fills the context more often. Both are bounded by max_length.
    length = min(max_length, 64) if task == "classification" else max_length
    ids = torch.randint(10, min(lm.tokenizer.vocab_size, 30000), (batch_size, length), device=lm.device)
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids),
             "labels": torch.zeros(batch_size, dtype=torch.long, device=lm.device) if kind == TaskType.SEQ_CLS else ids}
    times = []
    for _ in range(2):
        start = time.perf_counter()
        model(**batch).loss.backward()
        optim.step()
        optim.zero_grad()
        times.append(time.perf_counter() - start)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    peak = (psutil.Process().memory_info().rss - rss0) / 2**20
    steps = math.ceil(max(1, n_train) / batch_size)
    return Estimate(times[-1], steps, times[-1] * steps, peak, trainable, total, total_steps)
