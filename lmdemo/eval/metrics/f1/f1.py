"""Precision, recall and F1 over class labels (lmdemo's offline module, on scikit-learn)."""

import datasets
import evaluate
from sklearn.metrics import precision_recall_fscore_support
from sklearn.utils.multiclass import unique_labels

_DESCRIPTION = """
Precision, recall and F1 (their harmonic mean) of predicted class labels against reference labels, as
computed by scikit-learn's `precision_recall_fscore_support`. Labels may be strings (e.g. "positive",
"negative", "neutral") or integers. Multi-class results are averaged per `average`: "macro" (unweighted
mean over classes, the default), "micro" (over all decisions pooled), "weighted" (mean weighted by each
class's support), "binary" (the class `pos_label` only) or None (one value per class).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `str` or `int`): predicted labels.
    references (`list` of `str` or `int`): reference labels, same length as `predictions`.
    average (`str` or None, default "macro"): "macro", "micro", "weighted", "binary", or None for per-class values.
    labels (`list`, optional): the classes to score, and with `average=None` their order. By default every label
        seen in references or predictions, sorted.
    pos_label (`str` or `int`, default 1): the positive class when `average="binary"`.
    sample_weight (`list` of `float`, optional): per-example weights.
    zero_division (`float`, default 0.0): value used where a ratio divides by zero (a class never predicted, or
        never present); 0.0 equals scikit-learn's "warn" result without the warning.
Returns:
    precision, recall, f1 (`float`, or `list` of `float` per class when `average=None`).
    labels (`list`, only when `average=None`): the class of each position in the per-class lists.
Examples:
    >>> f1 = load_metric("f1")
    >>> f1.compute(predictions=["pos", "neg", "pos"], references=["pos", "pos", "pos"], average=None)
    {'precision': [0.0, 1.0], 'recall': [0.0, 0.6666666666666666], 'f1': [0.0, 0.8], 'labels': ['neg', 'pos']}
"""

_CITATION = """
@article{scikit-learn,
  title={Scikit-learn: Machine Learning in {P}ython},
  author={Pedregosa, F. and Varoquaux, G. and Gramfort, A. and Michel, V. and Thirion, B. and Grisel, O.
          and Blondel, M. and Prettenhofer, P. and Weiss, R. and Dubourg, V. and Vanderplas, J. and Passos, A.
          and Cournapeau, D. and Brucher, M. and Perrot, M. and Duchesnay, E.},
  journal={Journal of Machine Learning Research},
  volume={12},
  pages={2825--2830},
  year={2011}
}
"""

# String labels first: evaluate tries the options in order and refuses non-strings for a string feature.
_FEATURES = [
    datasets.Features({"predictions": datasets.Value("string"), "references": datasets.Value("string")}),
    datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
]


def _plain(value):
    """numpy scalars and arrays -> Python floats and lists."""
    return [float(v) for v in value] if hasattr(value, "__len__") else float(value)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class F1(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=_FEATURES,
            reference_urls=[
                "https://scikit-learn.org/stable/modules/generated/sklearn.metrics.precision_recall_fscore_support.html",
                "https://en.wikipedia.org/wiki/F-score",
            ],
        )

    def _compute(self, predictions, references, average="macro", labels=None, pos_label=1, sample_weight=None,
                 zero_division=0.0):
        precision, recall, f1, _ = precision_recall_fscore_support(
            references, predictions, average=average, labels=labels, pos_label=pos_label,
            sample_weight=sample_weight, zero_division=zero_division,
        )
        result = {"precision": _plain(precision), "recall": _plain(recall), "f1": _plain(f1)}
        if average is None:
            order = list(labels) if labels is not None else unique_labels(references, predictions).tolist()
            result["labels"] = order
        return result
