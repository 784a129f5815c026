"""The job subcommands, as scripts call them (one JSON object per input with --json)."""

import json

from test_cli import run_cli


def test_generate_json_is_seeded(prepared):
    args = ("generate", "Say hello.", "--max-new-tokens", "8", "--seed", "5", "--json")
    first = json.loads(run_cli(*args).stdout)
    assert {"text", "tokens", "tokens_per_second", "finish_reason", "backend"} <= set(first) and first["tokens"] > 0
    assert json.loads(run_cli(*args).stdout)["text"] == first["text"]


def test_sentiment_json_lines(prepared, tmp_path):
    out = run_cli("sentiment", "I love this place!", "The worst meal ever.", "--json")
    rows = [json.loads(l) for l in out.stdout.splitlines()]
    assert [(r["label"], r["text"]) for r in rows] == [("positive", "I love this place!"), ("negative", "The worst meal ever.")]
    (tmp_path / "t.csv").write_text("text\nFantastic staff.\n")
    rows = [json.loads(l) for l in run_cli("sentiment", "--file", str(tmp_path / "t.csv"), "--json").stdout.splitlines()]
    assert rows[0]["label"] == "positive" and 0.5 < rows[0]["score"] <= 1


def test_translate_summarize_perplexity(prepared):
    tr = json.loads(run_cli("translate", "Good night.", "--source", "en", "--target", "es", "--json").stdout)
    assert tr["text"] == "Good night." and tr["source"] == "en" and "noches" in tr["translation"].lower()
    summ = json.loads(run_cli("summarize", "The bakery on Main Street closed today after fifty years. Its owner is "
                                           "retiring and no buyer was found.", "--max-words", "20", "--json").stdout)
    assert 0 < len(summ["summary"].split()) <= 21
    ppl = json.loads(run_cli("perplexity", "The cat sat on the mat.", "--json").stdout)
    assert ppl["perplexity"] > 1 and all(isinstance(t, str) and lp <= 0 for t, lp in ppl["tokens"])


def test_bad_input_gives_one_line_and_nonzero_exit(prepared):
    for args in (("sentiment", "   "), ("translate", "hello", "--target", "xx"),
                 ("generate", "hi", "--temperature", "nan"), ("summarize", "--file", "/no/such/file"),
                 ("generate", "hi", "--model", "nobody/nothing")):
        out = run_cli(*args)
        assert out.returncode == 2, (args, out.stderr)
        assert out.stderr.startswith("error: ") and "Traceback" not in out.stderr, (args, out.stderr)


def test_next_tokens_bigram_and_an_adapter_name_as_model(prepared):
    top = json.loads(run_cli("next-tokens", "The capital of France is", "--k", "3", "--json").stdout)
    assert len(top["tokens"]) == 3 and top["tokens"][0][0].strip() == "Paris"
    cmp = json.loads(run_cli("bigram", "the cat sat", "--corpus", "the cat sat\nthe dog sat", "--json").stdout)
    assert cmp["bigram_perplexity"] > 1 and cmp["lm_perplexity"] > 1 and cmp["bigram_tokens"] == 4
    # The bundled adapter's name typed as the model: loaded on its base, the same answer as the default.
    named = run_cli("sentiment", "What a lovely day.", "--model", "sentiment-minilm", "--json")
    assert named.returncode == 0, named.stderr
    assert json.loads(named.stdout) == json.loads(run_cli("sentiment", "What a lovely day.", "--json").stdout)


def test_eval_compares_several_models(prepared):
    out = run_cli("eval", "sentiment", "--models", "default", "all-minilm-l6-v2", "--limit", "6", "--json")
    assert out.returncode == 0, out.stderr
    results = json.loads(out.stdout)["results"]
    assert [r["label"] for r in results] == ["default", "all-minilm-l6-v2"] and all(r["n"] == 6 for r in results)
    assert results[0]["adapter"] and not results[1]["adapter"]  # the bundled adapter vs the bare encoder


def test_finetune_check_and_estimate_train_nothing(tmp_path):
    out = run_cli("finetune", "classification", "--sample", "topics (4 classes)", "--output", str(tmp_path / "a"),
                  "--check")
    assert out.returncode == 0, out.stderr
    plan = json.loads(out.stdout)
    assert plan["train_rows"] > 0 and plan["validation_rows"] > 0 and len(plan["labels"]) == 4
    assert not (tmp_path / "a").exists()
    bad = run_cli("finetune", "sft", "--sample", "topics (4 classes)", "--output", "x", "--check")
    assert bad.returncode == 2 and "classification data" in bad.stderr
