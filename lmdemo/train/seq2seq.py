"""LoRA fine-tuning of encoder-decoder models (Marian, T5, BART, mBART, NLLB/M2M100) on source/target pairs.

Rows are ``{"source", "target"}``. The source is read exactly as Translate/Summarise feed the model
(:mod:`lmdemo.engine.seq2seq`: T5's task prefix, the source language code), and the target is labelled the way
the decoder should answer (the target language code first where the family forces it, EOS last), so the adapter
is used at inference the way it was trained. The adapter is a standard PEFT folder (task type SEQ_2_SEQ_LM).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable

from lmdemo.data.languages import LANGUAGES
from lmdemo.errors import InputError
from lmdemo.models import families
from lmdemo.models.loading import load_for_training
from lmdemo.models.registry import resolve
from lmdemo.train import distributed
from lmdemo.train.classifier import TrainResult
from lmdemo.train.sft import SFTConfig, StopEvent, fit, lora_model

TASKS = ("translation", "summarisation")


@dataclass
class Seq2SeqConfig(SFTConfig):
    """Settings of one seq2seq run: SFT's, plus what the pairs are and, for translation, their languages."""

    base_model: str = field(default="", metadata={"help": "An encoder-decoder model: folder or Hub id."})
    task: str = field(default="translation", metadata={"help": "translation or summarisation: the metric and the "
                                                               "prefix/language codes the base reads"})
    source: str = field(default="en", metadata={"help": "Source language (translation)."})
    target: str = field(default="fr", metadata={"help": "Target language (translation)."})
    learning_rate: float = field(default=1e-3, metadata={"help": "Small seq2seq models take a higher LoRA rate."})

    def __post_init__(self) -> None:
        if not str(self.base_model or "").strip():
            raise InputError("seq2seq fine-tuning needs a base model: an encoder-decoder folder or Hub id "
                             "(e.g. Helsinki-NLP/opus-mt-en-fr, google-t5/t5-small).")
        super().__post_init__()
        self.task = {"summarization": "summarisation"}.get(str(self.task).strip(), str(self.task).strip())
        if self.task not in TASKS:
            raise InputError(f"`task` must be translation or summarisation; got {self.task!r}.")
        for key in ("source", "target"):
            code = str(getattr(self, key)).strip().lower()
            if code not in LANGUAGES:
                raise InputError(f"`{key}` language {code!r} is not supported; choose one of {', '.join(LANGUAGES)}.")
            setattr(self, key, code)


def _check_rows(rows: list[dict], what: str) -> None:
    bad = sum(1 for r in rows if not str(r.get("source") or "").strip() or not str(r.get("target") or "").strip())
    if bad:
        raise InputError(f"{bad} of {len(rows)} {what} rows have an empty `source` or `target`.")


def setup_for(lm, info, cfg: Seq2SeqConfig):
    """How the base reads a source for this task: the same setup Translate/Summarise use."""
    from lmdemo.engine import seq2seq

    if cfg.task == "translation":
        return seq2seq.translation_setup(lm, info, cfg.base_model, cfg.source, cfg.target)
    return seq2seq.summary_setup(info)


def train_seq2seq(train_rows: list[dict], eval_rows: list[dict] | None, cfg: Seq2SeqConfig,
                  on_log: Callable[[dict], None] | None = None, stop_event: StopEvent | None = None) -> TrainResult:
    """Train a LoRA adapter on {"source", "target"} rows and save it."""
    from datasets import Dataset
    from transformers import DataCollatorForSeq2Seq, set_seed

    from lmdemo.engine import seq2seq

    eval_rows = list(eval_rows or [])
    if not train_rows:
        raise InputError("No training rows: give at least one {source, target} pair.")
    _check_rows(train_rows, "training")
    _check_rows(eval_rows, "evaluation")
    info = families.require(cfg.base_model, "train-seq2seq")
    set_seed(cfg.seed)
    lm = load_for_training(cfg.base_model, head="seq2seq-lm", quantize=cfg.quantize or "none")
    setup = setup_for(lm, info, cfg)
    model = lora_model(lm, cfg, "SEQ_2_SEQ_LM")

    def encode(rows: list[dict]):
        out = []
        for r in rows:
            ids = seq2seq.encode(lm, str(r["source"]), setup, cfg.max_length)["input_ids"][0].tolist()
            out.append({"input_ids": ids, "attention_mask": [1] * len(ids),
                        "labels": seq2seq.encode_target(lm, str(r["target"]), setup, cfg.max_length)})
        return Dataset.from_list(out)

    train_ds = encode(train_rows)
    eval_ds = encode(eval_rows) if eval_rows else None
    collator = DataCollatorForSeq2Seq(lm.tokenizer, model=model, label_pad_token_id=-100)
    trainer, metrics, history, stopped = fit(model, lm.device, cfg, train_ds, eval_ds, collator, on_log, stop_event)

    ref = resolve(cfg.base_model)
    meta = {"task": cfg.task, "base_model": cfg.base_model,
            "base_model_hub_id": ref.builtin.hub_id if ref.builtin else cfg.base_model,
            "prefix": setup.prefix, "metrics": metrics,
            "train_examples": len(train_ds), "eval_examples": len(eval_ds) if eval_ds is not None else 0,
            "steps": trainer.state.global_step, "stopped_early": stopped,
            "config": {k: v for k, v in asdict(cfg).items() if k != "output_dir"}}
    if cfg.task == "translation":
        meta.update(source=cfg.source, target=cfg.target)
    out = distributed.save_once(model, cfg.output_dir, meta)  # rank 0 writes; the others wait for it
    return TrainResult(str(out), [], metrics, history)
