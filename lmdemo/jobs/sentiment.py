"""Sentiment job: positive/negative with a confidence, for one text or many.

The default classifier is all-MiniLM-L6-v2 with a LoRA-trained head shipped in
``lmdemo/data/adapters/sentiment-minilm`` (reproduce with ``python -m lmdemo train-sentiment``).
"""

from __future__ import annotations

import copy
import csv
import io
import json
import threading
import weakref
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

import torch

from lmdemo.errors import InputError
from lmdemo.engine.fastencoder import Encoder, supported as fastencoder_supported
from lmdemo.data.files import read_text
from lmdemo.models import families
from lmdemo.models.adapters import adapter_dir, adapter_meta
from lmdemo.models.loading import load
from lmdemo.models.registry import DEFAULT_ENCODER_MODEL

DEFAULT_ADAPTER = str(files("lmdemo.data").joinpath("adapters", "sentiment-minilm"))
DATA_DIR = files("lmdemo.data").joinpath("sentiment")
MAX_FILE_BYTES = 5 * 2**20  # a batch file beyond this is not a demo any more
MAX_TEXTS = 5000
MAX_CHARS = 20_000  # per text; the classifier reads its first 256 tokens anyway


@dataclass
class SentimentRequest:
    """Texts to label; no model: the bundled MiniLM sentiment adapter. A classification adapter's name works too."""

    texts: list[str]
    model: str | None = field(default=None, metadata={"help": "classifier: adapter name or folder, or a model"})
    adapter: str | None = None

    def __post_init__(self) -> None:
        self.texts = _clean(self.texts)
        if not self.adapter:
            from lmdemo.models.adapters import resolve_pick

            self.model, self.adapter = resolve_pick(self.model)


@dataclass
class SentimentResult:
    text: str
    label: str
    score: float
    scores: dict[str, float]
    labels: list[str] | None = None  # multi-label classifiers: every label scoring 0.5 or more

    def to_dict(self) -> dict[str, Any]:
        out = {"text": self.text, "label": self.label, "score": self.score}
        if self.labels is not None:
            out["labels"] = self.labels
        return out


@dataclass
class SentimentBatch:
    results: list[SentimentResult]

    def to_dict(self) -> dict[str, Any]:
        return {"results": [r.to_dict() for r in self.results]}


def run(req: SentimentRequest) -> SentimentBatch:
    """The job shape: a request in, every text's label and score out."""
    return SentimentBatch(classify(req.texts, model=req.model, adapter=req.adapter))


def _clean(texts: list[str]) -> list[str]:
    if isinstance(texts, str):
        texts = [texts]
    cleaned = [str(t) for t in texts if t is not None and str(t).strip()]
    if not cleaned:
        raise InputError("No text to classify: type a sentence, or one review per line.")
    if len(cleaned) > MAX_TEXTS:
        raise InputError(f"{len(cleaned)} texts is more than the {MAX_TEXTS} one request takes.")
    return [t[:MAX_CHARS] for t in cleaned]


def classify(texts: list[str] | str, model: str | None = None, adapter: str | None = None,
             batch_size: int = 64) -> list[SentimentResult]:
    """Label each text; with no model given, the bundled MiniLM sentiment adapter is used."""
    texts = _clean(texts)
    if not model and not adapter:
        adapter = DEFAULT_ADAPTER
    if not model:
        model = adapter_meta(adapter_dir(adapter)).get("base_model", DEFAULT_ENCODER_MODEL)
    families.require(model, "sentiment", adapter)  # a plain encoder or an LM gets a plain message, before loading
    lm = load(model, head="sequence-classification", adapter=adapter)
    config = lm.model.config
    # An lmdemo adapter carries its labels; a ready classifier has its own id2label, shown as it is.
    labels = lm.labels or [str(config.id2label[i]) for i in range(config.num_labels)]
    multi_label = lm.labels is None and getattr(config, "problem_type", None) == "multi_label_classification"
    net = _inference_model(lm)
    encoded = lm.tokenizer(texts, truncation=True, max_length=256)
    pad_id = lm.tokenizer.pad_token_id or 0
    # Similar lengths share a batch, so little compute goes to padding; results return in input order.
    order = sorted(range(len(texts)), key=lambda i: len(encoded["input_ids"][i]))
    results: list[SentimentResult | None] = [None] * len(texts)
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        width = max(len(encoded["input_ids"][i]) for i in rows)
        batch = {key: torch.tensor([encoded[key][i] + [pad_id if key == "input_ids" else 0] *
                                    (width - len(encoded[key][i])) for i in rows], device=lm.device)
                 for key in encoded.keys()}
        with torch.inference_mode():
            logits = net.logits(**batch) if isinstance(net, Encoder) else net(**batch).logits
            # Multi-label heads score each label on its own (sigmoid); single-label ones share one softmax.
            probs = logits.float().sigmoid() if multi_label else logits.float().softmax(-1)
        for i, row in zip(rows, probs.tolist()):
            best = max(range(len(row)), key=row.__getitem__)
            results[i] = SentimentResult(texts[i], labels[best], row[best], dict(zip(labels, row)),
                                         [lab for lab, p in zip(labels, row) if p >= 0.5] if multi_label else None)
    return results  # type: ignore[return-value]


_MERGED: "weakref.WeakKeyDictionary[object, torch.nn.Module]" = weakref.WeakKeyDictionary()
_MERGED_LOCK = threading.Lock()


def _inference_model(lm):
    """The network to run: a LoRA adapter merged into a private copy (one matmul per layer instead of three),
    through lmdemo.engine.fastencoder where it covers the architecture.

    The cached PEFT model stays as it is for the code that needs the adapter separate (evaluation, merge).
    """
    model = lm.model
    adapter = hasattr(model, "merge_and_unload")
    if lm.quantized or lm.device.type != "cpu" or not (adapter or fastencoder_supported(model)):
        return model
    with _MERGED_LOCK:
        net = _MERGED.get(model)
        if net is None:
            merged = copy.deepcopy(model).merge_and_unload().eval() if adapter else model
            net = _MERGED[model] = Encoder(merged) if fastencoder_supported(merged) else merged
        return net


def read_texts(path: str | Path, column: str | None = None) -> list[str]:
    """Texts from a .txt (one per line) or .csv/.tsv file (the `text` column, or the first one)."""
    path = Path(path)
    content = read_text(path, MAX_FILE_BYTES)
    if path.suffix.lower() not in (".csv", ".tsv"):
        return [line for line in content.splitlines() if line.strip()]
    reader = csv.DictReader(io.StringIO(content), delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
    fields = reader.fieldnames or []
    if not fields:
        raise InputError(f"{path.name} has no header row.")
    wanted = column or ("text" if "text" in fields else fields[0])
    if wanted not in fields:
        raise InputError(f"{path.name} has no column {wanted!r}; columns are {', '.join(fields)}.")
    return [row[wanted] for row in reader if row.get(wanted) and row[wanted].strip()]


def to_csv(results: list[SentimentResult], path: str | Path) -> Path:
    """Write text, label, score per row."""
    path = Path(path)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label", "score"])
        for r in results:
            writer.writerow([r.text, r.label, f"{r.score:.4f}"])
    return path


def load_split(name: str) -> list[dict]:
    """Rows of a bundled sentiment split (train or heldout)."""
    text = DATA_DIR.joinpath(f"{name}.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]
