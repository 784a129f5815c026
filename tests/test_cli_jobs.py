"""The job subcommands, as scripts call them (one JSON object per input with --json)."""

import json

from test_cli import run_cli


def test_generate_json_is_seeded(prepared):
    args = ("generate", "Say hello.", "--max-new-tokens", "8", "--seed", "5", "--json")
    first = json.loads(run_cli(*args).stdout)
    assert set(first) == {"text", "tokens", "tokens_per_second"} and first["tokens"] > 0
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
    assert tr["source"] == "Good night." and "noches" in tr["translation"].lower()
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
