import dataclasses
import json
import threading
from pathlib import Path

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
    assert summ.model == "gemma-3-270m" and Path(summ.adapter).name == "news-summary-gemma"  # the default, named
    gen = evaluation.run("generation", limit=3)
    assert gen.metrics["perplexity"] > 1 and gen.n == 3


def test_cli_json_shape(prepared, tmp_path):
    out = run_cli("eval", "sentiment", "--limit", "10", "--json", "--predictions", str(tmp_path / "p.jsonl"),
                  "--save", str(tmp_path / "r.json"))
    assert out.returncode == 0, out.stderr
    obj = json.loads(out.stdout)
    assert set(obj) == {"task", "model", "adapter", "n", "metrics", "seconds", "dataset", "notes"} and obj["n"] == 10
    assert obj["notes"] == []
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


# ---------------------------------------------------------------- stop between examples

def test_stop_set_from_on_progress_stops_before_the_next_example(prepared, tmp_path):
    stop = threading.Event()
    seen = []

    def on_progress(done, total):
        seen.append(done)
        if done == 2:
            stop.set()

    rows = evaluation.load_examples(evaluation.bundled_path("generation"), "generation", limit=6)
    with pytest.raises(evaluation.Stopped, match=r"^Evaluation stopped after 2 of 6 examples\.$"):
        evaluation.run_rows("generation", rows, on_progress=on_progress, stop=stop)
    assert seen == [1, 2] and sum("prediction" in r for r in rows) == 2


def test_stop_set_from_another_thread_stops_a_comparison(prepared):
    """A worker thread sets the event once the first batch is scored; no further batch is classified."""
    stop, first_batch = threading.Event(), threading.Event()
    seen = []

    def on_progress(done, total):
        seen.append((done, total))
        first_batch.set()
        assert stop.wait(30)  # hold until the other thread has set it, so the test does not race

    setter = threading.Thread(target=lambda: first_batch.wait(60) and stop.set())
    setter.start()
    req = evaluation.EvalRequest("sentiment", models=["default", "default"], limit=100)
    try:
        with pytest.raises(evaluation.Stopped, match=r"stopped after 32 of 100 examples of model 1 of 2"):
            evaluation.compare_models(req, on_progress=on_progress, stop=stop)
    finally:
        setter.join()
    assert seen == [(32, 100)]
    assert isinstance(evaluation.Stopped("x"), InputError)


def test_an_unset_stop_event_changes_nothing(prepared):
    res = evaluation.run("sentiment", limit=40, stop=threading.Event())
    assert res.n == 40 and all("prediction" in r for r in res.predictions)


# ---------------------------------------------------------------- demo-mode caps

@pytest.fixture
def demo_mode():
    from lmdemo.config import get_settings, set_settings

    before = get_settings()
    set_settings(dataclasses.replace(before, demo_mode=True))
    yield
    set_settings(before)


def sentiment_file(path, n):
    path.write_text("".join(json.dumps({"text": f"Review {i}: {'lovely' if i % 2 else 'awful'} stay.",
                                        "label": "positive" if i % 2 else "negative"}) + "\n" for i in range(n)))
    return path


def test_demo_mode_caps_rows_with_a_note(prepared, demo_mode, tmp_path):
    from lmdemo.config import DEMO_LIMITS

    cap = DEMO_LIMITS.max_eval_rows
    data = sentiment_file(tmp_path / "many.jsonl", cap + 30)
    for limit in (None, cap + 1, 10_000):
        (label, res), = evaluation.compare_models(evaluation.EvalRequest("sentiment", str(data), limit=limit)).results
        assert res.n == cap and res.notes and f"at most {cap} examples" in res.notes[0]
        assert res.summary()["notes"] == res.notes
    small = evaluation.run("sentiment", data, limit=7)
    assert small.n == 7 and small.notes == []  # asked for fewer: nothing to say
    short = evaluation.run("sentiment", sentiment_file(tmp_path / "few.jsonl", 12))
    assert short.n == 12 and short.notes == []  # under the cap: nothing was cut


def test_demo_mode_refuses_more_models_than_the_cap(demo_mode):
    from lmdemo.config import DEMO_LIMITS

    models = ["smollm2-135m-instruct"] * (DEMO_LIMITS.max_eval_models + 1)
    with pytest.raises(InputError, match=f"{len(models)} models given; this shared app compares at most "
                                         f"{DEMO_LIMITS.max_eval_models}"):
        evaluation.EvalRequest("generation", models=models)


def test_compare_models_checks_the_model_cap_again(prepared, tmp_path):
    """A request built before demo mode was switched on is still refused."""
    from lmdemo.config import DEMO_LIMITS, get_settings, set_settings

    req = evaluation.EvalRequest("sentiment", models=["default"] * 3, limit=1)
    before = get_settings()
    set_settings(dataclasses.replace(before, demo_mode=True))
    try:
        with pytest.raises(InputError, match=f"at most {DEMO_LIMITS.max_eval_models} at a time"):
            evaluation.compare_models(req)
    finally:
        set_settings(before)


# ---------------------------------------------------------------- translation languages: per row, given or default

def build_random_marian(folder):
    """An untrained 2+2-layer Marian en -> fr (tiny_families' tokenizer and size), built in a second or two: its
    output is noise, which is all the evaluation plumbing needs (tiny_families.build_marian_copy trains ~1 min)."""
    from transformers import MarianConfig, MarianMTModel

    import tiny_families as tf

    tok = tf.marian_tokenizer(folder)
    pad, eos = tok.pad_token_id, tok.eos_token_id
    config = MarianConfig(vocab_size=len(tok), max_position_embeddings=128, **tf._DIMS,
                          scale_embedding=True, static_position_embeddings=True, share_encoder_decoder_embeddings=True,
                          pad_token_id=pad, eos_token_id=eos, bos_token_id=eos, decoder_start_token_id=pad,
                          forced_eos_token_id=eos)
    with tf._seeded():
        model = MarianMTModel(config)
    return tf._save(model, tok, folder)


@pytest.fixture(scope="module")
def random_marian(tmp_path_factory):
    return build_random_marian(tmp_path_factory.mktemp("marian") / "opus-mt-en-fr-random")


def test_translation_rows_without_languages_take_the_given_or_default_ones(tmp_path):
    data = tmp_path / "pairs.jsonl"
    data.write_text(json.dumps({"source": "Hello.", "reference": "Bonjour."}) + "\n"
                    + json.dumps({"source": "Hallo.", "reference": "Hello.", "source_lang": "DE",
                                  "target_lang": "en"}) + "\n"
                    + json.dumps({"source": "Hola.", "reference": "Hello.", "source_lang": "",
                                  "target_lang": None}) + "\n")
    langs = lambda rows: [(r["source_lang"], r["target_lang"]) for r in rows]  # noqa: E731
    # None: `lmdemo translate`'s defaults (en -> fr); a row's own columns win, lower-cased as translate reads them
    assert langs(evaluation.load_examples(data, "translation")) == [("en", "fr"), ("de", "en"), ("en", "fr")]
    assert langs(evaluation.load_examples(data, "translation", source=" ES", target="it")) == [
        ("es", "it"), ("de", "en"), ("es", "it")]
    from lmdemo.jobs.base import defaults
    from lmdemo.jobs.translation import TranslationRequest

    assert evaluation.translation_languages() == (defaults(TranslationRequest)["source"],
                                                   defaults(TranslationRequest)["target"]) == ("en", "fr")
    for kwargs, message in (({"source": "xx"}, "`source` language 'xx' is not supported; choose one of en, fr"),
                            ({"target": "klingon"}, "`target` language 'klingon' is not supported"),
                            ({"source": "fr"}, "Source and target language are both French")):
        with pytest.raises(InputError, match=message):
            evaluation.load_examples(data, "translation", **kwargs)
        with pytest.raises(InputError, match=message):
            evaluation.EvalRequest("translation", str(data), **kwargs)
    evaluation.EvalRequest("sentiment", source="xx")  # other tasks ignore the languages
    data.write_text(json.dumps({"source": "Hi.", "reference": "Salut.", "source_lang": "xx"}) + "\n")
    with pytest.raises(InputError, match="pairs.jsonl line 1: `source_lang` 'xx' is not supported"):
        evaluation.load_examples(data, "translation")


def cli(capsys, *args) -> tuple[int, str, str]:
    """`python -m lmdemo ARGS` in this process (no second torch import): exit code, stdout, stderr."""
    from lmdemo.cli import main

    capsys.readouterr()
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_eval_translation_without_language_columns(random_marian, tmp_path, capsys):
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps({"source": s, "reference": s}) + "\n" for s in ("The cat sat.", "I like tea.")))
    model = str(random_marian)
    runs = {}
    for name, flags in (("given", ["--source", "en", "--target", "fr"]), ("default", [])):
        code, out, err = cli(capsys, "eval", "translation", "--data", str(data), "--model", model, "--json",
                             "--predictions", str(tmp_path / f"{name}.jsonl"), *flags)
        assert code == 0, err
        runs[name] = json.loads(out)
        rows = [json.loads(line) for line in (tmp_path / f"{name}.jsonl").read_text().splitlines()]
        assert [(r["source_lang"], r["target_lang"]) for r in rows] == [("en", "fr")] * 2
        assert runs[name]["n"] == 2 and set(runs[name]["metrics"]) == {"bleu", "chrf"}
        assert "2 of 2 example(s) name no source_lang/target_lang: translated English → French." in runs[name]["notes"]
    assert runs["given"]["metrics"] == runs["default"]["metrics"]
    # The languages reach the model: this one translates from English only, and says so in one line.
    for flags, message in ((["--source", "de"], "translates from English only"),
                           (["--source", "xx", "--target", "fr"], "`source` language 'xx' is not supported"),
                           (["--target", "EN"], "Source and target language are both English")):
        code, out, err = cli(capsys, "eval", "translation", "--data", str(data), "--model", model, *flags)
        assert code == 2 and out == "" and "Traceback" not in err, (flags, out, err)
        lines = [line for line in err.split("\n") if line and "\r" not in line]  # tqdm's bars redraw with \r
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], (flags, err)
