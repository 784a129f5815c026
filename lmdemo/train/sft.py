"""Instruction (SFT) LoRA fine-tuning of causal LMs with PEFT and the transformers Trainer.

Rows are ``{"prompt", "response"}`` pairs. Two prompt formats, picked by the tokenizer and named after the
generation job's modes, so inference feeds what training fed:

* **chat** (the tokenizer has a chat template, e.g. SmolLM2-Instruct): the conversation
  ``[{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]`` rendered
  by the template. The prompt part is the template with ``add_generation_prompt=True``; the
  response part is the rest of the rendered conversation (answer, end-of-turn token, ...).
* **completion** (no template, e.g. Gemma base): ``f"{prompt}\\n{response}{eos}"`` with the
  tokenizer's own special tokens (Gemma prepends ``<bos>``); the prompt part is ``f"{prompt}\\n"``.

The loss covers the response part only: prompt tokens and padding are labelled -100.
:func:`prompt_text` returns the prompt part as text; tokenised the way ``generation.build_inputs``
does in the mode of the same name (chat: the template's own markup, no extra special tokens; completion:
the tokenizer's defaults) it gives exactly the ids the model saw before each response in training.
The adapter's ``lmdemo.json`` records the format (``"format"``); :func:`trained_format` reads it back.
"""

from __future__ import annotations

import logging
import math
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Protocol

from lmdemo.errors import InputError
from lmdemo.train import distributed
from lmdemo.train.classifier import TARGET_MODULES, TrainResult, progress_callback
from lmdemo.models.adapters import adapter_meta
from lmdemo.models.loading import load_for_training
from lmdemo.models.registry import DEFAULT_CHAT_MODEL, resolve
from lmdemo.engine.streaming import neutralise_special_tokens

log = logging.getLogger(__name__)

IGNORE_INDEX = -100  # label value the causal-LM loss skips
PromptFormat = Literal["chat", "completion"]  # = GenerationRequest.mode that replays it
FORMATS = ("chat", "completion")


class StopEvent(Protocol):
    """threading.Event and multiprocessing.Event both fit."""

    def is_set(self) -> bool: ...


@dataclass
class SFTConfig:
    """Settings of one instruction fine-tuning run."""

    output_dir: str = field(metadata={"help": "Adapter folder to write (replaced when it exists)."})
    base_model: str = field(default=DEFAULT_CHAT_MODEL, metadata={"help": "Built-in name, local folder or Hub id."})
    epochs: float = field(default=3.0, metadata={"help": "Passes over the data; small SFT sets need a few."})
    max_steps: int | None = field(default=None, metadata={"help": "Optimizer steps; overrides `epochs` when set."})
    learning_rate: float = field(default=2e-4, metadata={"help": "LoRA's usual rate, ~10x full fine-tuning's."})
    batch_size: int = field(default=8, metadata={"help": "Rows per optimizer step."})
    max_length: int = field(default=256, metadata={"help": "Tokens per row (prompt + response); longer rows are cut."})
    lora_r: int = field(default=8, metadata={"help": "LoRA rank; 8 is plenty for style/format tuning."})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA scale numerator (alpha/r = 2, PEFT's usual ratio)."})
    lora_dropout: float = field(default=0.05, metadata={"help": "Dropout on the LoRA input."})
    target_modules: list[str] | None = field(default=None, metadata={"help": "None: TARGET_MODULES for the architecture."})
    seed: int = field(default=0, metadata={"help": "Seed for LoRA init, dropout and shuffling."})
    quantize: str | None = field(default=None, metadata={"help": "4bit: QLoRA (nf4 base). None/none: fp32 base."})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "Recompute activations: less memory, ~30% slower."})
    bf16: bool = field(default=False, metadata={"help": "bf16 autocast over fp32 weights (Trainer's bf16=True); fast on AVX512-BF16/AMX CPUs and GPUs."})
    save_steps: int | None = field(default=None, metadata={"help": "Checkpoint every N steps into <output_dir>.checkpoints."})

    def __post_init__(self) -> None:
        if not str(self.output_dir or "").strip():
            raise InputError("`output_dir` is empty: give the adapter folder to write.")
        if not str(self.base_model or "").strip():
            raise InputError("`base_model` is empty: give a built-in name, a folder or a Hub id.")
        if not self.epochs > 0:
            raise InputError(f"`epochs` must be positive; got {self.epochs}.")
        if self.max_steps is not None and self.max_steps < 1:
            raise InputError(f"`max_steps` must be at least 1 (or None for `epochs`); got {self.max_steps}.")
        if not self.learning_rate > 0:
            raise InputError(f"`learning_rate` must be positive; got {self.learning_rate}.")
        if self.batch_size < 1:
            raise InputError(f"`batch_size` must be at least 1; got {self.batch_size}.")
        if self.max_length < 8:
            raise InputError(f"`max_length` must be at least 8 tokens; got {self.max_length}.")
        if self.lora_r < 1:
            raise InputError(f"`lora_r` must be at least 1; got {self.lora_r}.")
        if not self.lora_alpha > 0:
            raise InputError(f"`lora_alpha` must be positive; got {self.lora_alpha}.")
        if not 0 <= self.lora_dropout < 1:
            raise InputError(f"`lora_dropout` must be in [0, 1); got {self.lora_dropout}.")
        if self.target_modules is not None and not self.target_modules:
            raise InputError("`target_modules` is an empty list: give module names or None for the defaults.")
        if self.quantize is not None:
            self.quantize = str(self.quantize).strip().lower()
            if self.quantize not in ("none", "4bit", "8bit"):
                raise InputError(f"`quantize` must be None, none, 4bit or 8bit; got {self.quantize!r}.")
        if self.save_steps is not None and self.save_steps < 1:
            raise InputError(f"`save_steps` must be at least 1 (or None for no checkpoints); got {self.save_steps}.")


# ---------------------------------------------------------------- formatting

def prompt_format(tokenizer) -> PromptFormat:
    """chat when the tokenizer has a chat template, else completion."""
    return "chat" if getattr(tokenizer, "chat_template", None) else "completion"


def trained_format(adapter_folder: str | Path) -> PromptFormat | None:
    """The format an SFT adapter was trained in, from its lmdemo.json; None when it does not say."""
    meta = adapter_meta(Path(adapter_folder))
    # Adapters saved before "format" existed recorded "prompt_format": chat or plain (= completion).
    fmt = meta.get("format") or {"chat": "chat", "plain": "completion"}.get(meta.get("prompt_format"))
    return fmt if fmt in FORMATS else None


def _format(tokenizer, fmt: PromptFormat | None) -> PromptFormat:
    """``fmt`` checked against the tokenizer (None: the tokenizer's own)."""
    if fmt is None:
        return prompt_format(tokenizer)
    if fmt not in FORMATS:
        raise InputError(f"`fmt` must be chat or completion; got {fmt!r}.")
    if fmt == "chat" and not getattr(tokenizer, "chat_template", None):
        raise InputError("The chat format needs a tokenizer with a chat template; this one has none (a base model?).")
    return fmt


def prompt_text(tokenizer, prompt: str, fmt: PromptFormat | None = None) -> str:
    """The text inference must feed (before the model's answer) so generation matches training.

    ``fmt``: chat or completion (None: the tokenizer's own, as training picks it).
    """
    prompt = neutralise_special_tokens(prompt, tokenizer)
    if _format(tokenizer, fmt) == "chat":
        return tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                             add_generation_prompt=True)
    return f"{prompt}\n"


def _ids(tokenizer, text: str, special: bool) -> list[int]:
    return list(tokenizer(text, add_special_tokens=special)["input_ids"])


def format_example(tokenizer, prompt: str, response: str, max_length: int | None = None,
                   fmt: PromptFormat | None = None) -> dict[str, list[int]]:
    """input_ids, attention_mask and labels of one row; labels are -100 on the prompt part.

    ``fmt``: chat or completion (None: the tokenizer's own); evaluation passes the adapter's recorded one.
    """
    # Prompt and response are tokenised apart and concatenated, so the prompt ids are exactly
    # what inference feeds (a joint tokenisation could merge tokens across the boundary).
    fmt = _format(tokenizer, fmt)
    head = prompt_text(tokenizer, prompt, fmt)
    response = neutralise_special_tokens(response, tokenizer)
    if fmt == "chat":
        conversation = [{"role": "user", "content": neutralise_special_tokens(prompt, tokenizer)},
                        {"role": "assistant", "content": response}]
        full = tokenizer.apply_chat_template(conversation, tokenize=False)
        if not full.startswith(head):
            raise InputError("This chat template renders the prompt differently with and without the answer; "
                             "cannot tell prompt from response tokens.")
        prompt_ids, response_ids = _ids(tokenizer, head, False), _ids(tokenizer, full[len(head):], False)
    else:
        prompt_ids, response_ids = _ids(tokenizer, head, True), _ids(tokenizer, response, False)
        if tokenizer.eos_token_id is not None:
            response_ids.append(tokenizer.eos_token_id)  # teaches the model to stop
    input_ids = (prompt_ids + response_ids)[:max_length]
    labels = ([IGNORE_INDEX] * len(prompt_ids) + response_ids)[:max_length]
    return {"input_ids": input_ids, "attention_mask": [1] * len(input_ids), "labels": labels}


class SFTCollator:
    """Right-pads a batch: input_ids with the pad id, labels with -100, attention_mask with 0."""

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        width = max(len(f["input_ids"]) for f in features)
        pads = {"input_ids": self.pad_token_id, "attention_mask": 0, "labels": IGNORE_INDEX}
        return {key: torch.tensor([list(f[key]) + [pad] * (width - len(f[key])) for f in features], dtype=torch.long)
                for key, pad in pads.items()}


# ---------------------------------------------------------------- training

def _check_rows(rows: list[dict], what: str) -> None:
    bad = sum(1 for r in rows
              if not str(r.get("prompt") or "").strip() or not str(r.get("response") or "").strip())
    if bad:
        raise InputError(f"{bad} of {len(rows)} {what} rows have an empty `prompt` or `response`.")


def _encode(rows: list[dict], tokenizer, max_length: int, what: str, fmt: PromptFormat | None = None):
    from datasets import Dataset

    encoded = [format_example(tokenizer, str(r["prompt"]), str(r["response"]), max_length, fmt) for r in rows]
    # A prompt that fills max_length leaves no response token to learn from (and a NaN loss).
    kept = [e for e in encoded if any(label != IGNORE_INDEX for label in e["labels"])]
    if not kept:
        raise InputError(f"All {len(rows)} {what} rows have prompts of {max_length}+ tokens, leaving no room for "
                         f"the response: raise `max_length` or shorten the prompts.")
    if len(kept) < len(encoded):
        log.warning("skipped %d of %d %s rows whose prompt fills max_length=%d", len(encoded) - len(kept),
                    len(encoded), what, max_length)
    return Dataset.from_list(kept)


def train_sft(train_rows: list[dict], eval_rows: list[dict] | None, cfg: SFTConfig,
              on_log: Callable[[dict], None] | None = None, stop_event: StopEvent | None = None) -> TrainResult:
    """Train a LoRA (QLoRA with quantize="4bit") adapter on {"prompt", "response"} rows and save it."""
    eval_rows = list(eval_rows or [])
    if not train_rows:
        raise InputError("No training rows: give at least one {prompt, response} pair.")
    _check_rows(train_rows, "training")
    _check_rows(eval_rows, "evaluation")

    from transformers import set_seed

    set_seed(cfg.seed)
    lm = load_for_training(cfg.base_model, head="causal-lm", quantize=cfg.quantize or "none")
    tokenizer, model = lm.tokenizer, lora_model(lm, cfg, "CAUSAL_LM")

    fmt = prompt_format(tokenizer)  # recorded below: evaluation and generation replay it
    train_ds = _encode(train_rows, tokenizer, cfg.max_length, "training", fmt)
    eval_ds = _encode(eval_rows, tokenizer, cfg.max_length, "evaluation", fmt) if eval_rows else None
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    trainer, metrics, history, stopped = fit(model, lm.device, cfg, train_ds, eval_ds, SFTCollator(pad_id),
                                             on_log, stop_event)

    ref = resolve(cfg.base_model)
    meta = {"task": "sft", "base_model": cfg.base_model,
            "base_model_hub_id": ref.builtin.hub_id if ref.builtin else cfg.base_model,
            "format": fmt, "metrics": metrics,
            "train_examples": len(train_ds), "eval_examples": len(eval_ds) if eval_ds is not None else 0,
            "steps": trainer.state.global_step, "stopped_early": stopped,
            "config": {k: v for k, v in asdict(cfg).items() if k != "output_dir"}}
    out = distributed.save_once(model, cfg.output_dir, meta)  # rank 0 writes; the others wait for it
    return TrainResult(str(out), [], metrics, history)


def lora_model(lm, cfg: SFTConfig, task_type: str):
    """The PEFT model to train: LoRA on the architecture's projections; a quantised base prepared for it."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    model = lm.model
    if lm.quantized:
        # Casts norms to fp32 and freezes the quantised base; enables checkpointing when asked.
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.gradient_checkpointing,
                                                gradient_checkpointing_kwargs={"use_reentrant": False})
    lora = LoraConfig(task_type=task_type, r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=cfg.target_modules or TARGET_MODULES.get(model.config.model_type))
    return get_peft_model(model, lora)


def fit(model, device, cfg: SFTConfig, train_ds, eval_ds, collator, on_log: Callable[[dict], None] | None,
        stop_event: StopEvent | None):
    """The transformers Trainer over a PEFT model: (trainer, metrics, history, stopped early)."""
    from transformers import Trainer, TrainingArguments

    total_steps = cfg.max_steps or math.ceil(cfg.epochs * math.ceil(len(train_ds) / cfg.batch_size))
    history: list[dict[str, float]] = []
    progress = progress_callback(history, on_log, stop_event)
    gc_kwargs = {"use_reentrant": False}  # the reentrant variant needs inputs that require grad
    checkpoints = Path(cfg.output_dir).with_name(Path(cfg.output_dir).name + ".checkpoints")
    with tempfile.TemporaryDirectory() as scratch:
        args = TrainingArguments(
            output_dir=str(checkpoints) if cfg.save_steps else scratch,
            num_train_epochs=cfg.epochs, max_steps=cfg.max_steps or -1, learning_rate=cfg.learning_rate,
            per_device_train_batch_size=cfg.batch_size, per_device_eval_batch_size=cfg.batch_size,
            eval_strategy="epoch" if eval_ds is not None else "no",
            save_strategy="steps" if cfg.save_steps else "no", save_steps=cfg.save_steps or 500,
            save_total_limit=2,  # adapters are small, but a long run would still pile them up
            logging_steps=max(1, min(10, total_steps // 10)),  # >= ~10 progress reports per run
            report_to=[], seed=cfg.seed, warmup_steps=int(0.03 * total_steps), weight_decay=0.0,
            lr_scheduler_type="linear", activation_checkpointing=cfg.gradient_checkpointing,
            activation_checkpointing_kwargs=gc_kwargs, use_cpu=device.type == "cpu",
            dataloader_pin_memory=device.type == "cuda", disable_tqdm=False, bf16=cfg.bf16,
            ddp_find_unused_parameters=False,  # under torchrun: LoRA's weights all take part in every step
        )
        trainer = Trainer(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
                          data_collator=collator, callbacks=[progress])
        output = trainer.train()
        distributed.report(trainer)
        metrics: dict[str, float] = {"train_loss": float(output.training_loss)}
        stopped = progress.stopped
        if eval_ds is not None and not stopped:
            last = next((h for h in reversed(history) if "eval_loss" in h), None)
            if last is None or last["step"] != trainer.state.global_step:  # the epoch-end eval may be current
                last = trainer.evaluate()
            metrics["eval_loss"] = float(last["eval_loss"])
    return trainer, metrics, history, stopped
