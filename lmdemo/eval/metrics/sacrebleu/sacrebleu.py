"""Corpus BLEU by sacreBLEU (lmdemo's offline module)."""

import datasets
import evaluate
import sacrebleu as scb

_DESCRIPTION = """
BLEU (Papineni et al., 2002) scores a corpus of translations by clipped n-gram precisions (n = 1..4)
against one or more references, times a brevity penalty. sacreBLEU (Post, 2018) computes it with its own
standard tokenisation so scores are comparable; the score is `sacrebleu.corpus_bleu(...).score`, on a
0-100 scale.

Tokenisation matters: the default "13a" splits on spaces and punctuation, which suits most languages;
use `tokenize="zh"` when the references are Chinese (characters are split apart), "ja-mecab" for Japanese,
"ko-mecab" for Korean, "char" for character level, "flores200"/"spm" for SentencePiece, "intl" for
Unicode-aware punctuation splitting, "none" for text already tokenised.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `str`): system translations.
    references (`list` of `list` of `str`, or `list` of `str`): the references of each prediction (one or more;
        the number may vary between predictions).
    tokenize (`str`, default "13a"): sacreBLEU tokenizer ("13a", "zh", "intl", "char", "none", ...).
    lowercase (`bool`, default False): lowercase before scoring.
    smooth_method (`str`, default "exp"): "none", "floor", "add-k" or "exp".
    smooth_value (`float`, optional): for "floor" and "add-k".
    force (`bool`, default False): score text that looks tokenised already without warning.
    use_effective_order (`bool`, default False): ignore n-gram orders with no match (for sentence-level use).
Returns:
    score (`float`, 0-100): BLEU.
    counts (`list` of `int`): matched n-grams for n = 1..4.
    totals (`list` of `int`): system n-grams for n = 1..4.
    precisions (`list` of `float`, 0-100): n-gram precisions.
    bp (`float`): brevity penalty.
    sys_len (`int`), ref_len (`int`): system and effective reference lengths in tokens.
Examples:
    >>> bleu = load_metric("sacrebleu")
    >>> bleu.compute(predictions=["the cat sat on the mat"], references=[["the cat sat on the mat"]])["score"]
    100.00000000000004
"""

_CITATION = """
@inproceedings{post-2018-call,
    title = "A Call for Clarity in Reporting {BLEU} Scores",
    author = "Post, Matt",
    booktitle = "Proceedings of the Third Conference on Machine Translation: Research Papers",
    month = oct,
    year = "2018",
    address = "Belgium, Brussels",
    publisher = "Association for Computational Linguistics",
    url = "https://www.aclweb.org/anthology/W18-6319",
    pages = "186--191",
}
@inproceedings{papineni-etal-2002-bleu,
    title = "{B}leu: a Method for Automatic Evaluation of Machine Translation",
    author = "Papineni, Kishore and Roukos, Salim and Ward, Todd and Zhu, Wei-Jing",
    booktitle = "Proceedings of the 40th Annual Meeting of the Association for Computational Linguistics",
    year = "2002",
    pages = "311--318",
}
"""

_FEATURES = [
    datasets.Features(
        {"predictions": datasets.Value("string"), "references": datasets.Sequence(datasets.Value("string"))}
    ),
    datasets.Features({"predictions": datasets.Value("string"), "references": datasets.Value("string")}),
]


def reference_streams(references):
    """Per-prediction reference lists -> sacreBLEU's reference streams (one list per reference slot).

    Predictions with fewer references than the most are padded with None, which sacreBLEU skips.
    """
    per_prediction = [[refs] if isinstance(refs, str) else list(refs) for refs in references]
    if any(not refs for refs in per_prediction):
        raise ValueError("Every prediction needs at least one reference.")
    width = max((len(refs) for refs in per_prediction), default=1)
    return [[refs[i] if i < len(refs) else None for refs in per_prediction] for i in range(width)]


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Sacrebleu(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=_FEATURES,
            homepage="https://github.com/mjpost/sacrebleu",
            codebase_urls=["https://github.com/mjpost/sacrebleu"],
            reference_urls=["https://aclanthology.org/W18-6319/", "https://aclanthology.org/P02-1040/"],
        )

    def _compute(self, predictions, references, tokenize="13a", lowercase=False, smooth_method="exp",
                 smooth_value=None, force=False, use_effective_order=False):
        if len(predictions) != len(references):
            raise ValueError(f"{len(predictions)} predictions but {len(references)} references.")
        output = scb.corpus_bleu(
            list(predictions), reference_streams(references), tokenize=tokenize, lowercase=lowercase,
            smooth_method=smooth_method, smooth_value=smooth_value, force=force,
            use_effective_order=use_effective_order,
        )
        return {
            "score": output.score,
            "counts": list(output.counts),
            "totals": list(output.totals),
            "precisions": list(output.precisions),
            "bp": output.bp,
            "sys_len": output.sys_len,
            "ref_len": output.ref_len,
        }
