"""Lean batched forward for BERT sequence classifiers (the sentiment job's MiniLM), on the model's own weights.

A classifier reads only the first ([CLS]) position, so the last layer computes queries, attention output
and feed-forward for that position alone (keys and values still cover every token), and q/k/v run as one
matmul. The maths is transformers' BERT; bf16 rounding differs in the last bits, which
`tests/engine/test_fastencoder.py` bounds (same labels, probabilities within 1e-2).

fp32 weights (CPUs without fast bf16) are prepacked for oneDNN's matmul: still fp32 arithmetic, only the
summation order differs, and 1.2-1.5x faster than `F.linear` on MiniLM's shapes on an AVX2 CPU.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def supported(model) -> bool:
    """BertForSequenceClassification with absolute positions, erf GELU and no adapter layers left."""
    config = getattr(model, "config", None)
    return (type(model).__name__ == "BertForSequenceClassification"
            and getattr(config, "position_embedding_type", "absolute") == "absolute"
            and getattr(config, "hidden_act", None) == "gelu" and getattr(model, "peft_config", None) is None
            and getattr(config, "problem_type", None) in (None, "single_label_classification")
            and all(type(m).__name__ in ("Linear", "Embedding", "LayerNorm") for m in model.modules()
                    if len(list(m.children())) == 0 and list(m.parameters(recurse=False))))


class _Linear:
    """y = x W^T + b, on a oneDNN-prepacked copy of W when the weights are fp32."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, pack: bool):
        self.weight, self.bias = weight.detach(), None if bias is None else bias.detach()
        self.packed = None
        if pack:
            try:
                self.packed = torch.ops.mkldnn._reorder_linear_weight(self.weight, None)
            except (RuntimeError, AttributeError):  # a torch without oneDNN's linear
                self.packed = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.packed is None:
            return F.linear(x, self.weight, self.bias)
        return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")


class Encoder:
    """Weights of a BertForSequenceClassification, fused where it pays off."""

    def __init__(self, model):
        bert = model.bert
        emb = bert.embeddings
        self.word, self.pos, self.type = emb.word_embeddings.weight, emb.position_embeddings.weight, \
            emb.token_type_embeddings.weight
        self.emb_norm = emb.LayerNorm
        self.heads = model.config.num_attention_heads
        pack = self.word.dtype == torch.float32 and torch.backends.mkldnn.is_available()
        lin = lambda m: _Linear(m.weight, m.bias, pack)  # noqa: E731
        self.layers = []
        last = len(bert.encoder.layer) - 1
        for i, layer in enumerate(bert.encoder.layer):
            att = layer.attention
            s = att.self
            qkv_w = torch.cat([s.query.weight, s.key.weight, s.value.weight]).detach()
            qkv_b = torch.cat([s.query.bias, s.key.bias, s.value.bias]).detach()
            d = s.query.weight.shape[0]
            self.layers.append(dict(
                # the last layer splits q (the [CLS] row only) from k/v (every row)
                qkv=_Linear(qkv_w, qkv_b, pack and i < last),
                q=_Linear(qkv_w[:d], qkv_b[:d], pack and i == last),
                kv=_Linear(qkv_w[d:], qkv_b[d:], pack and i == last),
                o=lin(att.output.dense), norm1=att.output.LayerNorm,
                up=lin(layer.intermediate.dense), down=lin(layer.output.dense), norm2=layer.output.LayerNorm))
        self.pooler = bert.pooler.dense
        self.classifier = model.classifier

    def logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
               token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Classifier logits for a right-padded batch."""
        b, t = input_ids.shape
        types = token_type_ids if token_type_ids is not None else torch.zeros_like(input_ids)
        x = F.embedding(input_ids, self.word) + F.embedding(types, self.type)
        x = self.emb_norm(x + self.pos[:t])
        # Additive mask in fp32: short sequences are cheaper through plain matmuls than the flash kernel.
        mask = torch.zeros(attention_mask.shape, dtype=torch.float32).masked_fill_(attention_mask == 0, -1e30)
        mask = mask[:, None, None, :]
        d = x.shape[-1]
        hd = d // self.heads
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            if i < last:
                qkv = layer["qkv"](x).view(b, t, 3, self.heads, hd)
                q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
                resid = x
            else:
                # Only [CLS] is read after this layer: its query alone, against every key.
                kv = layer["kv"](x).view(b, t, 2, self.heads, hd)
                k, v = kv.permute(2, 0, 3, 1, 4).unbind(0)
                resid = x[:, :1]
                q = layer["q"](resid).view(b, 1, self.heads, hd).transpose(1, 2)
            # fp32 like the flash kernel's accumulators; the tensors are small (a few dozen tokens).
            scores = torch.matmul(q.float(), k.float().transpose(-1, -2)) * (hd ** -0.5) + mask
            a = torch.matmul(scores.softmax(-1), v.float()).to(x.dtype).transpose(1, 2).reshape(b, -1, d)
            x = layer["norm1"](layer["o"](a) + resid)
            x = layer["norm2"](layer["down"](F.gelu(layer["up"](x))) + x)
        return self.classifier(torch.tanh(self.pooler(x[:, 0])))
