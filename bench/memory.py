"""Memory of each loaded built-in per quantisation: lmdemo `load()` vs plain `from_pretrained`.

Each sample is a fresh Python process: RSS after the imports, after loading the model (delta = what the model
costs the process), and for causal LMs after a first 8-token greedy generation (lmdemo: its fast decode path,
which keeps oneDNN-prepacked copies of the weights; plain: `model.generate`). `get_memory_footprint()` is
the parameters and buffers as transformers counts them. Both sides load the same folder in the same dtype
and BitsAndBytesConfig; lmdemo and plain processes are interleaved.

    python bench/memory.py [--runs 5] [--models NAME ...] [--quantize none 8bit 4bit] [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
from _common import child_json, print_json, print_table, summarise  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import json, sys, psutil, torch, transformers
from lmdemo.models import store
from lmdemo.models.loading import load, quantization_config, resolve_dtype
proc = psutil.Process()
side, name, quantize = sys.argv[1:4]
causal = name != "all-minilm-l6-v2"
rss = lambda: proc.memory_info().rss / 2**20
before = rss()
if side == "lmdemo":
    lm = load(name, head="causal-lm" if causal else "encoder", quantize=quantize)
    model, tok, notes = lm.model, lm.tokenizer, lm.notes
else:
    folder = store.ensure(name)
    dtype = resolve_dtype("auto", torch.device("cpu"))
    kwargs = {"dtype": dtype}
    q = quantization_config(quantize, dtype)
    if q is not None:
        kwargs.update(quantization_config=q, device_map={"": "cpu"})
    cls = transformers.AutoModelForCausalLM if causal else transformers.AutoModel
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    model, notes = cls.from_pretrained(folder, **kwargs).eval(), []
loaded = rss()
generated = None
if causal:
    ids = tok("The weather today is", return_tensors="pt")
    if side == "lmdemo":
        from lmdemo.engine.streaming import GenerationParams, stream
        from lmdemo.jobs.base import run_to_end
        run_to_end(stream(lm, dict(ids), GenerationParams(max_new_tokens=8, temperature=0)))
    else:
        with torch.inference_mode():
            model.generate(**ids, max_new_tokens=8, do_sample=False)
    generated = rss()
print(json.dumps({"before": before, "loaded": loaded, "generated": generated,
                  "footprint": model.get_memory_footprint() / 2**20, "notes": notes}))
"""


def sample(side: str, name: str, quantize: str) -> dict:
    return child_json(["-c", CHILD, side, name, quantize], f"{side} {name} {quantize}")


def main() -> None:
    from lmdemo.models import store

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--models", nargs="*", default=list(store.BUILTINS))
    parser.add_argument("--quantize", nargs="*", default=["none", "8bit", "4bit"])
    parser.add_argument("--quick", action="store_true", help="1 run, SmolLM2 only")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.models = 1, ["smollm2-135m-instruct"]
    store.prepare(args.models)
    rows, results = [], {}
    fmt = lambda s: f"{s['median']:.0f} ({s['min']:.0f}-{s['max']:.0f})" if s else "-"  # noqa: E731
    for name in args.models:
        for quantize in args.quantize:
            got: dict[str, list[dict]] = {"lmdemo": [], "plain": []}
            for _ in range(args.runs):
                for side in got:
                    got[side].append(sample(side, name, quantize))
            entry = {}
            for side, samples in got.items():
                load_mb = summarise([s["loaded"] - s["before"] for s in samples])
                gen = [s["generated"] - s["before"] for s in samples if s["generated"] is not None]
                entry[side] = {"load_mb": load_mb, "after_generate_mb": summarise(gen) if gen else None,
                               "footprint_mb": samples[0]["footprint"], "notes": samples[0]["notes"]}
            results[f"{name}/{quantize}"] = entry
            o, p = entry["lmdemo"], entry["plain"]
            rows.append([name, quantize, f"{o['footprint_mb']:.0f}", fmt(o["load_mb"]), fmt(p["load_mb"]),
                         fmt(o["after_generate_mb"]), fmt(p["after_generate_mb"]),
                         "; ".join(o["notes"])[:60] or "-"])
    print_table(f"Memory, MiB, median (min-max) of {args.runs} fresh processes; RSS growth over the imported process",
                ["model", "quantize", "footprint", "lmdemo load", "plain load", "lmdemo +generate",
                 "plain +generate", "notes"], rows)
    print_json("memory", {"runs": args.runs, "results": results})


if __name__ == "__main__":
    main()
