"""Perplexity of texts under a causal language model (lmdemo's offline module)."""

import math
import os
import weakref

import datasets
import evaluate
import torch
import torch.nn.functional as F

MAX_TOKENS = 2048  # per text unless `max_length` says otherwise: attention time grows with its square on a CPU
LOSS_POSITIONS = 256  # positions whose log-softmax is taken at once...
LOSS_ELEMENTS = 2**24  # ...and fewer for a big vocabulary: 64 MiB of float32 logits (64 positions of Gemma's 262k)

_DESCRIPTION = """
Perplexity measures how well a causal language model predicts a text: the exponential of the mean
negative log-likelihood (natural log) of its tokens, each token scored given all the tokens before it.
Lower is better; 1 is a perfect prediction, and a uniform guess over the vocabulary scores its size.

Which tokens are scored: when the tokenizer adds a beginning-of-sequence token by itself (its encoding
of "a" starts with `bos_token_id`, as Gemma's and Llama's do), that BOS is prepended and every token of
the text is scored given it. Otherwise (e.g. SmolLM2, GPT-2) the text is scored as is, from its second
token on: the first token has no context to be predicted from. A text must therefore yield at least one
scored token; an empty text raises ValueError.

Three results: `perplexities` (one per text), `mean_perplexity` (their unweighted mean, as Hugging Face's
perplexity metric reports) and `perplexity` (corpus level: exp of the total NLL over the total number of
scored tokens, so long texts weigh more).

Memory stays bounded whatever the texts: they are scored one at a time, each cut to `max_length` tokens
(2048 by default), and the log-softmax over the vocabulary is taken a few positions at a time, from the
decoder's hidden states, so a [tokens, vocabulary] matrix of logits is never built.

The model is passed in `compute` itself: either an already-loaded transformers causal LM with its
`tokenizer=`, or a model name/folder that `lmdemo.models.loading.load` resolves (built-in names such as
"smollm2-135m-instruct", a model folder, or a Hub id in the local cache); that needs `lmdemo` importable.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `str`): the texts to score.
    model (causal LM object, or `str`): the model, or a name/folder for `lmdemo.models.loading.load`.
    tokenizer (tokenizer object, optional): required with a model object; defaults to the loaded model's own
        tokenizer when `model` is a name.
    batch_size (`int`, default 8): accepted for compatibility with Hugging Face's metric; texts are scored one at a
        time so that memory does not grow with it.
    max_length (`int`, optional): keep at most this many tokens per text (BOS included); default 2048, and never
        more than the model's `max_position_embeddings`.
    details (`bool`, default False): also return, per text, `nll_sums`, `scored_tokens` and `tokens` (its length
        before the cut), and the `max_length` used, so that a caller can add texts up or report cuts.
Returns:
    perplexities (`list` of `float`): per text.
    mean_perplexity (`float`): mean of `perplexities`.
    perplexity (`float`): exp(total NLL / total scored tokens) over all texts.
    (with `details=True`) nll_sums, scored_tokens, tokens (`list`), max_length (`int`).
Examples:
    >>> ppl = load_metric("perplexity")
    >>> ppl.compute(predictions=["The cat sat on the mat."], model="smollm2-135m-instruct")["perplexity"]
"""

_CITATION = """
@article{jelinek1977perplexity,
    title = {Perplexity---a measure of the difficulty of speech recognition tasks},
    author = {Jelinek, Fred and Mercer, Robert L. and Bahl, Lalit R. and Baker, James K.},
    journal = {The Journal of the Acoustical Society of America},
    volume = {62},
    number = {S1},
    pages = {S63--S63},
    year = {1977}
}
"""


def _resolve(model, tokenizer):
    """(model object, tokenizer): loads names and folders through lmdemo."""
    if model is None:
        raise ValueError("perplexity needs `model=`: a causal LM object (with `tokenizer=`) or a model name/folder.")
    if isinstance(model, (str, os.PathLike)):
        try:
            from lmdemo.models.loading import load
        except ImportError as exc:
            raise ImportError(f"Loading the model {str(model)!r} by name needs the `lmdemo` package importable; "
                              "or pass a loaded model object and its tokenizer.") from exc
        loaded = load(str(model))
        return loaded.model, tokenizer if tokenizer is not None else loaded.tokenizer
    if tokenizer is None:
        raise ValueError("perplexity needs `tokenizer=` along with a model object.")
    return model, tokenizer


def _adds_bos(tokenizer):
    """Whether the tokenizer puts a BOS before a text by itself (Gemma, Llama) and so expects one."""
    bos = tokenizer.bos_token_id
    return bos is not None and tokenizer("a").input_ids[:1] == [bos]


def encode(texts, tokenizer, max_length=None):
    """Token ids to feed for each text: BOS first when the tokenizer adds one itself, cut to `max_length`."""
    adds_bos = _adds_bos(tokenizer)
    return [_encode_one(index, text, tokenizer, adds_bos, max_length)[0] for index, text in enumerate(texts)]


def _encode_one(index, text, tokenizer, adds_bos, max_length):
    """(ids cut to `max_length`, token count before the cut) of one text."""
    ids = list(tokenizer(text, add_special_tokens=False).input_ids)
    if adds_bos:
        ids = [tokenizer.bos_token_id] + ids
    total = len(ids)
    if max_length:
        ids = ids[:max_length]
    if len(ids) < 2:
        raise ValueError(f"Text {index} ({text[:80]!r}) leaves no token to score: perplexity needs "
                         f"{'a non-empty text' if adds_bos else 'at least two tokens (this tokenizer adds no BOS)'}.")
    return ids, total


# Which models score through their decoder and head separately (see _split_head); weak, so models can be freed.
_SPLITS = weakref.WeakKeyDictionary()


def _split_head(model, ids):
    """(decoder, logits of hidden states) when they reproduce `model(ids).logits`, else None (full logits).

    transformers' causal LMs compute logits as lm_head(decoder(ids)), softcapped when the config says so;
    a model doing anything else (logit scaling...) fails this check on a short prefix and is scored whole.
    """
    get_decoder, get_head = getattr(model, "get_decoder", None), getattr(model, "get_output_embeddings", None)
    decoder = get_decoder() if callable(get_decoder) else None
    head = get_head() if callable(get_head) else None
    if decoder is None or head is None or decoder is model:
        return None
    cap = getattr(getattr(model, "config", None), "final_logit_softcapping", None)

    def logits_of(hidden):
        logits = head(hidden)
        if cap:
            logits = torch.tanh(logits / cap) * cap
        return logits.float()

    try:
        split = _SPLITS.get(model)
    except TypeError:  # not weak-referenceable: probe every time
        split = None
    if split is None:
        probe = torch.tensor([ids[:16]], device=_device(model))
        split = torch.allclose(logits_of(decoder(input_ids=probe).last_hidden_state),
                               model(input_ids=probe).logits.float(), rtol=1e-4, atol=1e-4)
        try:
            _SPLITS[model] = split
        except TypeError:
            pass
    return (decoder, logits_of) if split else None


def _device(model):
    return next(model.parameters()).device


def _nll_sum(model, ids, split):
    """Summed NLL of tokens 1..n-1 of one sequence, the log-softmax taken over a few positions at a time."""
    input_ids = torch.tensor([ids], device=_device(model))
    targets = input_ids[0, 1:]
    if split is None:
        logits = model(input_ids=input_ids).logits[0, :-1]
        hidden, logits_of = logits, lambda rows: rows.float()
    else:
        decoder, logits_of = split
        hidden = decoder(input_ids=input_ids).last_hidden_state[0, :-1]
    vocab = getattr(getattr(model, "config", None), "vocab_size", None) or 2**16
    step = max(1, min(LOSS_POSITIONS, LOSS_ELEMENTS // vocab))
    total = 0.0
    for start in range(0, len(targets), step):
        logits = logits_of(hidden[start:start + step])
        nll = F.cross_entropy(logits, targets[start:start + step], reduction="none")
        total += float(nll.double().sum())
    return total


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Perplexity(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            module_type="metric",
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("string")}),
            reference_urls=["https://huggingface.co/docs/transformers/perplexity"],
        )

    def _compute(self, predictions, model=None, tokenizer=None, batch_size=8, max_length=None, details=False):
        model, tokenizer = _resolve(model, tokenizer)
        if not predictions:
            raise ValueError("perplexity needs at least one text.")
        max_length = int(max_length or MAX_TOKENS)
        positions = getattr(getattr(model, "config", None), "max_position_embeddings", None)
        if positions:
            max_length = min(max_length, int(positions))
        adds_bos = _adds_bos(tokenizer)
        sums, counts, totals = [], [], []
        was_training = model.training
        model.eval()
        try:
            with torch.inference_mode():
                for index, text in enumerate(predictions):
                    ids, total = _encode_one(index, text, tokenizer, adds_bos, max_length)
                    sums.append(_nll_sum(model, ids, _split_head(model, ids)))
                    counts.append(len(ids) - 1)
                    totals.append(total)
        finally:
            model.train(was_training)
        perplexities = [math.exp(s / n) for s, n in zip(sums, counts)]
        out = {
            "perplexities": perplexities,
            "mean_perplexity": sum(perplexities) / len(perplexities),
            "perplexity": math.exp(sum(sums) / sum(counts)),
        }
        if details:
            out.update(nll_sums=sums, scored_tokens=counts, tokens=totals, max_length=max_length)
        return out
