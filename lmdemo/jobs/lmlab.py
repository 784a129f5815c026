"""LM lab: language-model maths made visible (chain-rule scoring, next-token odds, a bigram baseline)."""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lmdemo.errors import InputError
from lmdemo.jobs.base import pick_model, require_text
from lmdemo.models.loading import load
from lmdemo.models.registry import DEFAULT_CHAT_MODEL

MAX_TOP_K = 100  # more rows than this is noise in a table and slows the UI
MAX_PREFIX_TOKENS = 1024  # same bound as scoring; one forward pass over more is slow and rarely meant
MAX_SMOOTHING = 1000.0  # beyond this add-k is uniform anyway, and k * |V| can overflow to inf

# ---------------------------------------------------------------- transformer scoring


@dataclass
class TokenScore:
    """One text token and its log-probability given everything before it."""

    token: str
    token_id: int
    logprob: float  # natural log

    @property
    def prob(self) -> float:
        return math.exp(self.logprob)


@dataclass
class TextScore:
    """A text scored token by token: log P(text) = sum of log P(token | previous tokens)."""

    tokens: list[TokenScore]
    total_logprob: float
    perplexity: float
    model: str
    note: str = ""
    adapter: str | None = None  # the adapter's name when the base model was scored with one

    def to_dict(self) -> dict[str, Any]:
        return {"perplexity": self.perplexity, "total_logprob": self.total_logprob,
                "tokens": [[t.token, t.logprob] for t in self.tokens], "note": self.note, "adapter": self.adapter}


def _byte_decoder() -> dict[str, int]:
    """Inverse of GPT-2's byte-to-unicode table (the 'Ġ' = space, 'Ċ' = newline mapping)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars)}


_BYTE_DECODER = _byte_decoder()


def _piece(tokenizer, token_id: int) -> str:
    """A token as readable text; a token holding part of a UTF-8 character shows its bytes (\\xe6\\x88)."""
    text = tokenizer.decode([token_id])
    if "\ufffd" not in text:
        return text
    # A lone piece of a multi-byte character decodes to U+FFFD; show the bytes instead of a row of '�'.
    raw = tokenizer.convert_ids_to_tokens(token_id)
    if raw and all(c in _BYTE_DECODER for c in raw):
        return bytes(_BYTE_DECODER[c] for c in raw).decode("utf-8", errors="backslashreplace")
    return raw or text  # sentencepiece byte fallback already reads '<0xE6>'


def _exp(x: float) -> float:
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf


def _context_ids(tokenizer, text: str) -> tuple[list[int], int | None]:
    """Text ids without specials, and the BOS id that conditions the first one (None when there is none)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return ids, _document_start_id(tokenizer)


def _document_start_id(tokenizer) -> int | None:
    """The token that starts a plain document in pretraining, to condition the first text token on.

    A tokenizer that adds a BOS itself (Gemma's <bos>) names it. SmolLM2 declares <|im_start|> as BOS,
    but that opens a chat turn (a role name follows), so plain text after it looks very unlikely;
    its pretraining separated documents with <|endoftext|>, which is the right context.
    """
    probe = tokenizer("a")["input_ids"]
    if tokenizer.bos_token_id is not None and probe and probe[0] == tokenizer.bos_token_id:
        return tokenizer.bos_token_id
    separator = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    if isinstance(separator, int) and tokenizer.convert_ids_to_tokens(separator) == "<|endoftext|>":
        return separator
    return tokenizer.bos_token_id


@torch.no_grad()
def _logprobs(lm, input_ids: list[int]) -> torch.Tensor:
    """Log-softmax over the vocabulary at every position of one sequence, in float32."""
    batch = torch.tensor([input_ids], device=lm.device)
    logits = lm.model(input_ids=batch).logits[0]
    return torch.log_softmax(logits.float(), dim=-1)


def _pick(model: str | None, adapter: str | None) -> tuple[str, str | None]:
    """(base model, adapter folder): what was picked, an adapter on its own base; nothing: the default chat model."""
    return pick_model(model, adapter, DEFAULT_CHAT_MODEL)


def _adapter_name(adapter: str | None) -> str | None:
    return Path(adapter).name if adapter else None  # its name, not the server's folder path


def score_text(text: str, model: str | None = DEFAULT_CHAT_MODEL, adapter: str | None = None,
               max_tokens: int = 1024) -> TextScore:
    """Score every token of `text` with a causal LM, or a base + LM adapter (one forward pass, no chat template)."""
    require_text(text, "`text`")
    if max_tokens < 1:
        raise InputError(f"`max_tokens` must be at least 1; got {max_tokens}.")
    model, adapter = _pick(model, adapter)
    lm = load(model, adapter=adapter)
    tok = lm.tokenizer
    ids, bos = _context_ids(tok, text)
    notes = []
    limit = max_tokens
    context = getattr(lm.model.config, "max_position_embeddings", None)
    if context:
        limit = min(limit, context - (bos is not None))
    if len(ids) > limit:
        notes.append(f"Text truncated to its first {limit} of {len(ids)} tokens.")
        ids = ids[:limit]
    if bos is not None:
        inputs, targets = [bos, *ids], ids
    else:
        if len(ids) < 2:
            raise InputError("`text` is a single token and this model has no BOS token to condition it on: type more.")
        inputs, targets = ids, ids[1:]
        notes.append(f"This model has no BOS token, so the first token ({_piece(tok, ids[0])!r}) cannot be scored; "
                     "scoring from the second.")
    logp = _logprobs(lm, inputs)
    # Position i predicts inputs[i + 1]: the last position's prediction is beyond the text.
    picked = logp[torch.arange(len(targets)), torch.tensor(targets)].tolist()
    tokens = [TokenScore(_piece(tok, t), t, lp) for t, lp in zip(targets, picked)]
    total = math.fsum(picked)
    notes.extend(lm.notes)
    return TextScore(tokens=tokens, total_logprob=total, perplexity=_exp(-total / len(tokens)),
                     model=model, note=" ".join(notes), adapter=_adapter_name(adapter))


def next_token_distribution(prefix: str, k: int = 10, model: str | None = DEFAULT_CHAT_MODEL,
                            adapter: str | None = None) -> list[tuple[str, float]]:
    """The k most likely next tokens after `prefix` (under a causal LM or base + LM adapter), most likely first."""
    require_text(prefix, "`prefix`")
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_TOP_K:
        raise InputError(f"`k` must be a whole number from 1 to {MAX_TOP_K}; got {k!r}.")
    model, adapter = _pick(model, adapter)
    lm = load(model, adapter=adapter)
    ids, bos = _context_ids(lm.tokenizer, prefix)
    if len(ids) > MAX_PREFIX_TOKENS:
        raise InputError(f"`prefix` is {len(ids)} tokens; the next-token view takes at most {MAX_PREFIX_TOKENS}.")
    inputs = [bos, *ids] if bos is not None else ids
    probs = _logprobs(lm, inputs)[-1].exp()
    top = torch.topk(probs, min(k, probs.numel()))
    return [(_piece(lm.tokenizer, i), p) for i, p in zip(top.indices.tolist(), top.values.tolist())]


# ---------------------------------------------------------------- bigram baseline

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
# Han ideographs and kana are written without spaces, so each character counts as a word; Hangul uses spaces.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f"
_WORD = re.compile(rf"[{_CJK}]|(?:(?![{_CJK}])\w)+|[^\w\s]")


def sentences(text: str) -> list[list[str]]:
    """Lower-cased words of each non-empty line: runs of letters/digits, single punctuation marks, single CJK chars."""
    return [words for line in text.lower().splitlines() if (words := _WORD.findall(line))]


class BigramModel:
    """Word bigram LM with add-k smoothing, fitted on a pasted corpus.

    Each non-empty line is a sentence ``<s> w1 ... wn </s>``. With c(v, w) the count of the bigram
    "v w" and c(v) the count of v as a history (followed by anything, ``</s>`` included):

        P(w | v) = (c(v, w) + k) / (c(v) + k * |V|)

    where V = the corpus word types + ``</s>`` + ``<unk>`` (``<s>`` is never predicted, so it is not in V).
    Words outside the corpus become ``<unk>``. log P(text) sums log P(w | v) over every predicted token,
    one ``</s>`` per sentence included, and perplexity = exp(-log P(text) / N) for N predicted tokens.
    k = 0 is the unsmoothed maximum-likelihood model: an unseen bigram has probability 0, so
    log P = -inf and perplexity = inf (the problem smoothing exists to fix).
    """

    def __init__(self, bigrams: Counter, histories: Counter, vocab: frozenset[str], k: float):
        self.bigrams = bigrams
        self.histories = histories
        self.vocab = vocab
        self.k = k

    @classmethod
    def fit(cls, corpus: str, k: float = 1.0) -> BigramModel:
        """Count bigrams in `corpus` (one sentence per line)."""
        if not isinstance(k, (int, float)) or isinstance(k, bool) or not math.isfinite(k) or not 0 <= k <= MAX_SMOOTHING:
            raise InputError(f"Smoothing `k` must be a number from 0 to {MAX_SMOOTHING:g}; got {k!r}.")
        sents = sentences(corpus or "")
        if not sents:
            raise InputError("`corpus` has no words: paste at least one line of text to fit the bigram model.")
        bigrams: Counter = Counter()
        for words in sents:
            seq = [BOS, *words, EOS]
            bigrams.update(zip(seq, seq[1:]))
        histories: Counter = Counter()
        for (v, _), n in bigrams.items():
            histories[v] += n
        vocab = frozenset(w for words in sents for w in words) | {EOS, UNK}
        return cls(bigrams, histories, vocab, float(k))

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def tokens(self, text: str) -> list[str]:
        """`text` as the model sees it: ``<s> w1 ... </s>`` per line, unknown words as ``<unk>``."""
        out = []
        for words in sentences(text):
            out += [BOS, *(w if w in self.vocab else UNK for w in words), EOS]
        return out

    def prob(self, word: str, history: str) -> float:
        """P(word | history) with add-k smoothing; 0 when k = 0 and the history was never seen."""
        numerator = self.bigrams[(history, word)] + self.k
        denominator = self.histories[history] + self.k * self.vocab_size
        return numerator / denominator if denominator else 0.0

    def steps(self, text: str) -> list[tuple[str, str, float]]:
        """Each prediction the model makes on `text`: (history, word, P(word | history))."""
        require_text(text, "`text`")
        seq = self.tokens(text)
        return [(v, w, self.prob(w, v)) for v, w in zip(seq, seq[1:]) if w != BOS]

    def logprob(self, text: str) -> float:
        """Natural-log probability of `text`, sentence ends included; -inf if any step has probability 0."""
        return _sum_logs(p for _, _, p in self.steps(text))

    def perplexity(self, text: str) -> float:
        """exp(-logprob / N) over the N predicted tokens (words plus one ``</s>`` per line)."""
        probs = [p for _, _, p in self.steps(text)]
        return _exp(-_sum_logs(probs) / len(probs))


def _sum_logs(probs) -> float:
    probs = list(probs)
    return -math.inf if 0.0 in probs else math.fsum(math.log(p) for p in probs)


def compare_perplexities(text: str, corpus: str, k: float = 1.0, model: str | None = DEFAULT_CHAT_MODEL,
                         adapter: str | None = None) -> dict:
    """Perplexity of `text` under the transformer and under a bigram model fitted on `corpus`.

    ``lm_tokens`` and ``bigram_tokens`` are the numbers of predicted tokens each perplexity averages over:
    subword tokens vs words + ``</s>``, so the two perplexities are per different units.
    """
    bigram = BigramModel.fit(corpus, k)
    bigram_ppl = bigram.perplexity(text)
    scored = score_text(text, model=model, adapter=adapter)
    return {
        "lm_perplexity": scored.perplexity,
        "bigram_perplexity": bigram_ppl,
        "lm_tokens": len(scored.tokens),
        "bigram_tokens": len(bigram.steps(text)),
    }


# ---------------------------------------------------------------- the lab's jobs, as requests and results

_MODEL_HELP = {"help": "causal LM: built-in, folder, Hub id or adapter name"}


@dataclass
class PerplexityRequest:
    text: str
    model: str | None = field(default=None, metadata=_MODEL_HELP)
    adapter: str | None = None

    def __post_init__(self) -> None:
        self.model, self.adapter = _pick(self.model, self.adapter)


@dataclass
class NextTokensRequest:
    prefix: str
    k: int = field(default=10, metadata={"help": f"how many tokens to list (1-{MAX_TOP_K})"})
    model: str | None = field(default=None, metadata=_MODEL_HELP)
    adapter: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.k, float) and math.isfinite(self.k) and self.k == int(self.k):
            self.k = int(self.k)  # 5.0 from a JSON client or a slider is 5; 2.5 stays and is refused below
        self.model, self.adapter = _pick(self.model, self.adapter)


@dataclass
class NextTokens:
    model: str
    tokens: list[tuple[str, float]]
    adapter: str | None = None  # the adapter's name when the base model ran with one

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "adapter": self.adapter, "tokens": [[t, p] for t, p in self.tokens]}


@dataclass
class BigramRequest:
    text: str
    corpus: str
    k: float = field(default=1.0, metadata={"help": f"add-k smoothing (0-{MAX_SMOOTHING:g})"})
    model: str | None = field(default=None, metadata=_MODEL_HELP)
    adapter: str | None = None

    def __post_init__(self) -> None:
        self.model, self.adapter = _pick(self.model, self.adapter)


@dataclass
class BigramComparison:
    model: str
    lm_perplexity: float
    bigram_perplexity: float
    lm_tokens: int
    bigram_tokens: int
    adapter: str | None = None  # the adapter's name when the neural LM ran with one

    def to_dict(self) -> dict[str, Any]:
        return {"lm_perplexity": self.lm_perplexity, "bigram_perplexity": self.bigram_perplexity,
                "lm_tokens": self.lm_tokens, "bigram_tokens": self.bigram_tokens, "adapter": self.adapter}


def perplexity(req: PerplexityRequest) -> TextScore:
    """Per-token log-probabilities and perplexity of a text."""
    return score_text(req.text, model=req.model, adapter=req.adapter)


def next_tokens(req: NextTokensRequest) -> NextTokens:
    """The k most likely next tokens after a prefix."""
    return NextTokens(req.model, next_token_distribution(req.prefix, k=req.k, model=req.model, adapter=req.adapter),
                      _adapter_name(req.adapter))


def bigram(req: BigramRequest) -> BigramComparison:
    """The text's perplexity under the neural LM and under a bigram model fitted on the corpus."""
    return BigramComparison(req.model, **compare_perplexities(req.text, req.corpus, k=req.k, model=req.model,
                                                               adapter=req.adapter), adapter=_adapter_name(req.adapter))
