"""ROUGE-1/2/L/Lsum F-measures (lmdemo's offline module, on Google's `rouge_score`)."""

import datasets
import evaluate
from rouge_score import rouge_scorer

_DESCRIPTION = """
ROUGE (Recall-Oriented Understudy for Gisting Evaluation) compares a generated text with one or more
reference texts by overlapping units: rouge1 (unigrams), rouge2 (bigrams), rougeL (longest common
subsequence over the whole text) and rougeLsum (summary-level LCS: the union LCS over sentences).

Scores come from `rouge_score.rouge_scorer.RougeScorer` and are F-measures on a 0-1 scale.

How this module differs from, or agrees with, Hugging Face's `evaluate` rouge:
- Aggregation: with `use_aggregator=True` (default) each score is the plain arithmetic MEAN of the
  per-example F-measures. Hugging Face's module instead reports the "mid" of a bootstrap resampling
  (`rouge_scorer.scoring.BootstrapAggregator`), which is a random estimate close to that mean; the plain
  mean is deterministic. `use_aggregator=False` returns the per-example F-measures as lists.
- rougeLsum splits texts into sentences on newlines ("\\n"), as `rouge_score` does: put one sentence per
  line (e.g. with `"\\n".join(sentences)`); a text without newlines is one sentence, and then
  rougeLsum equals rougeL.
- Several references for one prediction: the best-scoring reference counts (`RougeScorer.score_multi`).
- rouge_score's default tokenizer lowercases and keeps only ASCII letters and digits [a-z0-9]: accented
  letters split words and non-Latin scripts (Chinese...) are dropped entirely. Pass `tokenizer=` (any
  object with a `tokenize(text) -> list[str]` method) to score such text.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `str`): generated texts.
    references (`list` of `str`, or `list` of `list` of `str`): one reference, or several, per prediction.
    rouge_types (`list` of `str`, default ["rouge1", "rouge2", "rougeL", "rougeLsum"]): which scores to compute
        (any type rouge_score accepts, e.g. "rouge3").
    use_stemmer (`bool`, default False): Porter-stem words before matching.
    use_aggregator (`bool`, default True): return the mean over examples; False returns per-example lists.
    tokenizer (object with `tokenize(str) -> list[str]`, optional): replaces rouge_score's ASCII tokenizer.
Returns:
    rouge1, rouge2, rougeL, rougeLsum (`float` in [0, 1], or `list` of `float` with `use_aggregator=False`):
    the F-measure of each requested type.
Examples:
    >>> rouge = load_metric("rouge")
    >>> rouge.compute(predictions=["the cat sat"], references=["the cat sat down"])
    {'rouge1': 0.8571428571428571, 'rouge2': 0.8, 'rougeL': 0.8571428571428571, 'rougeLsum': 0.8571428571428571}
"""

_CITATION = """
@inproceedings{lin-2004-rouge,
    title = "{ROUGE}: A Package for Automatic Evaluation of Summaries",
    author = "Lin, Chin-Yew",
    booktitle = "Text Summarization Branches Out",
    month = jul,
    year = "2004",
    address = "Barcelona, Spain",
    publisher = "Association for Computational Linguistics",
    url = "https://www.aclweb.org/anthology/W04-1013",
    pages = "74--81",
}
"""

ROUGE_TYPES = ["rouge1", "rouge2", "rougeL", "rougeLsum"]

_FEATURES = [
    datasets.Features(
        {"predictions": datasets.Value("string"), "references": datasets.Sequence(datasets.Value("string"))}
    ),
    datasets.Features({"predictions": datasets.Value("string"), "references": datasets.Value("string")}),
]


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Rouge(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=_FEATURES,
            codebase_urls=["https://github.com/google-research/google-research/tree/master/rouge"],
            reference_urls=["https://aclanthology.org/W04-1013/", "https://pypi.org/project/rouge-score/"],
        )

    def _compute(self, predictions, references, rouge_types=None, use_stemmer=False, use_aggregator=True,
                 tokenizer=None):
        rouge_types = list(rouge_types or ROUGE_TYPES)
        scorer = rouge_scorer.RougeScorer(rouge_types, use_stemmer=use_stemmer, tokenizer=tokenizer)
        per_example = {rouge_type: [] for rouge_type in rouge_types}
        for prediction, refs in zip(predictions, references):
            if isinstance(refs, str):
                scores = scorer.score(refs, prediction)
            else:
                if not refs:
                    raise ValueError("Every prediction needs at least one reference.")
                scores = scorer.score_multi(refs, prediction)
            for rouge_type in rouge_types:
                per_example[rouge_type].append(float(scores[rouge_type].fmeasure))
        if not use_aggregator:
            return per_example
        return {rouge_type: sum(values) / len(values) if values else 0.0
                for rouge_type, values in per_example.items()}
