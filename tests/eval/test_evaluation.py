import json

import pytest

from lmdemo.eval import evaluation
from lmdemo.errors import InputError
from test_cli import run_cli


def test_sentiment_eval_on_bundled_set(prepared, tmp_path):
    res = evaluation.run("sentiment", limit=60)
    assert res.n == 60 and set(res.metrics) == {"accuracy", "f1"} and res.metrics["accuracy"] > 0.8
    assert all(r["prediction"] in ("positive", "negative") for r in res.predictions)
    evaluation.write_predictions(res, tmp_path / "p.jsonl")
    first = json.loads((tmp_path / "p.jsonl").read_text().splitlines()[0])
    assert {"text", "label", "prediction"} <= set(first)


def test_translation_summarisation_generation(prepared):
    tr = evaluation.run("translation", limit=2)
    assert set(tr.metrics) == {"bleu", "chrf"} and 0 < tr.metrics["chrf"] <= 100
    summ = evaluation.run("summarization", limit=1)
    assert set(summ.metrics) == {"rouge1", "rouge2", "rougeL", "rougeLsum"} and 0 < summ.metrics["rouge1"] <= 1
    gen = evaluation.run("generation", limit=3)
    assert gen.metrics["perplexity"] > 1 and gen.n == 3


def test_cli_json_shape(prepared, tmp_path):
    out = run_cli("eval", "sentiment", "--limit", "10", "--json", "--predictions", str(tmp_path / "p.jsonl"),
                  "--save", str(tmp_path / "r.json"))
    assert out.returncode == 0, out.stderr
    obj = json.loads(out.stdout)
    assert set(obj) == {"task", "model", "adapter", "n", "metrics", "seconds", "dataset"} and obj["n"] == 10
    assert obj["dataset"] == "lmdemo bundled sentiment set"
    assert json.loads((tmp_path / "r.json").read_text())["metrics"] == obj["metrics"]
    assert len((tmp_path / "p.jsonl").read_text().splitlines()) == 10


def test_column_mapping_csv(prepared, tmp_path):
    (tmp_path / "d.csv").write_text("review,stars\nLovely hotel.,positive\nAwful food.,negative\n")
    res = evaluation.run("sentiment", tmp_path / "d.csv", column_map={"review": "text", "stars": "label"})
    assert res.n == 2 and res.metrics["accuracy"] == 1.0


@pytest.mark.parametrize("content, message", [
    ('{"text": "ok", "label": "positive"}\n{"text": "bad"\n', "line 2: not valid JSON"),
    ('{"text": "ok", "label": "positive"}\n{"review": "x", "label": "negative"}\n', "line 2: missing field"),
    ('{"text": "  ", "label": "positive"}\n', "line 1: empty text"),
    ("", "empty"),
])
def test_bad_files_name_the_line(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(InputError, match=message):
        evaluation.run("sentiment", path)


def test_unknown_task_and_bad_limit(tmp_path):
    with pytest.raises(InputError, match="Unknown task"):
        evaluation.run("poetry")
    with pytest.raises(InputError, match="limit"):
        evaluation.run("sentiment", limit=0)


def test_hub_dataset_id_offline_is_a_clear_error():
    with pytest.raises(InputError, match="'someone/some-dataset'.*offline"):
        evaluation.run("sentiment", "someone/some-dataset")
