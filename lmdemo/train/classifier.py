"""LoRA fine-tuning of text classifiers with PEFT and the transformers Trainer."""

from __future__ import annotations

import math
import tempfile
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch

from lmdemo.errors import InputError
from lmdemo.models.loading import load_for_training
from lmdemo.models.registry import DEFAULT_ENCODER_MODEL, resolve
from lmdemo.train import distributed

# LoRA targets per architecture family; anything else falls back to PEFT's own defaults.
TARGET_MODULES = {
    "bert": ["query", "key", "value", "dense"],
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "gemma3_text": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    # encoder-decoder models: attention projections of encoder, decoder and cross-attention
    **{t: ["q_proj", "k_proj", "v_proj", "out_proj"] for t in ("marian", "bart", "mbart", "m2m_100", "pegasus")},
    **{t: ["q", "k", "v", "o"] for t in ("t5", "mt5")},
}


@dataclass
class ClassifierTrainConfig:
    """Settings of one classifier fine-tuning run."""

    output_dir: str
    base_model: str = DEFAULT_ENCODER_MODEL
    epochs: float = 6.0
    max_steps: int | None = None  # None: epochs' worth of steps, at least MIN_STEPS
    learning_rate: float = 1e-3  # LoRA and a fresh head tolerate a rate ~10x full fine-tuning's
    batch_size: int = 32  # at most: a small set takes smaller batches (see `schedule`)
    max_length: int = 128  # reviews are short; longer rows are truncated
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.1
    target_modules: list[str] | None = None
    seed: int = 0
    quantize: str | None = None

    def __post_init__(self) -> None:
        # `not x > 0` also refuses NaN, which every comparison answers False
        if not (self.epochs > 0 and self.learning_rate > 0 and self.batch_size >= 1 and self.lora_r >= 1):
            raise InputError("`epochs`, `learning_rate`, `batch_size` and `lora_r` must be positive.")
        if self.max_steps is not None and not (isinstance(self.max_steps, int) and self.max_steps >= 1):
            raise InputError(f"`max_steps` must be a whole number of at least 1, not {self.max_steps!r}.")


MIN_STEPS = 40  # a set of ~50 rows is 2 batches an epoch: too few updates to move LoRA at all in 6 epochs
EVALS = 10  # validation passes spread over a run (plus one before the first step)


def schedule(n_train: int, cfg: ClassifierTrainConfig, processes: int = 1) -> tuple[int, int]:
    """(batch size per process, optimiser steps): batches small enough for ~4 steps an epoch, and at least
    MIN_STEPS unless `max_steps` is given; under torchrun each step reads one batch per process."""
    batch = max(1, min(cfg.batch_size, math.ceil(n_train / 4)))
    if cfg.max_steps:
        return batch, cfg.max_steps
    return batch, max(MIN_STEPS, math.ceil(cfg.epochs * math.ceil(n_train / (batch * processes))))


@dataclass
class TrainResult:
    output_dir: str
    labels: list[str]
    metrics: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    best_step: int = 0
    initial_accuracy: float | None = None  # validation accuracy of the prototype head, before any step


def _labels(rows: list[dict]) -> list[str]:
    labels = sorted({str(r["label"]) for r in rows})
    if len(labels) < 2:
        raise InputError(f"The label column has a single class ({labels[0] if labels else 'none'}); need at least two.")
    return labels


def progress_callback(history: list[dict], on_log: Callable[[dict], None] | None, stop_event):
    """A TrainerCallback that records logs, reports each step, and ends training when ``stop_event`` is set.

    After a stop it also skips that epoch's evaluation and checkpoint, so Cancel returns quickly;
    the trainer's caller then saves the adapter trained so far.
    """
    from transformers import TrainerCallback

    class Progress(TrainerCallback):
        stopped = False

        def on_log(self, args, state, control, logs=None, **kwargs):
            entry = dict(logs or {}, step=state.global_step, max_steps=state.max_steps)
            history.append(entry)
            if on_log:
                on_log(entry)

        def on_step_end(self, args, state, control, **kwargs):
            if on_log:
                on_log({"step": state.global_step, "max_steps": state.max_steps})
            if distributed.should_stop(stop_event):  # the same step on every rank
                self.stopped = control.should_training_stop = True
                control.should_evaluate = False

        def on_epoch_end(self, args, state, control, **kwargs):
            if self.stopped:  # runs after DefaultFlowCallback, so this wins
                control.should_evaluate = control.should_save = False

    return Progress()


def _head(model, n_labels: int) -> torch.nn.Linear:
    """The classification head's last linear layer (BERT ``classifier``, RoBERTa ``classifier.out_proj``,
    decoder ``score``): the last Linear with one output per label."""
    heads = [m for m in model.modules() if isinstance(m, torch.nn.Linear) and m.out_features == n_labels]
    if not heads:
        raise InputError(f"{type(model).__name__} has no classification layer with {n_labels} outputs.")
    return heads[-1]


@torch.no_grad()
def init_head(model, tokenizer, rows: list[dict], label2id: dict[str, int], max_length: int, device) -> None:
    """Start the head as a nearest-class-mean classifier over the features it reads.

    Each class's weight row is the mean feature of its training rows (bias -|mean|^2/2), so before any step the
    model already classifies like class prototypes of the pretrained encoder, instead of at chance with a random
    head that the first steps must undo. A temperature fitted on the training rows makes the logits calibrated.
    """
    head = _head(model, len(label2id))
    captured: list[torch.Tensor] = []
    hook = head.register_forward_pre_hook(lambda module, args: captured.append(args[0].detach().float()))
    feats, ys = [], []
    was_training = model.training
    model.eval()
    try:
        for i in range(0, len(rows), 32):
            chunk = rows[i:i + 32]
            batch = tokenizer([str(r["text"]) for r in chunk], padding=True, truncation=True, max_length=max_length,
                              return_tensors="pt").to(device)
            captured.clear()
            model(**batch)
            x = captured[-1]
            if x.dim() == 3:  # a decoder's head reads every position; the model keeps the last real token's
                last = batch["attention_mask"].sum(1) - 1
                x = x[torch.arange(x.shape[0], device=x.device), last]
            feats.append(x.cpu())
            ys += [label2id[str(r["label"])] for r in chunk]
    finally:
        hook.remove()
        model.train(was_training)
    x, y = torch.cat(feats), torch.tensor(ys)
    means = torch.stack([x[y == c].mean(0) for c in range(len(label2id))])
    logits = x @ means.T - (means * means).sum(1) / 2 * (head.bias is not None)
    scale = min((torch.nn.functional.cross_entropy(logits * t, y).item(), t) for t in torch.logspace(-2, 3, 31).tolist())[1]
    head.weight.copy_((means * scale).to(head.weight.dtype))
    if head.bias is not None:
        head.bias.copy_((-(means * means).sum(1) / 2 * scale).to(head.bias.dtype))


def best_keeper(model):
    """A TrainerCallback that keeps the trainable weights of the best validation pass (accuracy, then loss).

    LoRA and head weights are small, so the copy stays in memory; ``restore`` puts the best back before saving.
    """
    from transformers import TrainerCallback

    class Best(TrainerCallback):
        score: tuple | None = None
        step = 0
        weights: dict[str, torch.Tensor] = {}

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            if not metrics or "eval_accuracy" not in metrics:
                return
            score = (metrics["eval_accuracy"], -metrics.get("eval_loss", 0.0))
            if self.score is None or score > self.score:
                self.score, self.step = score, state.global_step
                self.weights = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

        def restore(self) -> None:
            if self.weights:
                params = dict(model.named_parameters())
                with torch.no_grad():
                    for name, value in self.weights.items():
                        params[name].copy_(value)

    return Best()


def train_classifier(train_rows: list[dict], eval_rows: list[dict], cfg: ClassifierTrainConfig,
                     on_log: Callable[[dict], None] | None = None, stop_event=None) -> TrainResult:
    """Train a LoRA classifier on {"text", "label"} rows and save it as a PEFT adapter folder.

    The head starts from class prototypes; validation runs before the first step and ~EVALS times during the
    run, and the adapter saved is the best of those passes (the prototype start included).
    """
    import numpy as np
    from datasets import Dataset
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments, set_seed

    labels = _labels(train_rows)
    label2id = {label: i for i, label in enumerate(labels)}
    unknown = {str(r["label"]) for r in eval_rows} - set(labels)
    if unknown:
        raise InputError(f"Evaluation labels {sorted(unknown)} do not occur in the training data.")
    if not eval_rows:
        raise InputError("Classification needs validation rows to pick the best checkpoint; give more rows or a "
                         "validation file.")
    set_seed(cfg.seed)
    lm = load_for_training(cfg.base_model, head="sequence-classification", labels=labels, quantize=cfg.quantize)
    if lm.model.config.pad_token_id is None and lm.tokenizer.pad_token_id is not None:
        lm.model.config.pad_token_id = lm.tokenizer.pad_token_id  # decoders find each row's last token by it
    init_head(lm.model, lm.tokenizer, train_rows, label2id, cfg.max_length, lm.device)
    arch = lm.model.config.model_type
    lora = LoraConfig(task_type=TaskType.SEQ_CLS, r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=cfg.target_modules or TARGET_MODULES.get(arch))
    model = get_peft_model(lm.model, lora)

    def encode(rows: list[dict]) -> Dataset:
        ds = Dataset.from_list([{"text": str(r["text"]), "label": label2id[str(r["label"])]} for r in rows])
        return ds.map(lambda b: lm.tokenizer(b["text"], truncation=True, max_length=cfg.max_length),
                      batched=True, remove_columns=["text"])

    train_ds, eval_ds = encode(train_rows), encode(eval_rows)

    def metrics(pred) -> dict[str, float]:
        return {"accuracy": float((np.argmax(pred.predictions, -1) == pred.label_ids).mean())}

    history: list[dict[str, float]] = []
    progress = progress_callback(history, on_log, stop_event)
    best = best_keeper(model)
    batch, steps = schedule(len(train_rows), cfg, distributed.world_size())

    with tempfile.TemporaryDirectory() as scratch:
        args = TrainingArguments(
            output_dir=scratch, max_steps=steps, learning_rate=cfg.learning_rate,
            per_device_train_batch_size=batch, per_device_eval_batch_size=64,
            eval_strategy="steps", eval_steps=max(1, steps // EVALS), save_strategy="no",
            logging_steps=max(1, steps // 20), report_to=[], seed=cfg.seed,
            warmup_steps=int(0.06 * steps), weight_decay=0.01, lr_scheduler_type="linear",
            use_cpu=lm.device.type == "cpu", disable_tqdm=False,
            ddp_find_unused_parameters=False,  # under torchrun: LoRA's weights all take part in every step
        )
        trainer = Trainer(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
                          data_collator=DataCollatorWithPadding(lm.tokenizer), compute_metrics=metrics,
                          callbacks=[progress, best])
        initial = trainer.evaluate()  # step 0: the prototype head, a candidate like any later pass
        trainer.train()
        if best.step != trainer.state.global_step:
            best.restore()
        # of the weights saved (so the restore shows), not logged: the curve keeps the passes made during training
        final = trainer.predict(eval_ds, metric_key_prefix="eval").metrics
        distributed.report(trainer)
        stopped = progress.stopped

    ref = resolve(cfg.base_model)
    meta = {"task": "classification", "base_model": cfg.base_model,
            "base_model_hub_id": ref.builtin.hub_id if ref.builtin else cfg.base_model,
            "labels": labels, "metrics": {"eval_accuracy": final.get("eval_accuracy")}, "stopped_early": stopped,
            "train_examples": len(train_rows), "eval_examples": len(eval_rows),
            "best_step": best.step, "steps": trainer.state.global_step,
            "initial_accuracy": initial.get("eval_accuracy"),
            "config": {k: v for k, v in asdict(cfg).items() if k != "output_dir"} | {"batch_size": batch,
                                                                                   "max_steps": steps}}
    out = distributed.save_once(model, cfg.output_dir, meta)  # rank 0 writes; the others wait for it
    return TrainResult(str(out), labels, {"accuracy": float(final.get("eval_accuracy", 0.0))}, history,
                       best_step=best.step, initial_accuracy=initial.get("eval_accuracy"))


def train_default(output_dir: str | Path | None = None, **overrides) -> dict:
    """Reproduce the bundled adapter: LoRA on MiniLM over the bundled train split.

    One row in ten of the train split is held back for validation during training; the
    heldout split is only read at the end, to report accuracy on reviews the model never saw.
    """
    from lmdemo.jobs.sentiment import DEFAULT_ADAPTER, classify, load_split

    rows = load_split("train")
    train_rows = [r for i, r in enumerate(rows) if i % 10]
    val_rows = rows[::10]
    cfg = ClassifierTrainConfig(output_dir=str(output_dir or DEFAULT_ADAPTER), **overrides)
    result = train_classifier(train_rows, val_rows, cfg)
    heldout = load_split("heldout")
    predictions = classify([r["text"] for r in heldout], adapter=result.output_dir)
    correct = sum(p.label == r["label"] for p, r in zip(predictions, heldout))
    return {"output_dir": result.output_dir, "validation_accuracy": result.metrics["accuracy"],
            "heldout_accuracy": correct / len(heldout), "heldout_examples": len(heldout)}
