"""Batch-1 matmul kernels over every weight of SmolLM2-135M: what one decode step's matmuls cost with each.

One pass = one [1 x K] @ W^T per weight matrix (30 layers x 7, plus the tied output head), the matmul part of a
decode step. Kernels: `F.linear` in bf16 (what transformers runs, the baseline), fp32, oneDNN-prepacked bf16
(lmdemo.engine.fastgen), int8 weight-only (`aten._weight_int8pack_mm`, per-channel scales) and int4 weight-only
(`aten._weight_int4pack_mm_for_cpu`, groups of 32). "bit-equal" counts matrices whose output equals the bf16
`F.linear` output bit for bit: only those kernels can keep greedy output identical to transformers. Passes are
interleaved across kernels; ratios are taken pass by pass.

    python bench/kernels.py [--runs 5] [--quick]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
from _common import print_json, print_table, summarise  # noqa: E402


def kernels():
    import torch
    import torch.nn.functional as F

    def int8(w):
        scale = w.float().abs().amax(1) / 127
        return (w.float() / scale[:, None]).round().clamp(-127, 127).to(torch.int8), scale.to(w.dtype)

    def int4(w, group=32):
        wf = w.float().reshape(w.shape[0], -1, group)
        lo, hi = wf.amin(-1, keepdim=True), wf.amax(-1, keepdim=True)
        scale = ((hi - lo) / 15).clamp(min=1e-6)
        q = ((wf - lo) / scale).round().clamp(0, 15).to(torch.int32).reshape(w.shape)
        zero = lo + 8 * scale  # the kernel computes (q - 8) * scale + zero
        sz = torch.stack([scale.squeeze(-1).t(), zero.squeeze(-1).t()], -1).to(w.dtype).contiguous()
        return torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, 1), sz

    packed = lambda x, p: torch.ops.mkldnn._linear_pointwise(x, p, None, "none", [], "")  # noqa: E731
    return {
        "F.linear bf16 (transformers)": (lambda w: w, lambda x, w: F.linear(x, w)),
        "F.linear fp32": (lambda w: w.float(), lambda x, w: F.linear(x.float(), w)),
        "oneDNN prepacked bf16 (fastgen)": (lambda w: torch.ops.mkldnn._reorder_linear_weight(w, 1), packed),
        "int8 weight-only": (int8, lambda x, w: torch.ops.aten._weight_int8pack_mm(x, w[0], w[1])),
        "int4 weight-only, group 32": (int4, lambda x, w: torch.ops.aten._weight_int4pack_mm_for_cpu(x, w[0], 32, w[1])),
    }


def main() -> None:
    import torch

    from lmdemo.models.loading import load

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="2 passes")
    args = parser.parse_args()
    if args.quick:
        args.runs = 2
    lm = load("smollm2-135m-instruct", dtype="bfloat16")
    weights = []
    for layer in lm.model.model.layers:
        a, m = layer.self_attn, layer.mlp
        weights += [a.q_proj.weight, a.k_proj.weight, a.v_proj.weight, a.o_proj.weight, m.gate_proj.weight,
                    m.up_proj.weight, m.down_proj.weight]
    weights = [w.detach() for w in weights + [lm.model.lm_head.weight]]
    megabytes = sum(w.numel() * w.element_size() for w in weights) / 2**20
    generator = torch.Generator().manual_seed(0)
    xs = {k: torch.randn(1, k, generator=generator).to(torch.bfloat16) for k in {w.shape[1] for w in weights}}
    table = kernels()
    prepared, equal, times = {}, {}, {name: [] for name in table}
    with torch.inference_mode():
        reference = [torch.nn.functional.linear(xs[w.shape[1]], w) for w in weights]
        for name, (prep, run) in list(table.items()):
            try:
                prepared[name] = [prep(w) for w in weights]
            except RuntimeError as exc:  # e.g. oneDNN's bf16 packing needs AVX-512
                print(f"{name}: not available on this CPU ({str(exc).splitlines()[0]})")
                del table[name], times[name]
                continue
            outs = [run(xs[w.shape[1]], p) for w, p in zip(weights, prepared[name])]  # also the warm-up
            equal[name] = sum(torch.equal(o.to(r.dtype), r) for o, r in zip(outs, reference))
        for _ in range(args.runs):
            for name, (_, run) in table.items():
                t = time.perf_counter()
                for w, p in zip(weights, prepared[name]):
                    run(xs[w.shape[1]], p)
                times[name].append(time.perf_counter() - t)
    base = times["F.linear bf16 (transformers)"]
    rows, results = [], {}
    for name, samples in times.items():
        s = summarise([t * 1000 for t in samples])
        ratio = summarise([b / t for b, t in zip(base, samples)])["median"]
        results[name] = {"ms_per_pass": s, "speedup_vs_bf16_linear": ratio, "bit_equal": equal[name],
                         "matrices": len(weights)}
        rows.append([name, f"{s['median']:.1f} ({s['min']:.1f}-{s['max']:.1f})",
                     f"{megabytes / 1024 / (s['median'] / 1000):.1f}", f"{ratio:.2f}x", f"{equal[name]}/{len(weights)}"])
    print_table(f"Batch-1 matmuls over all {len(weights)} SmolLM2-135M weight matrices ({megabytes:.0f} MiB in bf16), "
                f"{torch.get_num_threads()} threads; ms per pass, median (min-max) of {args.runs}",
                ["kernel", "ms / pass", "GiB/s of bf16 weights", "speed-up", "bit-equal to bf16 F.linear"], rows)
    print_json("kernels", {"runs": args.runs, "results": results})


if __name__ == "__main__":
    main()
