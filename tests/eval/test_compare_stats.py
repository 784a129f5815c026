"""Base vs fine-tuned, example by example: wins / losses / ties and the paired bootstrap interval of the difference,
the per-example scores each task pairs on, and where the figures end up (the comparison, the eval file, the card)."""

import itertools
import json
import shutil

import numpy as np
import pytest
import sacrebleu

from lmdemo.eval import compare, stats
from lmdemo.eval.evaluation import paired_comparison
from lmdemo.eval.stats import paired_bootstrap
from lmdemo.eval.evaluation import EvalResult, example_scores
from lmdemo.eval.metrics import load_metric


# ---------------------------------------------------------------- the pure function

def test_equal_scores_tie_everywhere_and_the_interval_is_zero():
    scores = [0.0, 1.0, 1.0, 0.0, 1.0, 0.3, 7.5]
    out = paired_bootstrap(scores, list(scores))
    assert (out["wins"], out["losses"], out["ties"], out["n"]) == (0, 0, 7, 7)
    assert out["difference"] == 0.0 and out["ci95"] == [0.0, 0.0]


def test_a_clear_shift_wins_and_its_interval_excludes_zero():
    rng = np.random.default_rng(1)
    base = rng.normal(50, 10, size=40)
    tuned = base + 5 + rng.normal(0, 1, size=40)
    out = paired_bootstrap(base, tuned)
    assert (out["wins"], out["losses"], out["ties"]) == (40, 0, 0)
    low, high = out["ci95"]
    assert 0 < low < out["difference"] < high and out["difference"] == pytest.approx(np.mean(tuned - base))
    # the other way round: all losses, the interval below zero
    back = paired_bootstrap(tuned, base)
    assert (back["wins"], back["losses"]) == (0, 40) and back["ci95"][1] < 0


def test_lower_is_better_counts_drops_as_wins():
    base, tuned = [20.0, 18.0, 25.0, 30.0, 22.0], [15.0, 18.0, 21.0, 31.0, 12.0]  # perplexities
    out = paired_bootstrap(base, tuned, higher_is_better=False)
    assert (out["wins"], out["losses"], out["ties"], out["higher_is_better"]) == (3, 1, 1, False)
    assert out["difference"] == pytest.approx(-3.6)  # tuned − base, whatever the direction
    assert paired_bootstrap(base, tuned)["wins"] == 1  # read as higher-is-better the same scores win once


def test_classification_counts_and_a_small_set_gives_a_wide_interval():
    base = [1, 0, 0, 1]
    tuned = [1, 1, 0, 0]
    out = paired_bootstrap(base, tuned)
    assert (out["wins"], out["losses"], out["ties"], out["difference"]) == (1, 1, 2, 0.0)
    low, high = out["ci95"]
    assert low <= -0.5 and high >= 0.5  # four examples: an interval about as wide as it can be


def test_the_interval_matches_the_exact_bootstrap_distribution():
    """Brute force: every one of the n**n equally likely resamples of n = 5 differences, enumerated; each end of the
    interval is a 2.5 % / 97.5 % quantile of that exact distribution (up to the resampling error of 20,000 draws)."""
    base = np.array([0.2, 0.5, 0.1, 0.9, 0.4])
    tuned = np.array([0.6, 0.4, 0.1, 1.0, 0.9])
    diff = tuned - base
    n = len(diff)
    exact = np.array([diff[list(idx)].mean() for idx in itertools.product(range(n), repeat=n)])
    out = paired_bootstrap(base, tuned, resamples=20_000)
    low, high = out["ci95"]
    for end, share in ((low, 0.025), (high, 0.975)):
        below, at_or_below = (exact < end - 1e-12).mean(), (exact <= end + 1e-12).mean()
        assert below <= share + 0.005 and at_or_below >= share - 0.005, (end, share, below, at_or_below)
    # and the point estimate is the plain mean difference
    assert out["difference"] == pytest.approx(diff.mean()) == pytest.approx(exact.mean())


def test_the_interval_is_reproducible_and_chunking_changes_nothing(monkeypatch):
    rng = np.random.default_rng(3)
    base, tuned = rng.random(300), rng.random(300)
    first = paired_bootstrap(base, tuned)
    assert paired_bootstrap(base, tuned) == first  # a fixed seed
    assert paired_bootstrap(base, tuned, seed=1)["ci95"] != first["ci95"]
    monkeypatch.setattr(stats, "_CHUNK", 1000)  # three resamples per draw instead of all at once
    assert paired_bootstrap(base, tuned) == first


def test_no_examples_and_one_example_do_not_crash():
    empty = paired_bootstrap([], [])
    assert (empty["n"], empty["wins"], empty["losses"], empty["ties"]) == (0, 0, 0, 0)
    assert empty["difference"] is None and empty["ci95"] is None
    one = paired_bootstrap([0.0], [1.0])
    assert one["ci95"] == [1.0, 1.0] and one["wins"] == 1
    with pytest.raises(ValueError, match="one score per example"):
        paired_bootstrap([1.0, 2.0], [1.0])
    json.dumps(paired_bootstrap([1, 0], [0, 1]))  # plain Python numbers: the job log and eval files are JSON


# ---------------------------------------------------------------- per-example scores

def _result(task, rows, model="m", adapter=None):
    return EvalResult(task, model, adapter, len(rows), {}, 0.0, rows)


def test_per_example_scores_of_each_task():
    rows = [{"text": "a", "label": "positive", "prediction": "POSITIVE"},
            {"text": "b", "label": "negative", "prediction": "positive"}]
    assert example_scores("classification", rows) == ("accuracy", True, [1.0, 0.0])

    preds, refs = ["the cat sat on the mat", "a dog"], ["the cat sat on a mat", "the dog barked"]
    rows = [{"source": "x", "reference": r, "prediction": p} for p, r in zip(preds, refs)]
    metric, higher, scores = example_scores("translation", rows)
    assert (metric, higher) == ("chrf", True)
    assert scores == pytest.approx([sacrebleu.sentence_chrf(p, [r]).score for p, r in zip(preds, refs)])
    # the chrf module's per-example scores leave its corpus score as it was
    both = load_metric("chrf").compute(predictions=preds, references=[[r] for r in refs], per_example=True)
    assert both["score"] == pytest.approx(sacrebleu.corpus_chrf(preds, [refs]).score)

    rows = [{"text": "x", "summary": r, "prediction": p} for p, r in zip(preds, refs)]
    metric, higher, scores = example_scores("summarisation", rows)
    mean = load_metric("rouge").compute(predictions=preds, references=refs)["rougeL"]
    assert (metric, higher) == ("rougeL", True) and np.mean(scores) == pytest.approx(mean)

    rows = [{"prompt": "p", "response": "r", "prediction": 12.5}, {"prompt": "q", "response": "s", "prediction": 3.0}]
    assert example_scores("generation", rows) == ("perplexity", False, [12.5, 3.0])
    assert example_scores("translation", []) == ("chrf", True, [])


def test_paired_comparison_of_two_results():
    base = _result("classification", [{"text": str(i), "label": "a", "prediction": "b"} for i in range(10)])
    tuned = _result("classification", [{"text": str(i), "label": "a", "prediction": "a" if i < 8 else "b"}
                                       for i in range(10)], adapter="x")
    out = paired_comparison(base, tuned)
    assert (out["metric"], out["wins"], out["losses"], out["ties"], out["n"]) == ("accuracy", 8, 0, 2, 10)
    assert out["difference"] == pytest.approx(0.8) and out["ci95"][0] > 0
    with pytest.raises(ValueError, match="same task and rows"):
        paired_comparison(base, _result("classification", base.predictions[:3]))


def test_the_model_card_states_the_paired_figures():
    from lmdemo.models.adapters import model_card

    meta = {"task": "classification", "base_model": "all-minilm-l6-v2", "labels": ["neg", "pos"]}
    paired = {"metric": "accuracy", "higher_is_better": True, "n": 40, "wins": 12, "losses": 3, "ties": 25,
              "difference": 0.225, "ci95": [0.1, 0.35]}
    evals = [{"task": "classification", "adapter": None, "metrics": {"accuracy": 0.5}},
             {"task": "classification", "adapter": "x", "metrics": {"accuracy": 0.725}, "paired": paired}]
    card = str(model_card("x", meta, {}, evals))
    assert ("Fine-tuned vs base on 40 validation examples: 12 wins, 3 losses, 25 ties; accuracy difference +0.23 "
            "(95 % bootstrap interval +0.10 to +0.35; the interval excludes 0).") in card
    ppl = dict(paired, metric="perplexity", higher_is_better=False, difference=-2.0, ci95=[-5.0, 1.0])
    card = str(model_card("x", meta, {}, [evals[0], dict(evals[1], paired=ppl)]))
    assert "perplexity difference -2.00 (lower is better; 95 % bootstrap interval -5.00 to +1.00; the interval " \
           "includes 0" in card
    for none in (None, dict(paired, n=0, difference=None, ci95=None)):  # no comparison, or an empty one
        assert "Fine-tuned vs base" not in str(model_card("x", meta, {}, [evals[0], dict(evals[1], paired=none)]))


# ---------------------------------------------------------------- real comparisons

def test_compare_puts_paired_in_the_result_the_eval_file_and_the_card(prepared, tmp_path):
    """The bundled sentiment adapter (a copy: compare writes beside it) against its bare base, zero-shot."""
    from lmdemo.jobs.sentiment import DEFAULT_ADAPTER
    from lmdemo.eval.evaluation import bundled_path, load_examples

    adapter = tmp_path / "sentiment-copy"
    shutil.copytree(DEFAULT_ADAPTER, adapter)
    rows = load_examples(bundled_path("sentiment"), "sentiment", limit=40)
    result = compare.compare_base_and_adapter("classification", rows, "all-minilm-l6-v2", str(adapter), examples=2)
    assert set(result) >= {"metrics", "examples", "n"} and set(result["metrics"]) == {"base", "fine-tuned"}
    paired = result["paired"]
    assert paired["metric"] == "accuracy" and paired["n"] == result["n"] == 40
    assert paired["wins"] + paired["losses"] + paired["ties"] == 40
    assert paired["difference"] == pytest.approx(result["metrics"]["fine-tuned"]["accuracy"]
                                                 - result["metrics"]["base"]["accuracy"])
    low, high = paired["ci95"]
    assert low <= paired["difference"] <= high and paired["wins"] > paired["losses"]
    saved = json.loads((adapter / "eval-adapter.json").read_text())
    assert saved["paired"] == paired and saved["metrics"] == result["metrics"]["fine-tuned"]
    card = (adapter / "README.md").read_text()
    assert (f"Fine-tuned vs base on 40 validation examples: {paired['wins']} wins, {paired['losses']} losses, "
            f"{paired['ties']} ties; accuracy difference {paired['difference']:+.2f} (95 % bootstrap interval "
            f"{low:+.2f} to {high:+.2f}") in card
    assert "| accuracy |" in card  # the before/after table is there too


def test_translation_compare_with_an_adapter_that_changes_nothing(tmp_path):
    """A fresh LoRA (B = 0) on a random Marian: every example a tie, the interval [0, 0]; the rows take the
    adapter's languages."""
    from peft import LoraConfig, get_peft_model
    from transformers import MarianMTModel

    from lmdemo.models.adapters import save_adapter
    from test_evaluation import build_random_marian

    base = build_random_marian(tmp_path / "opus-mt-en-fr-random")
    lora = get_peft_model(MarianMTModel.from_pretrained(base),
                          LoraConfig(task_type="SEQ_2_SEQ_LM", r=2, target_modules=["q_proj", "v_proj"]))
    adapter = save_adapter(lora, tmp_path / "noop", {"task": "translation", "base_model": str(base),
                                                      "source": "en", "target": "fr"})
    validation = [{"source": s, "target": s} for s in ("The cat sat.", "I like tea.", "It is late.", "Good night.")]
    result = compare.compare_base_and_adapter("translation", validation, str(base), str(adapter), examples=1)
    paired = result["paired"]
    assert (paired["metric"], paired["n"], paired["ties"], paired["ci95"]) == ("chrf", 4, 4, [0.0, 0.0])
    assert result["examples"][0]["base"] == result["examples"][0]["fine-tuned"]
    saved = json.loads((adapter / "eval-base.json").read_text())
    assert saved["n"] == 4 and "translated English → French" in " ".join(saved["notes"])
    assert "4 ties; sentence-level chrF difference +0.00 (95 % bootstrap interval +0.00 to +0.00; the interval " \
           "includes 0" in (adapter / "README.md").read_text()
