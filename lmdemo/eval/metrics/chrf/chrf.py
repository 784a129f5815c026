"""Corpus chrF / chrF++ by sacreBLEU (lmdemo's offline module)."""

import datasets
import evaluate
import sacrebleu as scb

_DESCRIPTION = """
chrF (Popović, 2015) is a character n-gram F-score: precision and recall of character n-grams (up to
`char_order`, default 6) between a translation and its references, combined with recall weighted `beta`
times as much as precision (default 2). chrF++ (Popović, 2017) adds word n-grams up to `word_order` = 2.
Computed by `sacrebleu.corpus_chrf` on a 0-100 scale. Being character based it needs no tokenizer, so it
works as is for Chinese, Japanese and other scripts without spaces. Whitespace is removed before
character n-grams are extracted (sacreBLEU's default).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `str`): system translations.
    references (`list` of `list` of `str`, or `list` of `str`): the references of each prediction (one or more;
        the number may vary between predictions).
    char_order (`int`, default 6): character n-gram order.
    word_order (`int`, default 0): word n-gram order; 0 is chrF, 2 is chrF++.
    beta (`int`, default 2): weight of recall relative to precision.
    lowercase (`bool`, default False): lowercase before scoring.
    whitespace (`bool`, default False): keep whitespace in character n-grams.
    eps_smoothing (`bool`, default False): epsilon smoothing as in chrF++.py / NLTK / Moses.
    per_example (`bool`, default False): also return `scores`, the sentence-level chrF of each prediction.
Returns:
    score (`float`, 0-100), char_order (`int`), word_order (`int`), beta (`int`);
    with `per_example=True` also scores (`list` of `float`, 0-100): one per prediction (its corpus chrF alone).
Examples:
    >>> chrf = load_metric("chrf")
    >>> chrf.compute(predictions=["the cat"], references=[["the cat"]], word_order=2)
    {'score': 100.0, 'char_order': 6, 'word_order': 2, 'beta': 2}
"""

_CITATION = """
@inproceedings{popovic-2015-chrf,
    title = "chr{F}: character n-gram {F}-score for automatic {MT} evaluation",
    author = "Popovi{\\'c}, Maja",
    booktitle = "Proceedings of the Tenth Workshop on Statistical Machine Translation",
    year = "2015",
    pages = "392--395",
}
@inproceedings{popovic-2017-chrf,
    title = "chr{F}++: words helping character n-grams",
    author = "Popovi{\\'c}, Maja",
    booktitle = "Proceedings of the Second Conference on Machine Translation",
    year = "2017",
    pages = "612--618",
}
@inproceedings{post-2018-call,
    title = "A Call for Clarity in Reporting {BLEU} Scores",
    author = "Post, Matt",
    booktitle = "Proceedings of the Third Conference on Machine Translation: Research Papers",
    year = "2018",
    pages = "186--191",
}
"""

_FEATURES = [
    datasets.Features(
        {"predictions": datasets.Value("string"), "references": datasets.Sequence(datasets.Value("string"))}
    ),
    datasets.Features({"predictions": datasets.Value("string"), "references": datasets.Value("string")}),
]


def reference_streams(references):
    """Per-prediction reference lists -> sacreBLEU's reference streams, padded with None (skipped)."""
    per_prediction = [[refs] if isinstance(refs, str) else list(refs) for refs in references]
    if any(not refs for refs in per_prediction):
        raise ValueError("Every prediction needs at least one reference.")
    width = max((len(refs) for refs in per_prediction), default=1)
    return [[refs[i] if i < len(refs) else None for refs in per_prediction] for i in range(width)]


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Chrf(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=_FEATURES,
            homepage="https://github.com/mjpost/sacrebleu",
            codebase_urls=["https://github.com/mjpost/sacrebleu"],
            reference_urls=["https://aclanthology.org/W15-3049/", "https://aclanthology.org/W17-4770/"],
        )

    def _compute(self, predictions, references, char_order=6, word_order=0, beta=2, lowercase=False,
                 whitespace=False, eps_smoothing=False, per_example=False):
        if len(predictions) != len(references):
            raise ValueError(f"{len(predictions)} predictions but {len(references)} references.")
        # corpus_chrf has no lowercase argument; the CHRF class it wraps does.
        metric = scb.CHRF(char_order=char_order, word_order=word_order, beta=beta, lowercase=lowercase,
                          whitespace=whitespace, eps_smoothing=eps_smoothing)
        streams = reference_streams(references)
        output = metric.corpus_score(list(predictions), streams)
        result = {"score": output.score, "char_order": output.char_order, "word_order": output.word_order,
                  "beta": output.beta}
        if per_example:  # paired comparisons need one score per sentence; the same settings, None refs skipped
            refs = [[stream[i] for stream in streams if stream[i] is not None] for i in range(len(predictions))]
            result["scores"] = [metric.sentence_score(p, r).score for p, r in zip(predictions, refs)]
        return result
