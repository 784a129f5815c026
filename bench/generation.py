"""Greedy generation speed: lmdemo's path (`textgen.stream`) vs `transformers.pipeline("text-generation")`.

Both sides use the same loaded model object (same weights and dtype), greedy decoding, no repetition
penalty, batch 1, and stream through a `TextIteratorStreamer` on a thread, as an app would. Per sample:

- TTFT: wall time of a call with max_new_tokens=1 (tokenising, prefill and the first token);
- decode tok/s: (n - 1) / (wall time of an n-token call - that TTFT), n the tokens actually produced.

Runs are interleaved (lmdemo, pipeline, lmdemo, ...) so that both see the same machine state; ratios are
taken pair by pair and their median reported. The texts of both sides are compared (greedy must match).

    python bench/generation.py [--runs 5] [--new-tokens 64] [--models NAME ...] [--quick]
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
from _common import print_json, print_table, summarise  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHORT = {"chat": "Write a long story about a dragon who learns to cook.",  # 20-token chat prompt with template
         "completion": "Once upon a time, in a small village by the sea, there lived an old fisherman who"}


def long_prompt(tokenizer, tokens: int = 1000) -> str:
    """About `tokens` tokens of a fixed English text (tests/data/long_text.md), as a summarisation request would send."""
    text = (ROOT / "tests" / "data" / "long_text.md").read_text(encoding="utf-8")
    ids = tokenizer(text, add_special_tokens=False)["input_ids"][:tokens]
    return tokenizer.decode(ids)


def lmdemo_call(lm, inputs, new: int) -> tuple[float, str, int]:
    from lmdemo.engine.streaming import GenerationParams, stream
    from lmdemo.jobs.base import run_to_end

    params = GenerationParams(max_new_tokens=new, temperature=0, repetition_penalty=1.0)
    t = time.perf_counter()
    text, stats = run_to_end(stream(lm, inputs, params))
    return time.perf_counter() - t, text, stats.tokens


def pipeline_call(pipe, prompt, new: int) -> tuple[float, str, int]:
    from transformers import TextIteratorStreamer

    streamer = TextIteratorStreamer(pipe.tokenizer, skip_prompt=True, skip_special_tokens=True)
    out: list = []
    t = time.perf_counter()
    thread = threading.Thread(target=lambda: out.append(pipe(
        prompt, max_new_tokens=new, do_sample=False, temperature=None, top_p=None, top_k=None,
        repetition_penalty=1.0, streamer=streamer, return_tensors=True)))
    thread.start()
    text = "".join(streamer)
    thread.join()
    seconds = time.perf_counter() - t
    ids = out[0][0]["generated_token_ids"]
    prompt_len = len(pipe.tokenizer.apply_chat_template(prompt, add_generation_prompt=True)["input_ids"]
                     if isinstance(prompt, list) else pipe.tokenizer(prompt)["input_ids"])
    return seconds, text, len(ids) - prompt_len


def bench_case(lm, pipe, mode: str, prompt_text: str, runs: int, new: int) -> dict:
    from lmdemo.jobs.generation import GenerationRequest, build_inputs

    req = GenerationRequest(prompt_text, mode=mode, model=lm.spec.model)
    inputs = build_inputs(lm, req)
    prompt = [{"role": "user", "content": prompt_text}] if mode == "chat" else prompt_text
    setup = time.perf_counter()
    lmdemo_call(lm, inputs, 2)  # warm-up; the first fastgen call also prepacks the weights
    setup = time.perf_counter() - setup
    pipeline_call(pipe, prompt, 2)
    ours = {"ttft": [], "tps": []}
    base = {"ttft": [], "tps": []}
    same = True
    for _ in range(runs):
        for side, call, arg in ((ours, lmdemo_call, (lm, inputs)), (base, pipeline_call, (pipe, prompt))):
            first, _, _ = call(*arg, 1)
            total, text, n = call(*arg, new)
            side["ttft"].append(first)
            side["tps"].append((n - 1) / max(total - first, 1e-9))
            side["text"] = text
        same = same and ours["text"] == base["text"]
    return {"prompt_tokens": int(inputs["input_ids"].shape[1]), "first_call_s": setup, "same_text": same,
            "lmdemo": {k: summarise(v) for k, v in ours.items() if k != "text"},
            "pipeline": {k: summarise(v) for k, v in base.items() if k != "text"},
            "decode_ratio": summarise([a / b for a, b in zip(ours["tps"], base["tps"])])["median"],
            "ttft_ratio": summarise([a / b for a, b in zip(ours["ttft"], base["ttft"])])["median"]}


def main() -> None:
    import torch
    from transformers import pipeline

    from lmdemo.models import store
    from lmdemo.models.loading import load

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--models", nargs="*", default=["smollm2-135m-instruct", "gemma-3-270m"])
    parser.add_argument("--prompts", nargs="*", default=["short", "long"], choices=["short", "long"])
    parser.add_argument("--fastgen-weights", default="exact", choices=["exact", "int8", "int4", "gguf"],
                        help="lmdemo side: exact (default, same tokens), the int8/int4 opt-in or llama.cpp on the "
                             "built-in's GGUF file (output changes)")
    parser.add_argument("--quick", action="store_true", help="2 runs, 16 new tokens, short prompts only")
    args = parser.parse_args()
    if args.fastgen_weights != "exact":
        from dataclasses import replace

        from lmdemo.config import get_settings, set_settings

        set_settings(replace(get_settings(), fastgen_weights=args.fastgen_weights))
    if args.quick:
        args.runs, args.new_tokens = 2, 16
    store.prepare(args.models)
    rows, results = [], {}
    fmt = lambda s, scale=1, d=1: f"{s['median'] * scale:.{d}f} ({s['min'] * scale:.{d}f}-{s['max'] * scale:.{d}f})"  # noqa: E731
    for name in args.models:
        lm = load(name)
        mode = "chat" if getattr(lm.tokenizer, "chat_template", None) else "completion"
        pipe = pipeline("text-generation", model=lm.model, tokenizer=lm.tokenizer)
        cases = {"short": SHORT[mode]} if "short" in args.prompts else {}
        if not args.quick and "long" in args.prompts:
            cases["~1k tokens"] = ("Summarise this text in two sentences.\n\n" if mode == "chat" else "") + \
                long_prompt(lm.tokenizer)
        for label, text in cases.items():
            r = bench_case(lm, pipe, mode, text, args.runs, args.new_tokens)
            results[f"{name}/{label}"] = r
            rows.append([name, f"{label} ({r['prompt_tokens']})", fmt(r["lmdemo"]["tps"]), fmt(r["pipeline"]["tps"]),
                         f"{r['decode_ratio']:.2f}x", fmt(r["lmdemo"]["ttft"], 1000, 0),
                         fmt(r["pipeline"]["ttft"], 1000, 0), "yes" if r["same_text"] else "NO"])
    print_table(f"Greedy generation, {args.new_tokens} new tokens, batch 1, {torch.get_num_threads()} threads, "
                f"fastgen weights {args.fastgen_weights}; "
                f"median (min-max) of {args.runs} interleaved runs",
                ["model", "prompt (tokens)", "lmdemo tok/s", "pipeline tok/s", "decode ratio", "lmdemo TTFT ms",
                 "pipeline TTFT ms", "same text"], rows)
    print_json("generation", {"runs": args.runs, "new_tokens": args.new_tokens, "fastgen_weights": args.fastgen_weights,
                              "results": results})


if __name__ == "__main__":
    main()
