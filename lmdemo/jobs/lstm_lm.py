"""A word-level LSTM language model for the LM lab: trained on a pasted corpus, scored word by word, gates shown.

It sees text exactly as the lab's bigram model does (:func:`lmlab.sentences`): each non-empty line is a sentence
``<s> w1 ... wn </s>`` that starts from a zero state, words outside the corpus become ``<unk>``, and the output
layer ranges over the bigram's vocabulary V (corpus word types + ``</s>`` + ``<unk>``). So both perplexities
average over the same N predicted tokens (words plus one ``</s>`` per line) with the same V, and can be compared.

Trained models stay in a small in-memory registry (:func:`get_lstm`), keyed by the id their training returns and
by their owner (a Space visitor sees only their own), so the app can train in the background and score later; the
training result also carries the model object.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import torch
from torch import nn

from lmdemo.errors import InputError
from lmdemo.jobs.base import require_text
from lmdemo.jobs.lmlab import BOS, EOS, UNK, sentences

MAX_CORPUS_CHARS = 20_000  # a few pages: full-batch steps stay well under a second on two CPU cores
MAX_VOCAB = 5_000  # word types + </s> + <unk>; the output layer is hidden x |V|
MAX_TEXT_CHARS = 2_000  # a scored text is shown word by word: more is unreadable
MAX_STEPS = 2_000
MAX_SECONDS = 300.0  # a lab demo, not a training job
MAX_HIDDEN = 256
MAX_EMBED = 256
MAX_LEARNING_RATE = 1.0
MAX_KEPT = 4  # trained models kept per owner; the oldest goes first
MAX_KEPT_ALL = 16  # and in all: a 5,000-word, 256-unit model is about 10 MB
BUNDLED_CORPUS = Path(__file__).resolve().parents[1] / "data" / "samples" / "lm_corpus.txt"


def bundled_corpus() -> str:
    """The lab's default corpus: 150 short sentences whose verbs agree with a subject a few words back."""
    return BUNDLED_CORPUS.read_text(encoding="utf-8")


# ---------------------------------------------------------------- validation


def _whole(name: str, value: Any, low: int, high: int) -> int:
    """An int from `low` to `high`; 5.0 from a slider or JSON client counts as 5."""
    if isinstance(value, float) and math.isfinite(value) and value == int(value):
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise InputError(f"`{name}` must be a whole number from {low} to {high}; got {value!r}.")
    return value


def _number(name: str, value: Any, low: float, high: float, *, open_low: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not (low < value if open_low else low <= value) or value > high:
        bound = f"above {low:g} and at most {high:g}" if open_low else f"from {low:g} to {high:g}"
        raise InputError(f"`{name}` must be a number {bound}; got {value!r}.")
    return float(value)


def _bounded_text(text: str | None, name: str, limit: int) -> str:
    text = require_text(text, f"`{name}`")
    if len(text) > limit:
        raise InputError(f"`{name}` is {len(text):,} characters; the LSTM takes at most {limit:,}.")
    return text


# ---------------------------------------------------------------- the model


class LstmLM(nn.Module):
    """Embedding -> 1-layer LSTM -> linear over V. Output ids 0..|V|-1 are V; <s> and padding are input-only."""

    def __init__(self, words: list[str], corpus: str, embed_size: int, hidden_size: int):
        super().__init__()
        self.itos = [*words, EOS, UNK]  # V, in the order of the output layer
        self.stoi = {w: i for i, w in enumerate(self.itos)}
        self.bos_id, self.pad_id = len(self.itos), len(self.itos) + 1
        self.corpus = corpus  # kept so a comparison can fit the bigram on the very same text
        self.embed = nn.Embedding(len(self.itos) + 2, embed_size, padding_idx=self.pad_id)
        self.lstm = nn.LSTM(embed_size, hidden_size, num_layers=1, batch_first=True)
        self.out = nn.Linear(hidden_size, len(self.itos))

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits over V, LSTM hidden states) for a batch of input id rows, each from a zero state."""
        hidden, _ = self.lstm(self.embed(ids))
        return self.out(hidden), hidden

    def lines(self, text: str) -> list[list[int]]:
        """Each non-empty line as ids ``<s> w1 ... wn </s>``, words outside V as ``<unk>``."""
        unk = self.stoi[UNK]
        return [[self.bos_id, *(self.stoi.get(w, unk) for w in words), self.stoi[EOS]] for words in sentences(text)]

    def token(self, token_id: int) -> str:
        return BOS if token_id == self.bos_id else self.itos[token_id]


def _padded(lines: list[list[int]], pad: int) -> torch.Tensor:
    width = max(len(line) for line in lines)
    return torch.tensor([line + [pad] * (width - len(line)) for line in lines])


# ---------------------------------------------------------------- the registry

_KEPT: OrderedDict[tuple[str | None, str], LstmLM] = OrderedDict()  # (owner, id) -> model, oldest first
_KEPT_LOCK = threading.Lock()


def _keep(model: LstmLM, owner: str | None) -> str:
    model_id = uuid.uuid4().hex[:12]
    with _KEPT_LOCK:
        _KEPT[(owner, model_id)] = model
        mine = [key for key in _KEPT if key[0] == owner]
        for key in mine[: max(0, len(mine) - MAX_KEPT)]:
            del _KEPT[key]
        while len(_KEPT) > MAX_KEPT_ALL:
            _KEPT.popitem(last=False)
    return model_id


def get_lstm(model_id: str, owner: str | None = None) -> LstmLM:
    """The owner's trained LSTM by the id its training returned; InputError once it has been dropped (MAX_KEPT
    newer ones) or when it is someone else's (the same message: an id says nothing about other visitors)."""
    with _KEPT_LOCK:
        model = _KEPT.get((owner, str(model_id or "").strip()))
    if model is None:
        raise InputError(f"No trained LSTM with id {model_id!r} (only your last {MAX_KEPT} are kept): train it "
                         "again.")
    return model


# ---------------------------------------------------------------- training


@dataclass
class LstmTrainRequest:
    corpus: str
    steps: int = field(default=300, metadata={"help": f"full-batch Adam steps (1-{MAX_STEPS})"})
    hidden_size: int = field(default=64, metadata={"help": f"LSTM units (1-{MAX_HIDDEN}); small trains in seconds"})
    embed_size: int = field(default=32, metadata={"help": f"word vector size (1-{MAX_EMBED})"})
    learning_rate: float = field(default=0.01, metadata={"help": "Adam step size; 0.01 fits a small corpus fast"})
    max_seconds: float = field(default=60.0, metadata={"help": f"stop after this long (up to {MAX_SECONDS:g} s)"})
    # A word seen once in the corpus is trained as <unk> this often, so <unk> gets some probability (the bigram's
    # smoothing gives it some too); without it every unknown word would look nearly impossible.
    unk_rate: float = field(default=0.1, metadata={"help": "how often a once-seen word trains as <unk> (0-1)"})
    seed: int = 0

    def __post_init__(self) -> None:
        self.corpus = _bounded_text(self.corpus, "corpus", MAX_CORPUS_CHARS)
        self.steps = _whole("steps", self.steps, 1, MAX_STEPS)
        self.hidden_size = _whole("hidden_size", self.hidden_size, 1, MAX_HIDDEN)
        self.embed_size = _whole("embed_size", self.embed_size, 1, MAX_EMBED)
        self.learning_rate = _number("learning_rate", self.learning_rate, 0, MAX_LEARNING_RATE, open_low=True)
        self.max_seconds = _number("max_seconds", self.max_seconds, 0, MAX_SECONDS, open_low=True)
        self.unk_rate = _number("unk_rate", self.unk_rate, 0, 1)
        self.seed = _whole("seed", self.seed, 0, 2**31 - 1)


@dataclass
class LstmStep:
    """One training step, as the live curve gets it."""

    step: int
    loss: float  # mean NLL per predicted token over the corpus (nats), once-seen words partly as <unk>
    seconds: float

    @property
    def perplexity(self) -> float:
        return _exp(self.loss)

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "loss": self.loss, "perplexity": self.perplexity, "seconds": self.seconds}


@dataclass
class LstmTraining:
    model_id: str  # for get_lstm and the comparison
    steps: int  # steps actually run
    losses: list[float]
    reason: Literal["done", "time", "stopped"]
    seconds: float
    vocab_size: int
    perplexity_before: float  # on the corpus, untrained: about |V|
    perplexity_after: float
    model: LstmLM = field(repr=False, compare=False)
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"model_id": self.model_id, "steps": self.steps, "losses": self.losses, "reason": self.reason,
                "seconds": self.seconds, "vocab_size": self.vocab_size,
                "perplexity_before": self.perplexity_before, "perplexity_after": self.perplexity_after,
                "note": self.note}


def _vocabulary(corpus: str) -> tuple[list[str], Counter]:
    sents = sentences(corpus)
    if not sents:
        raise InputError("`corpus` has no words: paste at least one line of text to train the LSTM.")
    counts = Counter(w for words in sents for w in words)
    if len(counts) + 2 > MAX_VOCAB:
        raise InputError(f"`corpus` has {len(counts):,} different words; the LSTM takes at most {MAX_VOCAB - 2:,}.")
    return sorted(counts), counts


def train_lstm(req: LstmTrainRequest, on_step: Callable[[LstmStep], None] | None = None,
               stop: threading.Event | None = None, owner: str | None = None) -> LstmTraining:
    """Train a word LSTM on the corpus, full batch; `on_step` hears every step, `stop` ends it between steps.
    The model is kept for `owner` (None: everyone on this machine)."""
    from lmdemo.config import DEMO_LIMITS, get_settings

    words, counts = _vocabulary(req.corpus)
    max_seconds, note = req.max_seconds, ""
    if get_settings().demo_mode and max_seconds > DEMO_LIMITS.lstm_seconds:
        max_seconds = DEMO_LIMITS.lstm_seconds
        note = f"This shared demo trains for at most {max_seconds:g} s."
    model = LstmLM(words, req.corpus, req.embed_size, req.hidden_size)
    noise = torch.Generator().manual_seed(req.seed)
    _init(model, noise)
    batch = _padded(model.lines(req.corpus), model.pad_id)
    rare = torch.isin(batch, torch.tensor([model.stoi[w] for w, n in counts.items() if n == 1] or [-1]))
    before = _corpus_perplexity(model, batch)
    optimiser = torch.optim.Adam(model.parameters(), lr=req.learning_rate)
    losses: list[float] = []
    reason: Literal["done", "time", "stopped"] = "done"
    start = time.monotonic()
    model.train()
    for step in range(1, req.steps + 1):
        if stop is not None and stop.is_set():
            reason = "stopped"
            break
        if time.monotonic() - start > max_seconds:
            reason = "time"
            break
        seq = batch.masked_fill(rare & (torch.rand(batch.shape, generator=noise) < req.unk_rate), model.stoi[UNK])
        logits, _ = model(seq[:, :-1])
        loss = nn.functional.cross_entropy(logits.transpose(1, 2), _targets(seq, model.pad_id))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
        if on_step is not None:
            on_step(LstmStep(step, losses[-1], time.monotonic() - start))
    model.eval()
    seconds = time.monotonic() - start
    return LstmTraining(_keep(model, owner), len(losses), losses, reason, seconds, model.vocab_size, before,
                        _corpus_perplexity(model, batch), model, note)


@torch.no_grad()
def _init(model: LstmLM, generator: torch.Generator) -> None:
    """torch's default initialisation, drawn from the run's own generator: seeding the global RNG instead would
    rewind it under other threads (the app trains in the background)."""
    model.embed.weight.normal_(generator=generator)
    model.embed.weight[model.pad_id].zero_()
    bound = 1 / math.sqrt(model.lstm.hidden_size)  # nn.LSTM's and, with fan-in = hidden, nn.Linear's bound
    for p in [*model.lstm.parameters(), *model.out.parameters()]:
        p.uniform_(-bound, bound, generator=generator)


def _targets(seq: torch.Tensor, pad: int) -> torch.Tensor:
    return seq[:, 1:].masked_fill(seq[:, 1:] == pad, -100)  # -100: cross_entropy's ignore_index


@torch.no_grad()
def _corpus_perplexity(model: LstmLM, batch: torch.Tensor) -> float:
    logits, _ = model(batch[:, :-1])
    return _exp(nn.functional.cross_entropy(logits.transpose(1, 2), _targets(batch, model.pad_id)).item())


def _exp(x: float) -> float:
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf


# ---------------------------------------------------------------- the cell, step by step


@dataclass
class CellTrace:
    """The LSTM cell run by hand over one line: each tensor is (positions, hidden units)."""

    hidden: torch.Tensor
    cell: torch.Tensor
    forget: torch.Tensor
    input: torch.Tensor
    output: torch.Tensor


@torch.no_grad()
def cell_steps(model: LstmLM, ids: list[int]) -> CellTrace:
    """Run the LSTM cell equations one input at a time from the layer's own weights, from a zero state.

    torch stacks the four gates in weight_ih / weight_hh as (input, forget, cell candidate g, output):
        i = σ(W_ii x + b_ii + W_hi h + b_hi)   f = σ(...)   g = tanh(...)   o = σ(...)
        c' = f * c + i * g                     h' = o * tanh(c')
    """
    lstm = model.lstm
    w_ih, w_hh, b = lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_ih_l0 + lstm.bias_hh_l0
    h = torch.zeros(lstm.hidden_size)
    c = torch.zeros(lstm.hidden_size)
    rows: dict[str, list[torch.Tensor]] = {k: [] for k in ("hidden", "cell", "forget", "input", "output")}
    for x in model.embed(torch.tensor(ids)):
        i, f, g, o = (w_ih @ x + w_hh @ h + b).chunk(4)
        i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
        c = f * c + i * g
        h = o * torch.tanh(c)
        for name, value in (("hidden", h), ("cell", c), ("forget", f), ("input", i), ("output", o)):
            rows[name].append(value)
    return CellTrace(**{name: torch.stack(values) for name, values in rows.items()})


# ---------------------------------------------------------------- scoring


@dataclass
class WordStep:
    """One prediction: P(word | everything before it on the line); `previous` is the token just read."""

    previous: str
    word: str
    logprob: float  # natural log

    @property
    def prob(self) -> float:
        return math.exp(self.logprob)


@dataclass
class GateRow:
    """Mean gate activations over the hidden units, right after the LSTM reads `token`."""

    token: str
    forget: float  # near 1: keep the cell's memory
    input: float  # near 1: write the new candidate into it
    output: float  # near 1: expose the memory to the prediction


@dataclass
class LstmScore:
    words: list[WordStep]
    total_logprob: float
    perplexity: float  # exp(-total_logprob / N), N = len(words)
    gates: list[GateRow]
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"perplexity": self.perplexity, "total_logprob": self.total_logprob,
                "words": [[w.previous, w.word, w.logprob] for w in self.words],
                "gates": [[g.token, g.forget, g.input, g.output] for g in self.gates], "note": self.note}


@torch.no_grad()
def score_lstm(model: LstmLM, text: str) -> LstmScore:
    """Per-word log-probabilities, perplexity and per-word gate means of `text`, each line from a zero state."""
    text = _bounded_text(text, "text", MAX_TEXT_CHARS)
    model.eval()
    words: list[WordStep] = []
    gates: list[GateRow] = []
    unknown = 0
    for line in model.lines(text):
        logp = torch.log_softmax(model(torch.tensor([line[:-1]]))[0][0], dim=-1)
        targets = line[1:]
        picked = logp[torch.arange(len(targets)), torch.tensor(targets)].tolist()
        words += [WordStep(model.token(v), model.token(w), lp) for v, w, lp in zip(line, targets, picked)]
        trace = cell_steps(model, line[:-1])
        gates += [GateRow(model.token(t), *(float(v) for v in (f, i, o)))
                  for t, f, i, o in zip(line, trace.forget.mean(1), trace.input.mean(1), trace.output.mean(1))]
        unknown += sum(t == model.stoi[UNK] for t in targets)
    if not words:
        raise InputError("`text` has no words to score.")
    total = math.fsum(w.logprob for w in words)
    note = f"{unknown} word(s) are not in the training corpus and were scored as {UNK}." if unknown else ""
    return LstmScore(words, total, _exp(-total / len(words)), gates, note)
