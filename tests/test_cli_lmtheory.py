"""`lmdemo attention`, `lmdemo positions` and `lmdemo lstm`: the LM lab's theory views from the command line.

Run in-process (`main([...])` with capsys) on a tiny Llama built here, so no built-in model is needed; the exit
status, Ctrl-C and "no traceback" checks run the real `python -m lmdemo` in a subprocess. Each figure is checked
against an independent computation (the formula with `math`, the model's config, a bigram fitted here, the
library called directly), not only against the command's own output.
"""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from lmdemo.cli import main
from lmdemo.jobs import lstm_lm
from lmdemo.jobs.lmlab import BigramModel, score_text
from lmdemo.jobs.lmtheory import AttentionRequest, attention
from lmdemo.models.loading import load
from test_cli import ROOT, run_cli
from tiny_families import SENTENCES, build_tiny_llama

TEXT = "The cat sat on the warm mat."
CORPUS = "\n".join(SENTENCES[:20])


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory) -> str:
    """A 2-layer, 4-head Llama (untrained) whose tokenizer adds <s>; loaded once here, so later commands print
    no loading progress."""
    folder = str(build_tiny_llama(tmp_path_factory.mktemp("cli-theory-llama"), chat=False))
    load(folder)
    return folder


@pytest.fixture
def corpus_file(tmp_path) -> Path:
    path = tmp_path / "small.txt"
    path.write_text(CORPUS, encoding="utf-8")
    return path


def _run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def _one_json(out: str) -> dict:
    """stdout holds exactly one JSON document (json.loads refuses anything after it) on one line."""
    assert out.count("\n") == 1 and out.endswith("\n"), out[:500]
    return json.loads(out)


# ---------------------------------------------------------------- attention


@pytest.mark.tiny
def test_attention_plain_has_one_reading_line_per_token(llama_dir, capsys):
    from transformers import AutoTokenizer

    code, out, err = _run(capsys, "attention", TEXT, "--model", llama_dir, "--layer", "1", "--head", "3")
    assert code == 0, err
    ids = AutoTokenizer.from_pretrained(llama_dir)(TEXT)["input_ids"]  # adds <s> itself, as the view does
    lines = out.splitlines()
    header, reading = lines[0], lines[1:]
    assert "layer 1 of 2" in header and "head 3 of 4" in header and "causal" in header and llama_dir in header
    assert len(reading) == len(ids)  # the tiny Llama's short text needs no note
    assert reading[0] == "'<s>' is first: it can only look at itself."
    assert all(" looks most at " in line for line in reading[1:])
    assert reading == attention(AttentionRequest(TEXT, model=llama_dir, layer=1, head=3)).reading


@pytest.mark.tiny
def test_attention_json_rows_sum_to_one_and_match_the_library(llama_dir, capsys, tmp_path):
    code, out, err = _run(capsys, "attention", TEXT, "--model", llama_dir, "--layer", "1", "--head", "2", "--json")
    assert code == 0, err
    got = _one_json(out)
    direct = attention(AttentionRequest(TEXT, model=llama_dir, layer=1, head=2))
    n = len(direct.tokens)
    assert got["tokens"] == direct.tokens and len(got["weights"]) == n
    for i, row in enumerate(got["weights"]):
        assert len(row) == n and sum(row) == pytest.approx(1.0, abs=1e-2)
        assert all(w == 0 for w in row[i + 1:])  # causal: nothing after the token itself
        assert row == pytest.approx(direct.weights[i], abs=1e-6)
    assert (got["layer"], got["head"], got["num_layers"], got["num_heads"], got["causal"]) == (1, 2, 2, 4, True)
    assert got["reading"] == direct.reading

    # The same text from --file gives the same map; the text and --file together are refused.
    path = tmp_path / "t.txt"
    path.write_text(TEXT, encoding="utf-8")
    code, out, _ = _run(capsys, "attention", "--file", str(path), "--model", llama_dir, "--layer", "1", "--head",
                        "2", "--json")
    assert code == 0
    assert [w for row in _one_json(out)["weights"] for w in row] == pytest.approx(
        [w for row in got["weights"] for w in row], abs=1e-6)
    with pytest.raises(SystemExit) as exc:
        main(["attention", TEXT, "--file", str(path), "--model", llama_dir])
    assert exc.value.code == 2 and "not both" in capsys.readouterr().err


# ---------------------------------------------------------------- positions


def _pe(pos: int, dim: int, d_model: int) -> float:
    angle = pos / 10000 ** ((dim - dim % 2) / d_model)
    return math.sin(angle) if dim % 2 == 0 else math.cos(angle)


def test_positions_sinusoidal_json_matches_the_formula(capsys):
    code, out, err = _run(capsys, "positions", "--no-rope", "--json", "--positions", "40", "--d-model", "16",
                          "--dims", "0", "1", "6", "15")
    assert code == 0, err
    got = _one_json(out)
    assert got["rope"] is None
    sin = got["sinusoidal"]
    assert (sin["positions"], sin["d_model"]) == (40, 16)
    assert len(sin["table"]) == 40 and all(len(row) == 16 for row in sin["table"])
    for pos, dim in [(0, 0), (0, 1), (1, 0), (1, 1), (5, 6), (17, 7), (39, 14), (39, 15), (23, 10)]:
        assert sin["table"][pos][dim] == pytest.approx(_pe(pos, dim, 16), abs=1e-12), (pos, dim)
    assert set(sin["curves"]) == {"0", "1", "6", "15"}
    assert sin["curves"]["6"] == pytest.approx([_pe(p, 6, 16) for p in range(40)], abs=1e-12)
    assert sin["wavelengths"]["15"] == pytest.approx(2 * math.pi * 10000 ** (14 / 16))


def test_positions_plain_shows_formula_wavelengths_and_values(capsys):
    code, out, err = _run(capsys, "positions", "--no-rope", "--positions", "40", "--d-model", "16", "--dims", "1",
                          "6")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == ("PE(pos, 2i) = sin(pos / 10000^(2i/d_model)), "
                        "PE(pos, 2i+1) = cos(pos / 10000^(2i/d_model))")
    header = next(line for line in lines if "wavelength" in line)
    assert header.split()[2:][1::2] == ["0", "1", "2", "10", "39"] and header.split()[2:][::2] == ["pos"] * 5
    rows = {line.split()[0]: line.split() for line in lines if line.split() and line.split()[0] in ("1", "6")}
    assert rows["1"][1] == "cos" and rows["6"][1] == "sin"
    assert float(rows["6"][2]) == pytest.approx(2 * math.pi * 10000 ** (6 / 16), abs=0.01)
    assert [float(v) for v in rows["6"][3:]] == pytest.approx([_pe(p, 6, 16) for p in (0, 1, 2, 10, 39)], abs=1e-4)
    assert [float(v) for v in rows["1"][3:]] == pytest.approx([_pe(p, 1, 16) for p in (0, 1, 2, 10, 39)], abs=1e-4)
    assert "RoPE" not in out


@pytest.mark.tiny
def test_positions_rope_uses_the_models_own_theta(llama_dir, capsys):
    theta = json.loads((Path(llama_dir) / "config.json").read_text())["rope_parameters"]["rope_theta"]
    code, out, err = _run(capsys, "positions", "--model", llama_dir, "--positions", "20", "--json")
    assert code == 0, err
    rope = _one_json(out)["rope"]
    assert (rope["head_dim"], rope["rotary_dim"], rope["positions"]) == (16, 16, 20)  # hidden 64 / 4 heads
    (table,) = rope["tables"]
    assert table["theta"] == theta and table["rope_type"] == "default"
    assert table["frequencies"] == pytest.approx([theta ** (-2 * i / 16) for i in range(8)], rel=1e-12)
    assert table["angles"][19][7] == pytest.approx(19 * theta ** (-14 / 16), rel=1e-12)

    code, out, err = _run(capsys, "positions", "--model", llama_dir, "--positions", "20")
    assert code == 0, err
    assert f"theta {theta:g}, rope_type default" in out and "rotary_dim 16" in out
    pair_rows = {line.split()[0]: line.split() for line in out.split("RoPE", 1)[1].splitlines()
                 if line.split() and line.split()[0].isdigit()}
    assert set(pair_rows) == {"0", "2", "4", "7"}  # the default spread, fastest to slowest
    for pair, row in pair_rows.items():
        freq = theta ** (-2 * int(pair) / 16)
        assert float(row[1]) == pytest.approx(freq, rel=1e-5)
        assert float(row[2]) == pytest.approx(2 * math.pi / freq, abs=0.01)
    assert out.rstrip().splitlines()[-1].startswith("note: ") and "relative" in out


# ---------------------------------------------------------------- lstm


@pytest.mark.tiny
def test_lstm_json_trains_compares_and_reports_progress_on_stderr(llama_dir, corpus_file, capsys):
    text = "The cat sat on the mat.\nA zebra ran to the park."
    code, out, err = _run(capsys, "lstm", "--corpus", str(corpus_file), "--steps", "30", "--model", llama_dir,
                          "--json", text)
    assert code == 0, err
    got = _one_json(out)
    assert set(got) == {"training", "side_by_side", "gates"}
    training = got["training"]
    assert (training["steps"], training["reason"], len(training["losses"])) == (30, "done", 30)
    assert training["vocab_size"] == BigramModel.fit(CORPUS).vocab_size  # trained on the file, not the bundle
    assert training["perplexity_after"] < training["perplexity_before"]

    # Progress every 10 % of the steps, on stderr only.
    progress = [line for line in err.splitlines() if line.startswith("step ")]
    assert [line.split()[1] for line in progress] == [f"{s}/30" for s in range(3, 31, 3)]
    assert progress[-1].split()[3] == f"{training['losses'][-1]:.2f}"  # "step 30/30  loss X ..."
    assert "step " not in out

    sbs = got["side_by_side"]
    lstm_logprobs = [lp for _, lp in sbs["lstm"]["tokens"]]
    assert sbs["lstm"]["unit"] == "word"
    assert sbs["lstm"]["perplexity"] == pytest.approx(math.exp(-sum(lstm_logprobs) / len(lstm_logprobs)), rel=1e-9)
    bigram = BigramModel.fit(CORPUS, k=1.0)
    assert sbs["bigram"]["name"] == "bigram (k=1)"
    assert [w for w, _ in sbs["bigram"]["tokens"]] == [w for _, w, _ in bigram.steps(text)]
    assert sbs["bigram"]["perplexity"] == pytest.approx(bigram.perplexity(text))
    assert [w for w, _ in sbs["lstm"]["tokens"]] == [w for _, w, _ in bigram.steps(text)]  # the same units
    assert sbs["transformer"]["perplexity"] == pytest.approx(score_text(text, model=llama_dir).perplexity)

    # One gate row per token read: the history of each prediction (<s>, then each word of the line), in (0, 1).
    assert [g[0] for g in got["gates"]] == [v for v, _, _ in bigram.steps(text)]
    assert [g[0] for g in got["gates"]][:3] == ["<s>", "the", "cat"] and "<unk>" in [g[0] for g in got["gates"]]
    assert all(0 < v < 1 for g in got["gates"] for v in g[1:])


@pytest.mark.tiny
def test_lstm_plain_prints_training_table_and_gates(llama_dir, corpus_file, capsys):
    text = "the dog ran to the park ."
    args = ("lstm", "--corpus", str(corpus_file), "--steps", "20", "--seed", "3", "--model", llama_dir, text)
    code, out, err = _run(capsys, *args)
    assert code == 0, err
    code, js, _ = _run(capsys, *args, "--json")  # seeded: the same training
    got = _one_json(js)
    lines = out.splitlines()
    training = got["training"]
    assert lines[0].startswith("LSTM: 20 steps (done) in ") and f"vocabulary {training['vocab_size']}" in lines[0]
    assert f"{training['perplexity_before']:.1f} -> {training['perplexity_after']:.1f}" in lines[0]
    assert lines[1].split() == ["name", "unit", "perplexity"]
    table = [line.split() for line in lines[2:5]]
    bigram = BigramModel.fit(CORPUS, k=1.0)
    assert table[0][:3] == ["bigram", "(k=1)", "word"] and float(table[0][3]) == pytest.approx(
        bigram.perplexity(text), abs=0.006)
    assert table[1][:2] == ["LSTM", "word"] and table[1][2] == f"{got['side_by_side']['lstm']['perplexity']:.2f}"
    assert table[2][:2] == [llama_dir, "token"]
    assert float(table[2][2]) == pytest.approx(score_text(text, model=llama_dir).perplexity, abs=0.006)
    start = lines.index(next(line for line in lines if line.split() == ["token", "forget", "input", "output"]))
    gate_rows = [line.split() for line in lines[start + 1:] if not line.startswith("note: ")]
    assert [row[0] for row in gate_rows] == ["<s>", "the", "dog", "ran", "to", "the", "park", "."]
    assert [float(v) for row in gate_rows for v in row[1:]] == pytest.approx(
        [v for g in got["gates"] for v in g[1:]], abs=0.006)
    assert lines[-1].startswith("note: ") and "per subword token" in lines[-1]


def test_lstm_without_text_trains_on_the_bundled_corpus_and_scores_nothing(capsys):
    code, out, err = _run(capsys, "lstm", "--steps", "5")
    assert code == 0, err
    vocab = BigramModel.fit(lstm_lm.bundled_corpus()).vocab_size
    lines = out.splitlines()
    assert lines[0].startswith("LSTM: 5 steps (done)") and f"vocabulary {vocab}" in lines[0]
    assert lines[-1] == "give a text to compare bigram, LSTM and Transformer"
    assert [line.split()[1] for line in err.splitlines() if line.startswith("step ")] == [f"{s}/5" for s in range(1, 6)]
    code, out, _ = _run(capsys, "lstm", "--steps", "5", "--json")
    got = _one_json(out)
    assert got["side_by_side"] is None and got["gates"] == [] and got["training"]["vocab_size"] == vocab


# ---------------------------------------------------------------- bad input


@pytest.mark.tiny
@pytest.mark.parametrize("args, match", [
    (("attention", TEXT, "--layer", "99"), "`layer` must be from 0 to 1 (MODEL has 2 layers); got 99."),
    (("attention", TEXT, "--head", "4"), "`head` must be from 0 to 3"),
    (("attention", "   "), "`text`"),
    (("positions", "--no-rope", "--d-model", "7"), "`d_model` must be even"),
    (("positions", "--no-rope", "--dims", *map(str, range(17))), "`dims` lists 17 entries"),
    (("lstm", "--steps", "0"), "`steps` must be a whole number from 1 to 2000; got 0."),
    (("lstm", "--corpus", "CORPUS_TOO_LONG"), "`corpus` is 20,002 characters; the LSTM takes at most 20,000."),
    (("lstm", "--corpus", "/no/such/corpus.txt"), "does not exist"),
    (("lstm", "a " * 1001), "`text` is 2,002 characters"),
])
def test_bad_input_is_one_error_line_and_status_2(args, match, llama_dir, tmp_path, capsys):
    too_long = tmp_path / "long.txt"
    too_long.write_text("a " * 10_001, encoding="utf-8")
    args = [{"CORPUS_TOO_LONG": str(too_long)}.get(a, a) for a in args]
    args += ["--model", llama_dir] if args[0] in ("attention", "lstm") else []
    code, out, err = _run(capsys, *args)
    assert code == 2
    assert err.splitlines() == [err.strip()] and err.startswith("error: "), err
    assert match.replace("MODEL", llama_dir) in err
    assert out == ""
    assert "step " not in err  # a bad text or corpus is refused before any training


def test_bad_input_in_a_real_process_has_no_traceback():
    for args, match in ((("positions", "--d-model", "7"), "`d_model` must be even"),
                        (("lstm", "--steps", "0"), "`steps` must be a whole number")):
        out = run_cli(*args)
        assert out.returncode == 2, (args, out.stderr)
        assert out.stderr.strip().splitlines() == [out.stderr.strip()], (args, out.stderr)
        assert out.stderr.startswith("error: ") and match in out.stderr and "Traceback" not in out.stderr
        assert out.stdout == ""


@pytest.mark.tiny
def test_attention_layer_out_of_range_in_a_real_process(llama_dir):
    out = run_cli("attention", TEXT, "--model", llama_dir, "--layer", "99")
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    errors = [line for line in out.stderr.splitlines() if "error" in line.lower()]
    assert errors == [out.stderr.strip().splitlines()[-1]] and errors[0].startswith("error: `layer` must be")


# ---------------------------------------------------------------- Ctrl-C


@pytest.mark.tiny
@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process")
def test_ctrl_c_stops_training_and_still_scores(llama_dir):
    import os

    # The bundled corpus for up to 2,000 steps: far longer than the wait for the first progress line (step 200).
    proc = subprocess.Popen([sys.executable, "-m", "lmdemo", "lstm", "--steps", "2000", "--max-seconds", "300",
                             "--model", llama_dir, "--json", "the dog ran to the park ."],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            env=dict(os.environ, HF_HUB_OFFLINE="1"))
    try:
        seen = []
        for line in proc.stderr:  # transformers may print other lines first
            seen.append(line)
            if line.startswith("step "):
                break
        assert seen and seen[-1].startswith("step 200/2000"), "".join(seen)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "stopping after this step" in err and "Traceback" not in err
    got = json.loads(out)
    training = got["training"]
    assert training["reason"] == "stopped" and 200 <= training["steps"] < 2000
    assert len(training["losses"]) == training["steps"]
    assert got["side_by_side"]["lstm"]["perplexity"] > 1 and len(got["gates"]) == 8  # scored after the stop
