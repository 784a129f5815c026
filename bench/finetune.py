"""LoRA fine-tuning step time and peak memory: lmdemo's SFT trainer vs a plain peft + Trainer script.

Same model (SmolLM2-135M-Instruct), same LoRA config (r=8, alpha 16, dropout 0.05, all seven Llama
projections), same rows (tokenised by `lmdemo.train.sft.format_example`, so that losses are comparable), same
seed, batch and learning rate. Three settings: fp32, bf16 (Trainer's bf16 autocast over fp32 weights) and
4-bit (QLoRA, nf4 base through bitsandbytes). Each (side, setting) trains in its own fresh process, so peak
RSS (getrusage) is that run's alone; processes are interleaved (lmdemo, plain, lmdemo, ...). A step's time
is the gap between consecutive step ends (the first step, with its warm-up, is dropped); the median, min
and max over the measured steps are reported, and the step-time ratio is taken step by step. The loss
curves of both sides are compared step by step.

    python bench/finetune.py [--steps 7] [--batch 8] [--settings fp32 bf16 4bit] [--repeats 1] [--quick]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
from _common import child_json, print_json, print_table, summarise  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MODEL = "smollm2-135m-instruct"
LORA = dict(r=8, lora_alpha=16, lora_dropout=0.05)
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def rows(n: int) -> list[dict]:
    """Instruction pairs built from the bundled sentiment train split (the eval sets stay untouched)."""
    from lmdemo.jobs.sentiment import load_split

    return [{"prompt": f"Classify the sentiment of this review and quote it.\n{r['text']}",
             "response": f"{r['label'].capitalize()}: \"{r['text']}\""} for r in load_split("train")[:n]]


def child_lmdemo(setting: str, steps: int, batch: int) -> dict:
    from lmdemo.train.sft import SFTConfig, train_sft

    ends, losses = [], []

    def on_log(entry: dict) -> None:
        if "loss" in entry:
            losses.append(float(entry["loss"]))
        elif set(entry) == {"step", "max_steps"}:
            ends.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as out:
        cfg = SFTConfig(output_dir=str(Path(out) / "adapter"), base_model=MODEL, max_steps=steps, batch_size=batch,
                        max_length=128, target_modules=TARGETS, quantize="4bit" if setting == "4bit" else None,
                        bf16=setting == "bf16", lora_r=LORA["r"], lora_alpha=LORA["lora_alpha"],
                        lora_dropout=LORA["lora_dropout"])
        train_sft(rows(steps * batch), None, cfg, on_log=on_log)
    return {"ends": ends, "losses": losses}


def child_plain(setting: str, steps: int, batch: int) -> dict:
    import torch
    from datasets import Dataset
    from peft import LoraConfig, TaskType, get_peft_model, prepare_model_for_kbit_training
    from transformers import (AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig, Trainer, TrainerCallback,
                              TrainingArguments, set_seed)

    from lmdemo.models import store
    from lmdemo.train.sft import SFTCollator, format_example

    folder = store.ensure(MODEL)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    kwargs = {}
    if setting == "4bit":
        kwargs = dict(device_map={"": "cpu"}, quantization_config=BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.float32))
    set_seed(0)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, **kwargs)
    if setting == "4bit":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    model = get_peft_model(model, LoraConfig(task_type=TaskType.CAUSAL_LM, target_modules=TARGETS, **LORA))
    data = Dataset.from_list([format_example(tokenizer, r["prompt"], r["response"], 128) for r in rows(steps * batch)])
    ends, losses = [], []

    class Times(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            ends.append(time.perf_counter())

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "loss" in logs:
                losses.append(float(logs["loss"]))

    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(output_dir=out, max_steps=steps, learning_rate=2e-4, per_device_train_batch_size=batch,
                                 logging_steps=1, save_strategy="no", report_to=[], seed=0, warmup_steps=0,
                                 lr_scheduler_type="linear", use_cpu=True, bf16=setting == "bf16")
        Trainer(model=model, args=args, train_dataset=data, data_collator=SFTCollator(tokenizer.pad_token_id),
                callbacks=[Times()]).train()
    return {"ends": ends, "losses": losses}


def run_child(side: str, setting: str, steps: int, batch: int) -> dict:
    return child_json([__file__, "--child", side, setting, str(steps), str(batch)], f"{side}/{setting}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=7, help="optimizer steps per process; the first is dropped")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--settings", nargs="*", default=["fp32", "bf16", "4bit"])
    parser.add_argument("--repeats", type=int, default=1, help="processes per (side, setting)")
    parser.add_argument("--quick", action="store_true", help="4 steps of batch 4")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        side, setting, steps, batch = args.child
        result = (child_lmdemo if side == "lmdemo" else child_plain)(setting, int(steps), int(batch))
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return
    if args.quick:
        args.steps, args.batch = 4, 4
    from lmdemo.models import store

    store.prepare([MODEL])
    rows_out, results = [], {}
    for setting in args.settings:
        step_s = {"lmdemo": [], "plain": []}
        rss = {"lmdemo": [], "plain": []}
        losses = {}
        for _ in range(args.repeats):
            for side in ("lmdemo", "plain"):
                r = run_child(side, setting, args.steps, args.batch)
                step_s[side] += [b - a for a, b in zip(r["ends"][:-1], r["ends"][1:])]
                rss[side].append(r["peak_rss_mb"])
                losses[side] = r["losses"]
        ratios = [a / b for a, b in zip(step_s["lmdemo"], step_s["plain"])]
        o, p = summarise(step_s["lmdemo"]), summarise(step_s["plain"])
        diff = max((abs(a - b) for a, b in zip(losses["lmdemo"], losses["plain"])), default=float("nan"))
        results[setting] = {"lmdemo_s_per_step": o, "plain_s_per_step": p, "ratio_median": summarise(ratios)["median"],
                            "lmdemo_peak_rss_mb": max(rss["lmdemo"]), "plain_peak_rss_mb": max(rss["plain"]),
                            "losses": losses, "max_loss_diff": diff}
        rows_out.append([setting, f"{o['median']:.2f} ({o['min']:.2f}-{o['max']:.2f})",
                         f"{p['median']:.2f} ({p['min']:.2f}-{p['max']:.2f})",
                         f"{results[setting]['ratio_median']:.2f}x", f"{max(rss['lmdemo']):.0f}",
                         f"{max(rss['plain']):.0f}", f"{diff:.4f}"])
    print_table(f"LoRA SFT on {MODEL}, batch {args.batch}, max 128 tokens, s/step median (min-max) of "
                f"{args.repeats * (args.steps - 1)} steps; peak RSS of each fresh process",
                ["setting", "lmdemo s/step", "plain peft+Trainer s/step", "ratio", "lmdemo RSS MB", "plain RSS MB",
                 "max |loss diff|"], rows_out)
    print_json("finetune", {"model": MODEL, "steps": args.steps, "batch": args.batch, "results": results})


if __name__ == "__main__":
    main()
