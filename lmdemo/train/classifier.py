"""LoRA fine-tuning of text classifiers with PEFT and the transformers Trainer."""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass, field
from typing import Callable

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
    learning_rate: float = 1e-3  # LoRA and a fresh head tolerate a rate ~10x full fine-tuning's
    batch_size: int = 32
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


@dataclass
class TrainResult:
    output_dir: str
    labels: list[str]
    metrics: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)


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

        def on_epoch_end(self, args, state, control, **kwargs):
            if self.stopped:  # runs after DefaultFlowCallback, so this wins
                control.should_evaluate = control.should_save = False

    return Progress()


def train_classifier(train_rows: list[dict], eval_rows: list[dict], cfg: ClassifierTrainConfig,
                     on_log: Callable[[dict], None] | None = None, stop_event=None) -> TrainResult:
    """Train a LoRA classifier on {"text", "label"} rows and save it as a PEFT adapter folder."""
    import numpy as np
    from datasets import Dataset
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments, set_seed

    labels = _labels(train_rows)
    label2id = {label: i for i, label in enumerate(labels)}
    unknown = {str(r["label"]) for r in eval_rows} - set(labels)
    if unknown:
        raise InputError(f"Evaluation labels {sorted(unknown)} do not occur in the training data.")
    set_seed(cfg.seed)
    lm = load_for_training(cfg.base_model, head="sequence-classification", labels=labels, quantize=cfg.quantize)
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

    with tempfile.TemporaryDirectory() as scratch:
        args = TrainingArguments(
            output_dir=scratch, num_train_epochs=cfg.epochs, learning_rate=cfg.learning_rate,
            per_device_train_batch_size=cfg.batch_size, per_device_eval_batch_size=64,
            eval_strategy="epoch", save_strategy="no", logging_steps=10, report_to=[], seed=cfg.seed,
            warmup_steps=int(0.06 * cfg.epochs * -(-len(train_rows) // cfg.batch_size)), weight_decay=0.01, lr_scheduler_type="linear",
            use_cpu=lm.device.type == "cpu", disable_tqdm=False,
            ddp_find_unused_parameters=False,  # under torchrun: LoRA's weights all take part in every step
        )
        trainer = Trainer(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
                          data_collator=DataCollatorWithPadding(lm.tokenizer), compute_metrics=metrics,
                          callbacks=[progress])
        trainer.train()
        final = trainer.evaluate()
        distributed.report(trainer)
        stopped = progress.stopped

    ref = resolve(cfg.base_model)
    meta = {"task": "classification", "base_model": cfg.base_model,
            "base_model_hub_id": ref.builtin.hub_id if ref.builtin else cfg.base_model,
            "labels": labels, "metrics": {"eval_accuracy": final.get("eval_accuracy")}, "stopped_early": stopped,
            "train_examples": len(train_rows), "eval_examples": len(eval_rows),
            "config": {k: v for k, v in asdict(cfg).items() if k != "output_dir"}}
    out = distributed.save_once(model, cfg.output_dir, meta)  # rank 0 writes; the others wait for it
    return TrainResult(str(out), labels, {"accuracy": float(final.get("eval_accuracy", 0.0))}, history)


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
