"""LM lab theory: a real model's attention weights, sinusoidal and rotary position encodings, and the bigram, a
trained LSTM (:mod:`lmdemo.jobs.lstm_lm`) and a pretrained Transformer scoring the same text side by side."""

from __future__ import annotations

import math
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

import torch

from lmdemo.errors import InputError, LmdemoError
from lmdemo.jobs.base import pick_model, require_text
from lmdemo.jobs.lmlab import BigramModel, MAX_SMOOTHING, _context_ids, _piece, score_text
from lmdemo.jobs.lstm_lm import MAX_TEXT_CHARS, GateRow, LstmLM, _whole, get_lstm, score_lstm
from lmdemo.models.loading import load
from lmdemo.models.registry import DEFAULT_CHAT_MODEL

MAX_ATTENTION_TOKENS = 64  # a 64 x 64 heatmap is still readable; more is a grey square
MAX_ATTENTION_CHARS = 2_000  # tokenising more only to cut it to 64 tokens is waste
MAX_PE_POSITIONS = 512
MAX_PE_DIM = 1024  # d_model of the sinusoidal table; real models use 512-4096, 1024 shows the idea
MAX_PE_CURVES = 16  # dimensions (or RoPE pairs) drawn as curves; more is spaghetti
READING_TOP = 2  # tokens named per row in the plain-language reading

_MODEL_HELP = {"help": "built-in, folder or Hub id (causal LM or encoder)"}

# ---------------------------------------------------------------- attention


@dataclass
class AttentionRequest:
    text: str
    model: str | None = field(default=None, metadata=_MODEL_HELP)
    layer: int = field(default=0, metadata={"help": "layer, counted from 0"})
    head: int = field(default=0, metadata={"help": "attention head in that layer, counted from 0"})

    def __post_init__(self) -> None:
        self.text = require_text(self.text, "`text`")
        if len(self.text) > MAX_ATTENTION_CHARS:
            raise InputError(f"`text` is {len(self.text):,} characters; the attention view takes at most "
                             f"{MAX_ATTENTION_CHARS:,} (and shows the first {MAX_ATTENTION_TOKENS} tokens).")
        self.layer = _whole("layer", self.layer, 0, 10_000)  # the model's own count is checked once it is loaded
        self.head = _whole("head", self.head, 0, 10_000)
        base, adapter = pick_model(self.model, None, DEFAULT_CHAT_MODEL)
        if adapter:
            raise InputError(f"`model` {self.model!r} is an adapter; the attention view shows a base model's own "
                             f"attention: pick its base, {base!r}.")
        self.model = base


@dataclass
class AttentionMap:
    """One head's attention: weights[i][j] = how much token i attends to token j (each row sums to 1)."""

    model: str
    layer: int
    head: int
    tokens: list[str]
    weights: list[list[float]]
    top: list[list[tuple[int, float]]]  # per row, the most-attended positions, highest first
    reading: list[str]  # the same, in words
    causal: bool  # a causal LM's token sees only itself and earlier tokens
    num_layers: int
    num_heads: int
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "layer": self.layer, "head": self.head, "tokens": self.tokens,
                "weights": self.weights, "top": [[list(t) for t in row] for row in self.top],
                "reading": self.reading, "causal": self.causal, "num_layers": self.num_layers,
                "num_heads": self.num_heads, "note": self.note}


# Set and restore the implementation one view at a time: two interleaved views could otherwise "restore" eager.
_EAGER_LOCK = threading.Lock()


@contextmanager
def eager_attention(model) -> Iterator[None]:
    """`model` with eager attention (the only implementation that returns its weights), set back afterwards.

    The model is the cached one every job shares: a job running meanwhile gets eager attention too, which
    computes the same values, only more slowly.
    """
    with _EAGER_LOCK:
        before = model.config._attn_implementation
        if before != "eager":
            model.set_attn_implementation("eager")
        try:
            yield
        finally:
            if before != "eager":
                model.set_attn_implementation(before)


def _head_for(model: str) -> tuple[str, bool]:
    """(the loader head that shows `model`'s attention, whether that attention is causal)."""
    from transformers.models.auto.modeling_auto import (MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
                                                        MODEL_FOR_MASKED_LM_MAPPING_NAMES)

    from lmdemo.models import families

    info = families.describe(model)
    if info is None:
        return "causal-lm", True  # config unreadable here: loading will say why
    if info.model_type == families.REMOTE:
        raise InputError(f"`model` {model!r} is a remote engine: its attention weights are not available here.")
    if info.family == "seq2seq":
        raise InputError(f"`model` {model!r} is an encoder-decoder model; the attention view takes a causal LM "
                         "or an encoder.")
    if info.family in ("chat-lm", "base-lm"):
        return "causal-lm", True
    # An encoder, or a classifier on one (BERT) or on a decoder (Llama): told apart as families.family_of does.
    decoder = (info.model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
               and info.model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES)
    return "encoder", decoder


def attention(req: AttentionRequest) -> AttentionMap:
    """One layer and head's attention weights over a short text, with a plain-language reading."""
    head_kind, causal = _head_for(req.model)
    lm = load(req.model, head=head_kind)
    config = lm.model.config
    layers, heads = config.num_hidden_layers, config.num_attention_heads
    if req.layer >= layers:
        raise InputError(f"`layer` must be from 0 to {layers - 1} ({req.model} has {layers} layers); got {req.layer}.")
    if req.head >= heads:
        raise InputError(f"`head` must be from 0 to {heads - 1} ({req.model} has {heads} heads per layer); "
                         f"got {req.head}.")
    tok = lm.tokenizer
    if head_kind == "causal-lm":
        ids, bos = _context_ids(tok, req.text)
        ids = [bos, *ids] if bos is not None else ids  # the document start, as in scoring: many heads rest on it
    else:
        ids = tok(req.text)["input_ids"]  # with its own specials ([CLS] ... [SEP]), as it was trained
    notes = []
    if len(ids) > MAX_ATTENTION_TOKENS:
        notes.append(f"Showing the first {MAX_ATTENTION_TOKENS} of {len(ids)} tokens.")
        ids = ids[:MAX_ATTENTION_TOKENS]
    with eager_attention(lm.model), torch.no_grad():
        out = lm.model(input_ids=torch.tensor([ids], device=lm.device), output_attentions=True)
    weights = out.attentions[req.layer][0, req.head].float().cpu()
    tokens = [_piece(tok, i) for i in ids]
    top = _top_sources(weights, causal)
    notes.extend(lm.notes)
    return AttentionMap(req.model, req.layer, req.head, tokens, weights.tolist(), top,
                        _reading(tokens, top, causal), causal, layers, heads, " ".join(notes))


def attention_shape(model: str | None) -> tuple[int, int] | None:
    """(layers, heads per layer) from the model's config, without loading weights; None when it cannot be read
    here (a built-in not converted yet, a Hub id offline, an engine)."""
    from lmdemo.models import families

    try:
        config = families.config_dict(pick_model(model, None, DEFAULT_CHAT_MODEL)[0]) or {}
    except LmdemoError:  # an unknown name: the view's own run says why
        return None
    config = config.get("text_config", config) or {}
    layers, heads = config.get("num_hidden_layers"), config.get("num_attention_heads")
    return (layers, heads) if isinstance(layers, int) and isinstance(heads, int) else None


def _top_sources(weights: torch.Tensor, causal: bool) -> list[list[tuple[int, float]]]:
    out = []
    for i, row in enumerate(weights):
        seen = row[: i + 1] if causal else row  # a causal row is 0 beyond i; ties there mean nothing
        values, index = torch.topk(seen, min(READING_TOP, len(seen)))
        out.append([(int(j), float(w)) for j, w in zip(index, values)])
    return out


def _reading(tokens: list[str], top: list[list[tuple[int, float]]], causal: bool) -> list[str]:
    lines = []
    for i, row in enumerate(top):
        if causal and i == 0:
            lines.append(f"{tokens[0]!r} is first: it can only look at itself.")
            continue
        named = ", then ".join(f"{'itself' if j == i else repr(tokens[j])} ({w:.0%})" for j, w in row)
        lines.append(f"{tokens[i]!r} looks most at {named}.")
    return lines


# ---------------------------------------------------------------- positional encoding

ROPE_NOTE = (
    "The original Transformer added a fixed sinusoidal vector to each token's embedding: the position is mixed "
    "into the content once, at the bottom, and a model trained on short texts meets unseen absolute positions on "
    "longer ones. Rotary encoding (RoPE) instead rotates each query and key pair of dimensions by an angle "
    "proportional to the position, inside every attention layer. The dot product of a query at m and a key at n "
    "then depends only on m - n: attention sees relative distance directly, nothing is added to the embeddings, "
    "and the low-frequency pairs can be rescaled (NTK, YaRN, Llama 3 scaling) to stretch the context after "
    "training. That is why Llama, SmolLM2, Gemma, Qwen and Mistral all use RoPE."
)


@dataclass
class SinusoidalRequest:
    positions: int = field(default=64, metadata={"help": f"positions 0..n-1 (1-{MAX_PE_POSITIONS})"})
    d_model: int = field(default=128, metadata={"help": f"embedding size, even (2-{MAX_PE_DIM})"})
    dims: tuple[int, ...] = field(default=(0, 1, 8, 9, 64, 65),
                                  metadata={"help": "dimensions drawn as curves: low ones turn fast, high ones slowly"})

    def __post_init__(self) -> None:
        self.positions = _whole("positions", self.positions, 1, MAX_PE_POSITIONS)
        self.d_model = _whole("d_model", self.d_model, 2, MAX_PE_DIM)
        if self.d_model % 2:
            raise InputError(f"`d_model` must be even (sine and cosine come in pairs); got {self.d_model}.")
        self.dims = _index_list("dims", self.dims, self.d_model)


def _index_list(name: str, values, size: int) -> tuple[int, ...]:
    values = tuple(values or ())
    if len(values) > MAX_PE_CURVES:
        raise InputError(f"`{name}` lists {len(values)} entries; at most {MAX_PE_CURVES} are drawn.")
    return tuple(_whole(name, v, 0, size - 1) for v in values)


@dataclass
class SinusoidalEncoding:
    """PE(pos, 2i) = sin(pos / 10000^(2i/d_model)), PE(pos, 2i+1) = cos(pos / 10000^(2i/d_model))."""

    positions: int
    d_model: int
    table: list[list[float]]  # positions x d_model
    curves: dict[int, list[float]]  # a chosen dimension over all positions
    wavelengths: dict[int, float]  # 2π · 10000^(2i/d_model): positions per full turn of that dimension

    def to_dict(self) -> dict[str, Any]:
        return {"positions": self.positions, "d_model": self.d_model, "table": self.table,
                "curves": {str(k): v for k, v in self.curves.items()},
                "wavelengths": {str(k): v for k, v in self.wavelengths.items()}}


def sinusoidal_table(positions: int, d_model: int) -> torch.Tensor:
    """The (positions, d_model) sinusoidal encoding of "Attention Is All You Need", in float64."""
    pos = torch.arange(positions, dtype=torch.float64)[:, None]
    pair = torch.arange(0, d_model, 2, dtype=torch.float64)  # 2i
    angle = pos / 10000.0 ** (pair / d_model)
    table = torch.empty(positions, d_model, dtype=torch.float64)
    table[:, 0::2] = torch.sin(angle)
    table[:, 1::2] = torch.cos(angle)
    return table


def sinusoidal(req: SinusoidalRequest) -> SinusoidalEncoding:
    """The sinusoidal position table, a few of its dimensions as curves, and their wavelengths."""
    table = sinusoidal_table(req.positions, req.d_model)
    return SinusoidalEncoding(req.positions, req.d_model, table.tolist(), {d: table[:, d].tolist() for d in req.dims},
                              {d: 2 * math.pi * 10000.0 ** ((d - d % 2) / req.d_model) for d in req.dims})


@dataclass
class RopeRequest:
    model: str | None = field(default=None, metadata={"help": "causal LM whose rotary settings to show"})
    positions: int = field(default=64, metadata={"help": f"positions 0..n-1 (1-{MAX_PE_POSITIONS})"})
    pairs: tuple[int, ...] = field(default=(), metadata={"help": "frequency pairs drawn as curves; empty: a spread"})

    def __post_init__(self) -> None:
        self.positions = _whole("positions", self.positions, 1, MAX_PE_POSITIONS)
        self.pairs = tuple(self.pairs or ())
        if len(self.pairs) > MAX_PE_CURVES:
            raise InputError(f"`pairs` lists {len(self.pairs)} entries; at most {MAX_PE_CURVES} are drawn.")
        self.model, _ = pick_model(self.model, None, DEFAULT_CHAT_MODEL)  # an adapter keeps its base's positions


@dataclass
class RopeTable:
    """One rotary setting: pair i of a head turns by angle = pos * theta^(-2i/head_dim) radians at position pos."""

    layers: str  # which layers use it: "all", or a layer type such as "sliding_attention"
    theta: float
    rope_type: str  # "default" is the plain formula; others rescale some frequencies
    frequencies: list[float]  # theta^(-2i/d) per pair: radians per position
    angles: list[list[float]]  # positions x pairs
    curves: dict[int, list[float]]  # cos(angle) of a chosen pair over positions


@dataclass
class RopeEncoding:
    model: str
    head_dim: int
    rotary_dim: int  # dimensions rotated (head_dim unless the model rotates only part of each head)
    positions: int
    tables: list[RopeTable]
    note: str = ROPE_NOTE

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "head_dim": self.head_dim, "rotary_dim": self.rotary_dim,
                "positions": self.positions, "note": self.note,
                "tables": [{"layers": t.layers, "theta": t.theta, "rope_type": t.rope_type,
                            "frequencies": t.frequencies, "angles": t.angles,
                            "curves": {str(k): v for k, v in t.curves.items()}} for t in self.tables]}


def rope_angles(theta: float, rotary_dim: int, positions: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(frequencies theta^(-2i/d) per pair, angles pos * frequency as a (positions, d/2) table), in float64."""
    freq = theta ** (-torch.arange(0, rotary_dim, 2, dtype=torch.float64) / rotary_dim)
    return freq, torch.arange(positions, dtype=torch.float64)[:, None] * freq


def _rope_settings(config) -> list[tuple[str, dict]]:
    """(layers, parameters) per rotary setting: one for most models, one per layer type for Gemma 3."""
    params = getattr(config, "rope_parameters", None)
    if params is None:  # older configs keep the base as a plain field
        theta = getattr(config, "rope_theta", None)
        params = {"rope_theta": theta, "rope_type": "default"} if theta else None
    if not params:
        return []
    if "rope_theta" in params:
        return [("all", params)]
    return [(kind, p) for kind, p in params.items() if isinstance(p, dict) and "rope_theta" in p]


def rope(req: RopeRequest) -> RopeEncoding:
    """The rotation angle per position and frequency pair under the model's own rotary settings."""
    lm = load(req.model, head=_head_for(req.model)[0])
    config = lm.model.config
    settings = _rope_settings(config)
    if not settings:
        kind = getattr(config, "position_embedding_type", None) or "its own"
        raise InputError(f"`model` {req.model!r} has no rotary position encoding (it uses {kind} position "
                         "embeddings).")
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    factor = settings[0][1].get("partial_rotary_factor", getattr(config, "partial_rotary_factor", 1.0)) or 1.0
    rotary_dim = int(head_dim * factor)
    rotary_dim -= rotary_dim % 2
    pairs = _index_list("pairs", req.pairs, rotary_dim // 2) or _spread(rotary_dim // 2)
    tables = []
    for layers, p in settings:
        freq, angles = rope_angles(float(p["rope_theta"]), rotary_dim, req.positions)
        tables.append(RopeTable(layers, float(p["rope_theta"]), str(p.get("rope_type", "default")), freq.tolist(),
                                angles.tolist(), {i: torch.cos(angles[:, i]).tolist() for i in pairs}))
    scaled = sorted({t.rope_type for t in tables} - {"default"})
    note = ROPE_NOTE
    if scaled:
        note += (f" This model rescales its frequencies ({', '.join(scaled)}); the table shows the plain formula "
                 "before that rescaling.")
    return RopeEncoding(req.model, head_dim, rotary_dim, req.positions, tables, note)


def _spread(pairs: int) -> tuple[int, ...]:
    """Four pairs from the fastest to the slowest."""
    return tuple(sorted({0, pairs // 4, pairs // 2, pairs - 1}))


# ---------------------------------------------------------------- bigram, LSTM and Transformer side by side


@dataclass
class SideBySideRequest:
    text: str
    lstm_id: str = field(default="", metadata={"help": "a trained LSTM's id; the bigram is fitted on its corpus"})
    k: float = field(default=1.0, metadata={"help": f"the bigram's add-k smoothing (0-{MAX_SMOOTHING:g})"})
    model: str | None = field(default=None, metadata={"help": "causal LM: built-in, folder, Hub id or adapter"})
    adapter: str | None = None

    def __post_init__(self) -> None:
        self.text = require_text(self.text, "`text`")
        if len(self.text) > MAX_TEXT_CHARS:
            raise InputError(f"`text` is {len(self.text):,} characters; the comparison takes at most "
                             f"{MAX_TEXT_CHARS:,}.")
        self.model, self.adapter = pick_model(self.model, self.adapter, DEFAULT_CHAT_MODEL)


@dataclass
class Strip:
    """One model's reading of the text: each predicted unit with its natural-log probability."""

    name: str
    unit: str  # "word" (words + </s>) or "token" (the Transformer's subwords): perplexities are per unit
    tokens: list[tuple[str, float]]
    perplexity: float

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "unit": self.unit, "perplexity": self.perplexity,
                "tokens": [[t, lp] for t, lp in self.tokens]}


@dataclass
class SideBySide:
    bigram: Strip
    lstm: Strip
    transformer: Strip
    note: str = ""
    gates: list[GateRow] = field(default_factory=list)  # the LSTM's, after each token it read (not in to_dict)

    def to_dict(self) -> dict[str, Any]:
        return {"bigram": self.bigram.to_dict(), "lstm": self.lstm.to_dict(),
                "transformer": self.transformer.to_dict(), "note": self.note}


def side_by_side(req: SideBySideRequest, lstm: LstmLM | None = None, owner: str | None = None) -> SideBySide:
    """The text under a bigram and the LSTM (both on the LSTM's corpus, per word) and the Transformer (per token);
    the LSTM is `lstm` or the owner's `req.lstm_id`."""
    lstm = lstm if lstm is not None else get_lstm(req.lstm_id, owner)
    bigram = BigramModel.fit(lstm.corpus, req.k)
    steps = bigram.steps(req.text)
    logs = [math.log(p) if p > 0 else -math.inf for _, _, p in steps]
    lstm_score = score_lstm(lstm, req.text)
    scored = score_text(req.text, model=req.model, adapter=req.adapter)
    notes = [n for n in (lstm_score.note, scored.note) if n]
    notes.append("Bigram and LSTM perplexities are per word (and line end) over the same vocabulary; the "
                 "Transformer's is per subword token, so compare it with them loosely.")
    return SideBySide(
        Strip(f"bigram (k={req.k:g})", "word", [(w, lp) for (_, w, _), lp in zip(steps, logs)],
              bigram.perplexity(req.text)),
        Strip("LSTM", "word", [(w.word, w.logprob) for w in lstm_score.words], lstm_score.perplexity),
        Strip(req.model, "token", [(t.token, t.logprob) for t in scored.tokens], scored.perplexity),
        " ".join(notes), lstm_score.gates)
