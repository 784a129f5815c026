"""Zero-shot classification with a sentence encoder: each text takes the label whose name it is closest to.

This is the honest "before" of a fine-tuned classifier: the same encoder, no training, only the label names.
"""

from __future__ import annotations

import torch

from lmdemo.errors import InputError
from lmdemo.models.loading import load


def _embed(lm, texts: list[str]) -> torch.Tensor:
    out = []
    for i in range(0, len(texts), 64):
        batch = lm.tokenizer(texts[i:i + 64], padding=True, truncation=True, max_length=256,
                             return_tensors="pt").to(lm.device)
        with torch.inference_mode():
            hidden = lm.model(**batch).last_hidden_state.float()
        mask = batch["attention_mask"].unsqueeze(-1).float()
        out.append(torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1))
    return torch.cat(out)


def classify(texts: list[str], labels: list[str], model: str) -> list[tuple[str, float]]:
    """(label, softmax over cosine similarities) per text; mean pooling as sentence-transformers does."""
    if len(set(labels)) < 2:
        raise InputError("Zero-shot classification needs at least two label names.")
    lm = load(model, head="encoder")
    sims = _embed(lm, list(texts)) @ _embed(lm, list(labels)).T
    probs = (sims / 0.05).softmax(-1)  # temperature of contrastive training, so scores read as confidences
    best = probs.argmax(-1)
    return [(labels[int(b)], float(p[b])) for b, p in zip(best, probs)]
