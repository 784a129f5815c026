"""The GPU path, checked on a CUDA machine in about two minutes; prints one table (and writes it with --out).

    python bench/gpu_check.py [--out docs/gpu-check.md] [--new-tokens 64]

Rows: bf16 generation through lmdemo (and its speed against `transformers.pipeline` on the same model, same
text); the CPU-only fast paths (fastgen, fastencoder) stepping aside on CUDA; 4-bit and 8-bit loads (GPU memory
against bf16, and a reply from each); a few QLoRA steps (4-bit base through `prepare_model_for_kbit_training`,
loss finite, adapter saved and reloaded); sentiment on CUDA. Without CUDA it says so and exits 2;
``--allow-cpu`` runs the rows that do not need CUDA, to check the script itself.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
from _common import print_table  # noqa: E402

CHAT_MODEL = "smollm2-135m-instruct"
PROMPT = "Write a short story about a dragon who learns to cook."
SFT_ROWS = [{"prompt": f"What is {a} plus {b}?", "response": f"{a} plus {b} is {a + b}."}
            for a in range(2, 8) for b in range(3, 7)]


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


class Checks:
    """Rows of (check, ok, result); a failing check is a row, not the end of the run."""

    def __init__(self) -> None:
        self.rows: list[list[str]] = []

    def run(self, name: str, fn) -> None:
        start = time.perf_counter()
        try:
            ok, result = fn()
        except Exception as exc:  # noqa: BLE001 - the table says what failed, the log has the traceback
            traceback.print_exc()
            ok, result = False, f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"
        self.rows.append([name, "ok" if ok else "FAIL", result, f"{time.perf_counter() - start:.1f} s"])
        print(f"[{'ok' if ok else 'FAIL'}] {name}: {result}", flush=True)

    def skip(self, name: str, why: str) -> None:
        self.rows.append([name, "skipped", why, ""])


def check_generation(new_tokens: int):
    """bf16 greedy reply through lmdemo's generation job and through the transformers pipeline."""
    import torch
    from transformers import pipeline

    from lmdemo.engine.streaming import GenerationParams
    from lmdemo.jobs.generation import GenerationRequest, generate
    from lmdemo.models.loading import load

    params = GenerationParams(temperature=0, max_new_tokens=new_tokens, repetition_penalty=1.0)
    req = GenerationRequest(PROMPT, model=CHAT_MODEL, params=params)
    lm = load(CHAT_MODEL)
    pipe = pipeline("text-generation", model=lm.model, tokenizer=lm.tokenizer)
    messages = [{"role": "user", "content": PROMPT}]
    kwargs = dict(max_new_tokens=new_tokens, do_sample=False, return_full_text=False)
    generate(req), pipe(messages, **kwargs)  # warm: kernels, caches
    ours, times, texts = [], [], []
    for _ in range(3):  # interleaved, so both see the same machine state
        ours.append(generate(req))
        if lm.device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        texts.append(pipe(messages, **kwargs)[0]["generated_text"])
        if lm.device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    ours_tps = sorted(r.stats.tokens_per_second for r in ours)[1]
    n = len(lm.tokenizer(texts[0], add_special_tokens=False).input_ids)
    pipe_tps = n / sorted(times)[1]
    same = ours[0].text.strip() == texts[0].strip()
    return same, (f"{lm.device.type} {str(lm.dtype).removeprefix('torch.')}, backend {ours[0].stats.backend}: "
                  f"{ours_tps:.1f} tok/s vs pipeline {pipe_tps:.1f} tok/s ({ours_tps / pipe_tps:.2f}x); "
                  f"same text: {same}")


def check_fast_paths_step_aside():
    """On CUDA the CPU decode loop and the CPU encoder must not run: generate and the plain forward do."""
    from lmdemo.engine.fastencoder import supported
    from lmdemo.engine.fastgen import unsupported_reason
    from lmdemo.engine.streaming import GenerationParams
    from lmdemo.jobs.generation import GenerationRequest, generate
    from lmdemo.models.loading import load

    lm = load(CHAT_MODEL)
    reason = unsupported_reason(lm.model, lm.device)
    backend = generate(GenerationRequest("Hi", model=CHAT_MODEL,
                                         params=GenerationParams(temperature=0, max_new_tokens=4))).stats.backend
    enc = load("all-minilm-l6-v2", head="sequence-classification")
    on_cuda = lm.device.type == "cuda"
    ok = (reason is not None and backend == "transformers") if on_cuda else backend.startswith("fastgen")
    return ok, (f"fastgen: {reason or 'runs'}; generation backend {backend}; fastencoder would "
                f"{'run' if supported(enc.model) and enc.device.type == 'cpu' else 'step aside'} on {enc.device.type}")


def check_quantised(bits: str):
    """A quantised load's GPU memory against bf16, and a reply from it."""
    import torch

    from lmdemo.engine.streaming import GenerationParams
    from lmdemo.jobs.generation import GenerationRequest, generate
    from lmdemo.models.loading import load

    def peak(quantize: str) -> tuple[int, str]:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        lm = load("gemma-3-270m", quantize=quantize)
        used = torch.cuda.memory_allocated() - before
        text = generate(GenerationRequest("The capital of France is", mode="completion", model="gemma-3-270m",
                                          quantize=quantize, params=GenerationParams(temperature=0,
                                                                                     max_new_tokens=8))).text
        return max(used, lm.size_bytes), text

    full, _ = peak("none")
    used, text = peak(bits)
    return bool(text.strip()) and used < full, (f"gemma-3-270m {bits}: {_gib(used)} vs bf16 {_gib(full)} "
                                                f"({used / full:.2f}x); reply {text.strip()[:40]!r}")


def check_qlora(steps: int):
    """A few QLoRA steps on a 4-bit base (prepare_model_for_kbit_training), the adapter reloaded with PEFT."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from lmdemo.train.plan import FinetuneRequest, plan, run_plan

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "sft.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in SFT_ROWS))
        req = FinetuneRequest(task="sft", data=str(data), base=CHAT_MODEL, quantize="4bit", max_steps=steps,
                              output=str(Path(tmp) / "adapter"))
        torch.cuda.reset_peak_memory_stats()
        t = time.perf_counter()
        result = run_plan(plan(req))
        seconds = time.perf_counter() - t
        losses = [m["loss"] for m in result.history if "loss" in m] if result.history else []
        loss = result.metrics.get("train_loss", losses[-1] if losses else float("nan"))
        from lmdemo.models.registry import resolve

        base = AutoModelForCausalLM.from_pretrained(resolve(CHAT_MODEL).path, dtype=torch.bfloat16)
        PeftModel.from_pretrained(base, result.output_dir)
        return math.isfinite(loss), (f"{steps} steps in {seconds:.1f} s, train loss {loss:.3f}, peak "
                                     f"{_gib(torch.cuda.max_memory_allocated())}; adapter reloads with PeftModel")


def check_sentiment():
    from lmdemo.jobs.sentiment import SentimentRequest, run

    texts = ["The battery lasts all day and the screen is gorgeous.", "Not worth the money: it broke after two days."]
    run(SentimentRequest(texts))
    t = time.perf_counter()
    res = run(SentimentRequest(texts))
    labels = [r.label for r in res.results]
    return labels == ["positive", "negative"], f"{labels} in {1000 * (time.perf_counter() - t):.0f} ms"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", help="also write the table as Markdown to this file")
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--qlora-steps", type=int, default=5)
    ap.add_argument("--allow-cpu", action="store_true", help="no CUDA: run the rows that do not need it")
    args = ap.parse_args(argv)

    import torch

    cuda = torch.cuda.is_available()
    if not cuda and not args.allow_cpu:
        print("gpu_check: no CUDA device here (torch.cuda.is_available() is False); nothing to check. "
              "Run it on a GPU machine, or with --allow-cpu to try the script.", file=sys.stderr)
        return 2
    from lmdemo.models import store

    store.prepare()
    checks = Checks()
    checks.run("bf16 generation vs pipeline", lambda: check_generation(args.new_tokens))
    checks.run("CPU fast paths step aside", check_fast_paths_step_aside)
    checks.run("sentiment", check_sentiment)
    for bits in ("4bit", "8bit"):
        if cuda:
            checks.run(f"{bits} load", lambda bits=bits: check_quantised(bits))
        else:
            checks.skip(f"{bits} load", "needs CUDA (bitsandbytes)")
    if cuda:
        checks.run("QLoRA steps", lambda: check_qlora(args.qlora_steps))
    else:
        checks.skip("QLoRA steps", "needs CUDA (bitsandbytes)")
    device = torch.cuda.get_device_name(0) if cuda else "CPU (--allow-cpu)"
    title = f"GPU check: {device}, torch {torch.__version__}"
    header = ["check", "status", "result", "time"]
    print_table(title, header, checks.rows)
    if args.out:
        lines = [f"# {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(str(c).replace("|", "/") for c in row) + " |" for row in checks.rows]
        Path(args.out).write_text("\n".join(lines) + "\n")
    return 0 if all(row[1] != "FAIL" for row in checks.rows) else 1


if __name__ == "__main__":
    sys.exit(main())
