"""Lean CPU decode loop for Llama and Gemma 3 text models, token-for-token equal to transformers' `generate`.

transformers spends a good part of a batch-1 CPU decode step outside the maths: module calls, cache
objects, mask building, logits processors set up per call. This module runs the same torch ops on the
loaded model's weights with a preallocated KV cache, and one-token matmuls on oneDNN-prepacked copies
that are checked to give the same bits, so greedy output stays identical to `model.generate`. Opt-in
int8/int4 copies (`weights=`) read fewer bytes per step and change the output. Anything not covered
(GPU, adapters, bitsandbytes weights, other architectures, extra logits processors in the model's
generation config) stays on `generate`.
"""

from __future__ import annotations

import threading
import weakref
from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial
from typing import Callable, Iterable, Literal

import torch
import torch.nn.functional as F

SUPPORTED_TYPES = ("llama", "gemma3_text")
_DECODERS: "weakref.WeakKeyDictionary[object, dict[str, Decoder]]" = weakref.WeakKeyDictionary()
_DECODERS_LOCK = threading.Lock()


def unsupported_reason(model, device: torch.device) -> str | None:
    """Why the fast path cannot run this model (None when it can)."""
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    if device.type != "cpu":
        return "not on the CPU"
    if model_type not in SUPPORTED_TYPES:
        return f"architecture {model_type!r} is not one of {', '.join(SUPPORTED_TYPES)}"
    if getattr(model, "peft_config", None) is not None or getattr(model, "hf_quantizer", None) is not None:
        return "adapter or quantised weights"
    if type(model).__name__ not in ("LlamaForCausalLM", "Gemma3ForCausalLM"):
        return f"model class {type(model).__name__}"
    if getattr(config, "_attn_implementation", None) != "sdpa":
        return "attention implementation is not sdpa"
    rope = getattr(config, "rope_parameters", None) or {}
    rope_types = {p.get("rope_type") for p in rope.values()} if "rope_type" not in rope else {rope.get("rope_type")}
    if rope_types != {"default"}:
        return "rope scaling"
    if getattr(config, "attention_bias", False) or getattr(config, "mlp_bias", False):
        return "biases"
    if model_type == "gemma3_text" and (config.attn_logit_softcapping or config.final_logit_softcapping
                                        or getattr(config, "use_bidirectional_attention", False)):
        return "logit soft-capping or bidirectional attention"
    extra = _extra_processors(getattr(model, "generation_config", None))
    if extra:
        return f"generation config sets {', '.join(extra)}"
    return None


# generation-config fields that make `generate` add logits processors this module does not apply
_PROCESSOR_FIELDS = ("no_repeat_ngram_size", "bad_words_ids", "suppress_tokens", "begin_suppress_tokens",
                     "forced_bos_token_id", "forced_eos_token_id", "min_length", "min_new_tokens", "sequence_bias",
                     "exponential_decay_length_penalty", "epsilon_cutoff", "eta_cutoff", "min_p", "typical_p",
                     "top_h", "encoder_repetition_penalty", "guidance_scale", "renormalize_logits",
                     "watermarking_config")


def _extra_processors(generation_config) -> list[str]:
    if generation_config is None:
        return []
    from transformers import GenerationConfig

    default = GenerationConfig()
    return [f for f in _PROCESSOR_FIELDS
            if getattr(generation_config, f, None) not in (None, getattr(default, f, None))]


def decoder_for(model, weights: "Weights" = "exact", gguf: str | None = None):
    """The (cached) decoder that shares ``model``'s weights; int8/int4 decode from quantised copies instead,
    gguf from llama.cpp on the model's original GGUF file ``gguf``."""
    with _DECODERS_LOCK:
        decoders = _DECODERS.setdefault(model, {})
        if weights not in decoders:
            if weights == "gguf":
                from lmdemo.engine.llamacpp import GGUFDecoder

                if gguf is None:
                    raise ValueError("gguf decoding needs the model's GGUF file")
                decoders[weights] = GGUFDecoder(gguf, vocab_size=model.config.vocab_size)
            else:
                decoders[weights] = Decoder(model, weights=weights)
        return decoders[weights]


@dataclass
class _Layer:
    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    o: torch.Tensor
    gate: torch.Tensor
    up: torch.Tensor
    down: torch.Tensor
    norms: tuple  # llama: (in, post_attn); gemma: (in, post_attn, pre_ff, post_ff)
    qk_norms: tuple | None  # gemma only
    act: Callable
    rope: str  # key into Decoder.rope tables
    window: int | None  # sliding-window length, None for full attention
    # one-token matmuls (prepacked or quantised weights), q|k|v and gate|up fused into one matmul each
    qkv_mm: Callable | None = None
    o_mm: Callable | None = None
    gate_up_mm: Callable | None = None
    down_mm: Callable | None = None


def _packed_linear(x: torch.Tensor, packed: torch.Tensor) -> torch.Tensor:
    return torch.ops.mkldnn._linear_pointwise(x, packed, None, "none", [], "")


# The quantised kernels take bf16 activations; an fp32 model's rows are cast in and out (on a CPU without
# AVX-512 they still beat an fp32 matmul, which is bound by reading 4 bytes per weight).
def _int8_linear(x: torch.Tensor, q: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    return torch.ops.aten._weight_int8pack_mm(x.to(torch.bfloat16), q, scales).to(x.dtype)


def _int4_linear(x: torch.Tensor, packed: torch.Tensor, scales_zeros: torch.Tensor) -> torch.Tensor:
    return torch.ops.aten._weight_int4pack_mm_for_cpu(x.to(torch.bfloat16), packed, INT4_GROUP,
                                                      scales_zeros).to(x.dtype)


INT4_GROUP = 32  # weights per scale/zero pair; smaller groups track outliers better, larger ones read less
HEAD_EXACT_ROWS = 256  # int8/int4: head rows recomputed in full precision per step (top-k in the UI goes to 200)


def _screened_head(x: torch.Tensor, approx: Callable, head: torch.Tensor) -> torch.Tensor:
    """Logits from the int4 head, with the ``HEAD_EXACT_ROWS`` highest recomputed from the full-precision head.

    The int4 head reads a quarter of an int8 one (Gemma's 262k x 640: 16 ms vs 31 ms on an AVX2 CPU), and the
    tokens greedy and top-k sampling choose from get the model's own logits, so the head adds no error there.
    """
    logits = approx(x)
    rows = logits.topk(min(HEAD_EXACT_ROWS, logits.shape[-1]), dim=-1).indices[0]
    logits[0, rows] = F.linear(x, head.index_select(0, rows))[0]
    return logits


Weights = Literal["exact", "int8", "int4", "gguf"]

class Decoder:
    """Model weights in plain tensors plus a forward over one sequence with a caller-owned cache."""

    def __init__(self, model, pack: bool = True, weights: "Weights" = "exact", screen: bool = True):
        config = model.config
        self.gemma = config.model_type == "gemma3_text"
        base = model.model
        self.dtype = base.embed_tokens.weight.dtype
        self.embed = base.embed_tokens.weight
        self.head = model.lm_head.weight
        self.head_mm: Callable | None = None
        self.n_heads = config.num_attention_heads
        self.n_kv = config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        self.eps = config.rms_norm_eps
        self.n_layers = config.num_hidden_layers
        self.max_positions = config.max_position_embeddings
        self.embed_scale = base.embed_tokens.embed_scale.to(self.dtype) if self.gemma else None
        # Gemma multiplies by (1 + w) in fp32; precomputing it gives the same bits as doing it per call.
        norm = (lambda n: 1.0 + n.weight.float()) if self.gemma else (lambda n: n.weight)
        self.final_norm = norm(base.norm)
        self.scaling = (config.query_pre_attn_scalar ** -0.5) if self.gemma else self.head_dim ** -0.5
        self.rotary = base.rotary_emb
        self.rope: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.layers: list[_Layer] = []
        for i, layer in enumerate(base.layers[: self.n_layers]):
            att, mlp = layer.self_attn, layer.mlp
            kind = config.layer_types[i] if self.gemma else "default"
            names = (("input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm",
                      "post_feedforward_layernorm") if self.gemma else ("input_layernorm", "post_attention_layernorm"))
            self.layers.append(_Layer(
                q=att.q_proj.weight, k=att.k_proj.weight, v=att.v_proj.weight, o=att.o_proj.weight,
                gate=mlp.gate_proj.weight, up=mlp.up_proj.weight, down=mlp.down_proj.weight,
                norms=tuple(norm(getattr(layer, n)) for n in names),
                qk_norms=(norm(att.q_norm), norm(att.k_norm)) if self.gemma else None,
                act=mlp.act_fn, rope=kind,
                window=config.sliding_window if self.gemma and kind == "sliding_attention" else None))
        self._rope_lock = threading.Lock()
        self.extra_bytes = 0  # memory held beyond the model's own weights
        self.weights = weights
        if weights != "exact" and self.dtype not in (torch.bfloat16, torch.float32):
            raise ValueError(f"{weights} decoding needs a bf16 or fp32 model; this one is {self.dtype}")
        self.packed = (bool(pack) and _pack(self)) if weights == "exact" else _quantize(self, weights)
        # fp32 heads only: there the int8 estimate reads a quarter of the bytes (measured on an AVX2 CPU); a
        # bf16 head is already prepacked and read at twice the speed.
        use_screen = screen and weights == "exact" and self.head.dtype == torch.float32
        self.screen = ExactScreen.build(self.head) if use_screen else None
        if self.screen is not None:
            self.extra_bytes += self.screen.nbytes

    # ------------------------------------------------------------ pieces, op for op as in transformers

    def _norm(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        h = x.to(torch.float32) if not self.gemma else x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return (h * w).type_as(x) if self.gemma else w * h.to(x.dtype)

    def _rope_table(self, kind: str, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """cos/sin for positions [0, length) computed exactly as the model's rotary module computes them."""
        with self._rope_lock:
            table = self.rope.get(kind)
            if table is None or table[0].shape[0] < length:
                size = max(length, min(2048, self.max_positions))
                if self.gemma:
                    inv_freq = getattr(self.rotary, f"{kind}_inv_freq")
                    scale = getattr(self.rotary, f"{kind}_attention_scaling")
                else:
                    inv_freq, scale = self.rotary.inv_freq, self.rotary.attention_scaling
                freqs = torch.arange(size)[None, :, None].float() * inv_freq.to(dtype=torch.float)
                emb = torch.cat((freqs, freqs), dim=-1)
                table = ((emb.cos() * scale).to(self.dtype)[0], (emb.sin() * scale).to(self.dtype)[0])
                self.rope[kind] = table
            return table

    @staticmethod
    def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        half = x.shape[-1] // 2
        return (x * cos) + (torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin)

    def new_cache(self, length: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Preallocated keys/values for ``length`` positions (one generation's worth)."""
        shape = (1, self.n_kv, length, self.head_dim)
        return [(torch.empty(shape, dtype=self.dtype), torch.empty(shape, dtype=self.dtype)) for _ in self.layers]

    def _attend(self, layer: _Layer, q, cache, pos: int, t: int) -> torch.Tensor:
        """Attention over the cache, with the same kernel arguments transformers' sdpa path would pass."""
        keys, values = cache
        end = pos + t
        groups = self.n_heads // self.n_kv
        if layer.window is not None and t > 1 and end >= layer.window:
            # Long prompt through a sliding layer: transformers builds a boolean band mask and repeats the kv heads.
            k, v = keys[:, :, :end], values[:, :, :end]
            if groups > 1:
                k = k[:, :, None].expand(1, self.n_kv, groups, end, self.head_dim).reshape(1, self.n_heads, end, -1)
                v = v[:, :, None].expand(1, self.n_kv, groups, end, self.head_dim).reshape(1, self.n_heads, end, -1)
            qi = torch.arange(pos, end)[:, None]
            ki = torch.arange(end)[None, :]
            mask = ((ki <= qi) & (qi - ki < layer.window))[None, None]
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.scaling)
        if layer.window is not None and pos >= layer.window - 1:
            # Sliding layer, one new token, window full: transformers keeps the last window-1 keys plus the new
            # one, packs the query heads per kv head and passes an all-true mask.
            start = end - layer.window
            k, v = keys[:, :, start:end], values[:, :, start:end]
            mask = torch.ones((1, 1, 1, layer.window), dtype=torch.bool)
            out = F.scaled_dot_product_attention(q.reshape(1, self.n_kv, groups, self.head_dim), k, v,
                                                 attn_mask=mask, scale=self.scaling)
            return out.reshape(1, self.n_heads, 1, self.head_dim)
        return F.scaled_dot_product_attention(q, keys[:, :, :end], values[:, :, :end], is_causal=t > 1,
                                              scale=self.scaling, enable_gqa=groups > 1)

    def _ropes(self, pos: int, t: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        ropes = {}
        for kind in {layer.rope for layer in self.layers}:
            cos, sin = self._rope_table(kind, pos + t)
            ropes[kind] = (cos[pos:pos + t][None, None], sin[pos:pos + t][None, None])
        return ropes

    def forward(self, ids: torch.Tensor, pos: int, cache, head: bool = True) -> torch.Tensor:
        """Run tokens ``ids`` (shape 1 x t) at positions pos.. and return the last position's logits (1 x vocab),
        or with ``head=False`` its final normed hidden row (1 x hidden) for `ExactScreen`."""
        t = ids.shape[1]
        if t == 1 and self.packed:
            return self._step(ids, pos, cache, head)
        x = F.embedding(ids, self.embed)
        if self.gemma:
            x = x * self.embed_scale
        ropes = self._ropes(pos, t)
        for layer, kv in zip(self.layers, cache):
            cos, sin = ropes[layer.rope]
            n = layer.norms
            h = self._norm(x, n[0])
            q = F.linear(h, layer.q).view(1, t, -1, self.head_dim).transpose(1, 2)
            k = F.linear(h, layer.k).view(1, t, -1, self.head_dim).transpose(1, 2)
            v = F.linear(h, layer.v).view(1, t, -1, self.head_dim).transpose(1, 2)
            if layer.qk_norms is not None:
                q = self._norm(q, layer.qk_norms[0])
                k = self._norm(k, layer.qk_norms[1])
            q, k = self._rotate(q, cos, sin), self._rotate(k, cos, sin)
            kv[0][:, :, pos:pos + t] = k
            kv[1][:, :, pos:pos + t] = v
            a = self._attend(layer, q, kv, pos, t).transpose(1, 2).reshape(1, t, -1)
            a = F.linear(a, layer.o)
            if self.gemma:
                x = x + self._norm(a, n[1])
                h = self._norm(x, n[2])
                m = F.linear(layer.act(F.linear(h, layer.gate)) * F.linear(h, layer.up), layer.down)
                x = x + self._norm(m, n[3])
            else:
                x = x + a
                h = self._norm(x, n[1])
                x = x + F.linear(layer.act(F.linear(h, layer.gate)) * F.linear(h, layer.up), layer.down)
        x = self._norm(x[:, -1:], self.final_norm)
        if not head:
            return x[0]
        if self.weights in ("int8", "int4"):
            # The prompt's one scored row through the screened int4 head (_screened_head): Gemma's 262k x 640
            # head is 108 ms in fp32 on an AVX2 CPU, 16 ms in int4. The prompt's other matmuls stay in full
            # precision: at 20+ rows the quantised kernels are no faster there.
            return self.head_mm(x[0])
        return F.linear(x, self.head)[:, -1]

    def _step(self, ids: torch.Tensor, pos: int, cache, head: bool = True) -> torch.Tensor:
        """One token: the same ops as `forward`, with prepacked and fused matmuls (checked bit-equal at load)."""
        nq, nk, d = self.n_heads * self.head_dim, self.n_kv * self.head_dim, self.head_dim
        x = F.embedding(ids[0], self.embed)
        if self.gemma:
            x = x * self.embed_scale
        ropes = self._ropes(pos, 1)
        for layer, (keys, values) in zip(self.layers, cache):
            cos, sin = ropes[layer.rope]
            n = layer.norms
            qkv = layer.qkv_mm(self._norm(x, n[0]))
            if layer.qk_norms is not None:
                q = self._rotate(self._norm(qkv[:, :nq].view(1, -1, 1, d), layer.qk_norms[0]), cos, sin)
                k = self._rotate(self._norm(qkv[:, nq:nq + nk].view(1, -1, 1, d), layer.qk_norms[1]), cos, sin)
            else:
                # q and k rotate in one elementwise pass: same per-element ops, half the calls.
                qk = self._rotate(qkv[:, :nq + nk].view(1, -1, 1, d), cos, sin)
                q, k = qk[:, :self.n_heads], qk[:, self.n_heads:]
            keys[:, :, pos:pos + 1] = k
            values[:, :, pos:pos + 1] = qkv[:, nq + nk:].view(1, -1, 1, d)
            a = self._attend(layer, q, (keys, values), pos, 1).reshape(1, -1)
            a = layer.o_mm(a)
            if self.gemma:
                x = x + self._norm(a, n[1])
                h = self._norm(x, n[2])
            else:
                x = x + a
                h = self._norm(x, n[1])
            gu = layer.gate_up_mm(h)
            half = gu.shape[-1] // 2
            m = layer.down_mm(layer.act(gu[:, :half]) * gu[:, half:])
            x = x + (self._norm(m, n[3]) if self.gemma else m)
        x = self._norm(x, self.final_norm)
        return self.head_mm(x) if head else x


def _pack(dec: Decoder) -> bool:
    """Prepack (and fuse) every bf16 weight for one-token matmuls; keep it only if each gives F.linear's bits.

    The check runs each packed matmul once against F.linear on a random row. Any mismatch (another oneDNN,
    another CPU) turns packing off, so that output stays identical to transformers.
    """
    if dec.dtype != torch.bfloat16 or not torch.backends.mkldnn.is_available():
        return False
    generator = torch.Generator().manual_seed(0)

    def pack(parts: list[torch.Tensor]) -> torch.Tensor | None:
        w = parts[0].detach() if len(parts) == 1 else torch.cat([p.detach() for p in parts])
        p = torch.ops.mkldnn._reorder_linear_weight(w, 1)
        x = torch.randn(1, w.shape[1], generator=generator).to(w.dtype)
        want = torch.cat([F.linear(x, part) for part in parts], dim=-1)
        return p if torch.equal(_packed_linear(x, p), want) else None

    try:
        with torch.inference_mode():
            packed = []
            for layer in dec.layers:
                parts = (pack([layer.q, layer.k, layer.v]), pack([layer.o]), pack([layer.gate, layer.up]),
                         pack([layer.down]))
                if any(p is None for p in parts):
                    return False
                packed.append(parts)
            head = pack([dec.head])
    except (RuntimeError, AttributeError):  # no oneDNN linear on this build
        return False
    if head is None:
        return False
    for layer, parts in zip(dec.layers, packed):
        layer.qkv_mm, layer.o_mm, layer.gate_up_mm, layer.down_mm = (partial(_packed_linear, packed=p) for p in parts)
    dec.head_mm = partial(_packed_linear, packed=head)
    # The packed copies sit beside the model's own weights (prefill and other jobs still use those).
    dec.extra_bytes = sum(w.numel() * w.element_size() for layer in dec.layers
                          for w in (layer.q, layer.k, layer.v, layer.o, layer.gate, layer.up, layer.down))
    dec.extra_bytes += dec.head.numel() * dec.head.element_size()
    return True


def _quantize(dec: Decoder, kind: str) -> bool:
    """Weight-only int8 (per output channel) or int4 (groups of INT4_GROUP, asymmetric) copies for decoding.

    Not bit-equal to transformers: an opt-in (LMDEMO_FASTGEN_WEIGHTS) that reads 2x / 4x fewer bytes per step.
    """
    def int8(parts: list[torch.Tensor]):
        w = torch.cat([p.detach() for p in parts]).float()
        scale = w.abs().amax(1).clamp(min=1e-8) / 127
        q = (w / scale[:, None]).round().clamp(-127, 127).to(torch.int8)
        dec.extra_bytes += q.numel() + scale.numel() * 2
        return partial(_int8_linear, q=q, scales=scale.to(torch.bfloat16))

    def int4(parts: list[torch.Tensor]):
        w = torch.cat([p.detach() for p in parts]).float()
        groups = w.reshape(w.shape[0], -1, INT4_GROUP)
        lo, hi = groups.amin(-1, keepdim=True), groups.amax(-1, keepdim=True)
        scale = ((hi - lo) / 15).clamp(min=1e-8)
        q = ((groups - lo) / scale).round().clamp(0, 15).to(torch.int32).reshape(w.shape)
        zero = lo + 8 * scale  # the kernel computes (q - 8) * scale + zero
        sz = torch.stack([scale.squeeze(-1).t(), zero.squeeze(-1).t()], -1).to(torch.bfloat16).contiguous()
        packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, 1)
        dec.extra_bytes += packed.numel() * packed.element_size() + sz.numel() * 2
        return partial(_int4_linear, packed=packed, scales_zeros=sz)

    make = int8 if kind == "int8" else int4
    with torch.inference_mode():
        for layer in dec.layers:
            layer.qkv_mm, layer.o_mm = make([layer.q, layer.k, layer.v]), make([layer.o])
            layer.gate_up_mm, layer.down_mm = make([layer.gate, layer.up]), make([layer.down])
        # Both kinds screen the vocabulary with an int4 head and recompute its top rows exactly.
        dec.head_mm = partial(_screened_head, approx=int4([dec.head]), head=dec.head)
    return True


class ExactScreen:
    """The output head's exact choice without computing all of it: greedy and top-k pick the same token.

    An int8 copy of the head gives every token an estimate ``a`` and a proven bound ``b`` on how far the
    full-precision logit can be from it (weight rounding per group of 32, the bf16 cast of the activations,
    the kernels' own rounding, with margin). Only the tokens whose upper bound reaches the k-th best lower
    bound can be among the k best, so only those rows of the real head are computed; the rest are -inf, which
    greedy and top-k discard anyway. The elementwise processors (repetition penalty, temperature) are
    monotone, so they are applied to both bounds before comparing. Gemma's 262k x 640 fp32 head is 75 ms per
    step on an AVX2 CPU; the int8 pass and bound take ~35 ms and the exact rows well under 1 ms.
    """

    GROUP = 32
    MAX_K = 256  # top-k sampling beyond this many tokens computes the whole head

    def __init__(self, head: torch.Tensor, q: torch.Tensor, scales: torch.Tensor, bound: torch.Tensor):
        self.head, self.q, self.scales, self.bound = head, q, scales, bound
        self.nbytes = q.numel() + scales.numel() * 2 + bound.numel() * bound.element_size()

    @classmethod
    def build(cls, head: torch.Tensor) -> "ExactScreen | None":
        """The screen for ``head`` (vocab x hidden), or None where its exact rows would not give F.linear's bits."""
        vocab, hidden = head.shape
        # a vocabulary in whole blocks of 8 rows: the last rows of another size go through another kernel path
        if vocab < 16 or vocab % 8 or hidden % cls.GROUP or not _rows_match_full_head(head):
            return None
        q = torch.empty((vocab, hidden), dtype=torch.int8)
        scales = torch.empty(vocab, dtype=torch.bfloat16)
        bound = torch.empty((vocab, hidden // cls.GROUP))
        with torch.inference_mode():
            for start in range(0, vocab, 8192):  # in slices: a whole fp32 copy of Gemma's head is 671 MB
                end = min(start + 8192, vocab)
                w = head[start:end].detach().float()  # the head itself when fp32: never written to
                scales[start:end] = (w.abs().amax(1).clamp(min=1e-8) / 127).to(torch.bfloat16)
                s = scales[start:end].float()[:, None]
                rounded = (w / s).round_().clamp_(-127, 127)
                q[start:end] = rounded.to(torch.int8)
                approx = rounded.mul_(s)  # exact in fp32: a bf16 scale times a 7-bit integer
                err = (w - approx).abs_().reshape(end - start, -1, cls.GROUP).amax(-1)
                size = torch.maximum(w.abs(), approx.abs_()).reshape(end - start, -1, cls.GROUP).amax(-1)
                # bf16 activations (2^-8 relative) and fp32 accumulation over `hidden` terms, on both sides
                bound[start:end] = err + (2.0 ** -8 + 2 * hidden * 2.0 ** -24) * size
        return cls(head, q, scales, bound)

    def estimate(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Every token's int8 logit and a bound on its distance from the exact one (both 1 x vocab, fp32)."""
        a = torch.ops.aten._weight_int8pack_mm(x.to(torch.bfloat16), self.q, self.scales).float()
        sums = x.float().abs().reshape(1, -1, self.GROUP).sum(-1)
        # margin for the bound's own rounding and the bf16 rounding of both outputs
        return a, F.linear(sums, self.bound) * 1.02 + a.abs() * 2.0 ** -6 + 1e-5

    def scores(self, x: torch.Tensor, k: int, elementwise: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """fp32 scores (1 x vocab): the exact logits of every token that can be among the k best after
        ``elementwise``, -inf elsewhere."""
        a, b = self.estimate(x)
        upper, lower = elementwise(a + b), elementwise(a - b)
        floor = lower.topk(k, dim=-1).values[:, -1:] if k > 1 else lower.max()
        mask = (upper >= floor)[0]
        rows = mask.nonzero()[:, 0]
        extra = -rows.numel() % 8  # multiples of 8 rows are what _rows_match_full_head checked (vocab % 8 == 0)
        if extra:
            rows = torch.cat([rows, (~mask).nonzero()[:extra, 0]])
        out = torch.full((1, self.head.shape[0]), float("-inf"))
        out[0, rows] = F.linear(x, self.head.index_select(0, rows))[0].float()
        return out


def _rows_match_full_head(head: torch.Tensor) -> bool:
    """Whether F.linear over a subset of the head's rows (a multiple of 8) gives the bits of the full head."""
    generator = torch.Generator().manual_seed(0)
    vocab = head.shape[0]
    with torch.inference_mode():
        for n in {min(n, vocab // 8 * 8) for n in (8, 64, 520)}:
            x = torch.randn(1, 1, head.shape[1], generator=generator).to(head.dtype)
            # the first and last rows always, with random ones between
            rows = torch.cat([torch.arange(4), torch.randperm(vocab, generator=generator)[:n - 8],
                              torch.arange(vocab - 4, vocab)])
            full = F.linear(x, head)[0, 0]
            if not torch.equal(F.linear(x[0], head.index_select(0, rows))[0], full[rows]):
                return False
    return True


@dataclass
class Sampling:
    """What `generate` would be told: greedy or sampling settings, and the length limit."""

    max_new_tokens: int
    do_sample: bool = False
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    repetition_penalty: float = 1.0


def _processors(s: Sampling):
    """The logits processors `generate` builds for these settings, in its order."""
    from transformers import (LogitsProcessorList, RepetitionPenaltyLogitsProcessor, TemperatureLogitsWarper,
                              TopKLogitsWarper, TopPLogitsWarper)

    procs = LogitsProcessorList()
    if s.repetition_penalty is not None and s.repetition_penalty != 1.0:
        procs.append(RepetitionPenaltyLogitsProcessor(s.repetition_penalty))
    if s.do_sample:
        if s.temperature is not None and s.temperature != 1.0:
            procs.append(TemperatureLogitsWarper(s.temperature))
        if s.top_k is not None and s.top_k != 0:
            procs.append(TopKLogitsWarper(top_k=s.top_k, min_tokens_to_keep=1))
        if s.top_p is not None and s.top_p < 1.0:
            procs.append(TopPLogitsWarper(top_p=s.top_p, min_tokens_to_keep=1))
    return procs


def generate_tokens(model, input_ids: torch.Tensor, sampling: Sampling, eos_token_ids: Iterable[int] = (),
                    should_stop: Callable[[list[int]], bool] | None = None,
                    weights: Weights = "exact", gguf: str | None = None) -> Iterable[int]:
    """Yield new token ids one by one, as `model.generate` would pick them (batch of one, no padding).

    ``should_stop(new_ids)`` is asked after each token; True ends generation (stop button, stop strings).
    Sampling draws from torch's global RNG in the same order as `generate`, so a seeded run matches too.
    """
    if input_ids.shape[0] != 1:
        raise ValueError("the fast path decodes one sequence at a time")
    dec = decoder_for(model, weights, gguf)
    session = dec.session() if hasattr(dec, "session") else nullcontext()
    with session:
        yield from _decode(dec, input_ids, sampling, eos_token_ids, should_stop)


def _is_elementwise(proc) -> bool:
    from transformers import RepetitionPenaltyLogitsProcessor, TemperatureLogitsWarper

    return isinstance(proc, (RepetitionPenaltyLogitsProcessor, TemperatureLogitsWarper))


def _screen_for(dec, sampling: Sampling) -> tuple[ExactScreen | None, int]:
    """The decoder's exact screen and how many best tokens it must keep, or None for the whole head
    (sampling without top-k weighs every token)."""
    screen = getattr(dec, "screen", None)
    k = (sampling.top_k or 0) if sampling.do_sample else 1
    if screen is None or not 0 < k <= ExactScreen.MAX_K:
        return None, 0
    return screen, min(k, screen.head.shape[0])


def _decode(dec, input_ids, sampling: Sampling, eos_token_ids, should_stop) -> Iterable[int]:
    from transformers import LogitsProcessorList

    prompt_len = input_ids.shape[1]
    total = prompt_len + sampling.max_new_tokens
    cache = dec.new_cache(total)
    procs = _processors(sampling)
    eos = set(int(e) for e in eos_token_ids)
    ids = input_ids.clone()
    if procs:
        # Grown in place: the processors read the whole sequence so far, as in `generate`.
        seq = torch.empty((1, total), dtype=torch.long)
        seq[:, :prompt_len] = ids
    new: list[int] = []
    pos = 0
    screen, k = _screen_for(dec, sampling)
    # the penalty and temperature, which come first in `generate`'s order
    elementwise = LogitsProcessorList(p for p in procs if _is_elementwise(p))
    with torch.inference_mode():
        step_in = ids
        while len(new) < sampling.max_new_tokens:
            if screen is not None:
                hidden = dec.forward(step_in, pos, cache, head=False)
                pos += step_in.shape[1]
                scores = screen.scores(hidden, k, partial(elementwise, seq[:, :pos] if procs else None))
            else:
                logits = dec.forward(step_in, pos, cache)
                pos += step_in.shape[1]
                scores = logits.to(dtype=torch.float32, copy=True)
            if procs:
                scores = procs(seq[:, :pos], scores)
            if sampling.do_sample:
                token = int(torch.multinomial(F.softmax(scores, dim=-1), num_samples=1))
            else:
                token = int(torch.argmax(scores, dim=-1))
            new.append(token)
            if procs:
                seq[0, pos] = token
            yield token
            if token in eos or (should_stop is not None and should_stop(new)):
                return
            step_in = torch.tensor([[token]])
