"""Perplexity of texts under a causal language model (lmdemo's offline module)."""

import math
import os

import datasets
import evaluate
import torch
import torch.nn.functional as F

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
    batch_size (`int`, default 8): texts per forward pass (padded on the right, with an attention mask).
    max_length (`int`, optional): keep at most this many tokens per text (BOS included); defaults to the model's
        `max_position_embeddings` when it has one.
Returns:
    perplexities (`list` of `float`): per text.
    mean_perplexity (`float`): mean of `perplexities`.
    perplexity (`float`): exp(total NLL / total scored tokens) over all texts.
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


def encode(texts, tokenizer, max_length=None):
    """Token ids to feed for each text: BOS first when the tokenizer adds one itself, cut to `max_length`."""
    bos = tokenizer.bos_token_id
    adds_bos = bos is not None and tokenizer("a").input_ids[:1] == [bos]
    sequences = []
    for index, text in enumerate(texts):
        ids = list(tokenizer(text, add_special_tokens=False).input_ids)
        if adds_bos:
            ids = [bos] + ids
        if max_length:
            ids = ids[:max_length]
        if len(ids) < 2:
            raise ValueError(f"Text {index} ({text!r}) leaves no token to score: perplexity needs "
                             f"{'a non-empty text' if adds_bos else 'at least two tokens (this tokenizer adds no BOS)'}.")
        sequences.append(ids)
    return sequences


def _nll_sums(model, sequences, batch_size, pad_id):
    """(summed NLL, scored token count) per sequence; batches are built from length-sorted sequences."""
    device = next(model.parameters()).device
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    sums, counts = [0.0] * len(sequences), [0] * len(sequences)
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        width = max(len(sequences[i]) for i in rows)
        input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for row, i in enumerate(rows):
            input_ids[row, :len(sequences[i])] = torch.tensor(sequences[i], dtype=torch.long)
            mask[row, :len(sequences[i])] = 1
        input_ids, mask = input_ids.to(device), mask.to(device)
        logits = model(input_ids=input_ids, attention_mask=mask).logits[:, :-1].float()
        nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), input_ids[:, 1:].reshape(-1), reduction="none")
        nll = nll.view(len(rows), width - 1).double() * mask[:, 1:]
        for row, i in enumerate(rows):
            sums[i] = float(nll[row].sum())
            counts[i] = len(sequences[i]) - 1
    return sums, counts


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

    def _compute(self, predictions, model=None, tokenizer=None, batch_size=8, max_length=None):
        model, tokenizer = _resolve(model, tokenizer)
        if not predictions:
            raise ValueError("perplexity needs at least one text.")
        if max_length is None:
            max_length = getattr(getattr(model, "config", None), "max_position_embeddings", None)
        sequences = encode(predictions, tokenizer, max_length)
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        was_training = model.training
        model.eval()
        try:
            with torch.inference_mode():
                sums, counts = _nll_sums(model, sequences, max(1, int(batch_size)), pad_id)
        finally:
            model.train(was_training)
        perplexities = [math.exp(s / n) for s, n in zip(sums, counts)]
        return {
            "perplexities": perplexities,
            "mean_perplexity": sum(perplexities) / len(perplexities),
            "perplexity": math.exp(sum(sums) / sum(counts)),
        }
