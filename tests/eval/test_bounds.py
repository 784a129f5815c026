"""Evaluation stays bounded whatever the input: perplexity memory per row, tokens per row, rows and characters read."""

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from lmdemo.errors import InputError
from lmdemo.eval import evaluation
from lmdemo.eval.metrics import load_metric

LONG_TEXT = (Path(__file__).resolve().parents[1] / "data" / "long_text.md").read_text(encoding="utf-8")
ROWS = [{"prompt": "Say something.", "response": r} for r in (
    "The cat sat on the mat.", "Hello world!", "Ünïcödé café 😀 猫",
    LONG_TEXT[:700])]  # ~150 tokens: several loss chunks on Gemma's 262k vocabulary
TEXTS = [f"{r['prompt']}\n{r['response']}" for r in ROWS]  # what the generation eval scores for each row


@pytest.fixture(scope="module", params=["smollm2-135m-instruct", "gemma-3-270m"])
def lm(request, prepared):
    """A built-in as the evaluation job loads it (SmolLM2 adds no BOS; Gemma adds one and has 262k tokens)."""
    from lmdemo.models import loading

    return request.param, loading.load(request.param)


def full_logits_nll(lm, text):
    """Summed NLL and scored-token count the straightforward way: one forward, the whole float logits matrix."""
    tok = lm.tokenizer
    ids = tok(text, add_special_tokens=False).input_ids
    if tok("a").input_ids[:1] == [tok.bos_token_id]:
        ids = [tok.bos_token_id] + ids
    input_ids = torch.tensor([ids])
    with torch.inference_mode():
        logits = lm.model(input_ids=input_ids).logits[0, :-1].float()
    return float(F.cross_entropy(logits, input_ids[0, 1:], reduction="sum")), len(ids) - 1


def test_chunked_perplexity_equals_full_logits(lm):
    name, loaded = lm
    sums, counts = zip(*(full_logits_nll(loaded, t) for t in TEXTS))
    expected = [math.exp(s / n) for s, n in zip(sums, counts)]
    got = load_metric("perplexity").compute(predictions=TEXTS, model=loaded.model, tokenizer=loaded.tokenizer)
    assert got["perplexities"] == pytest.approx(expected, rel=1e-4)
    assert got["perplexity"] == pytest.approx(math.exp(sum(sums) / sum(counts)), rel=1e-4)
    # The evaluation job calls the metric once per row and adds the rows up itself to the same corpus perplexity.
    rows = [dict(r) for r in ROWS]
    res = evaluation.run_rows("generation", rows, model=name)
    assert res.metrics["perplexity"] == pytest.approx(math.exp(sum(sums) / sum(counts)), rel=1e-4)
    assert [r["prediction"] for r in rows] == pytest.approx(expected, rel=1e-4)
    assert res.notes == []


def test_the_head_sees_a_few_positions_at_a_time(lm):
    """The [tokens, vocabulary] logits matrix is never built: lm_head gets at most a chunk of positions."""
    from lmdemo.eval.metrics.perplexity.perplexity import LOSS_ELEMENTS, LOSS_POSITIONS

    model = lm[1].model
    widths = []  # positions of each lm_head call, observed through a hook
    hook = model.get_output_embeddings().register_forward_hook(lambda m, args, out: widths.append(args[0].shape[-2]))
    try:
        got = load_metric("perplexity").compute(predictions=[LONG_TEXT[:4000]], model=model,
                                                tokenizer=lm[1].tokenizer, details=True)
    finally:
        hook.remove()
    step = max(1, min(LOSS_POSITIONS, LOSS_ELEMENTS // model.config.vocab_size))
    assert got["scored_tokens"][0] > 3 * step  # long enough to need several chunks
    assert max(widths) <= max(step, 16)  # 16: the one-off check of the split on a short prefix
    assert sum(widths) >= got["scored_tokens"][0]  # every scored position went through the head


def test_long_rows_are_cut_to_the_token_cap_with_a_note(prepared):
    """A 150 KB row is scored on its first 2048 tokens (512 on a shared app), and the result says so."""
    from lmdemo.config import DEMO_LIMITS, get_settings, set_settings

    text = (LONG_TEXT * 17)[:150_000]
    rows = [{"prompt": "Read this.", "response": text}, {"prompt": "Hi", "response": "Hello there."}]
    res = evaluation.run_rows("generation", [dict(r) for r in rows], model="smollm2-135m-instruct")
    (note,) = res.notes
    assert note.startswith("1 of 2 example(s) were longer than 2,048 tokens") and "its first 2,048 tokens" in note
    assert res.summary()["notes"] == res.notes
    before = get_settings()
    set_settings(dataclasses.replace(before, demo_mode=True))
    try:
        demo = evaluation.run_rows("generation", [dict(r) for r in rows], model="smollm2-135m-instruct")
    finally:
        set_settings(before)
    cap = DEMO_LIMITS.max_eval_tokens
    assert f"longer than {cap} tokens" in demo.notes[0]
    direct = load_metric("perplexity").compute(predictions=[f"Read this.\n{text}"], model="smollm2-135m-instruct",
                                               max_length=cap, details=True)
    assert direct["scored_tokens"] == [cap - 1] and direct["tokens"][0] > 30_000
    assert demo.predictions[0]["prediction"] == pytest.approx(direct["perplexities"][0], rel=1e-6)
    assert demo.predictions[0]["prediction"] != pytest.approx(res.predictions[0]["prediction"], rel=1e-6)


# ---------------------------------------------------------------- what the reader holds

def write_jsonl(path, records, tail=""):
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + tail, encoding="utf-8")
    return path


def test_reading_stops_at_the_limit(tmp_path):
    rows = [{"prompt": f"p{i}", "response": f"r{i}"} for i in range(10)]
    path = write_jsonl(tmp_path / "d.jsonl", rows, tail='{"prompt": "broken\n' + "x" * 1000 + "\n")
    assert [r["prompt"] for r in evaluation.load_examples(path, "generation", limit=4)] == ["p0", "p1", "p2", "p3"]
    assert len(evaluation.load_examples(path, "generation", limit=10)) == 10  # the bad line after them is not read
    with pytest.raises(InputError, match="line 11: not valid JSON"):
        evaluation.load_examples(path, "generation")


def test_at_most_max_rows_are_read_with_a_note(prepared, tmp_path, monkeypatch):
    monkeypatch.setattr(evaluation, "MAX_ROWS", 5)
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": f"Lovely {i}.", "label": "positive"} for i in range(9)])
    assert len(evaluation.load_examples(path, "sentiment")) == 5
    res = evaluation.run("sentiment", path, limit=None)
    assert res.n == 5 and res.notes == ["Evaluation reads at most 5 rows: the first 5 were scored."]
    exact = write_jsonl(tmp_path / "e.jsonl", [{"text": f"Lovely {i}.", "label": "positive"} for i in range(5)])
    assert evaluation.run("sentiment", exact).notes == []  # nothing was left unread


def test_long_fields_are_cut_with_a_note(tmp_path):
    long = "word " * 10_000  # 50,000 characters
    path = write_jsonl(tmp_path / "d.jsonl", [{"prompt": "short", "response": "fine"},
                                              {"prompt": long, "response": long, "extra": long}])
    rows, more, notes = evaluation._read(path, "generation", None, None)
    assert not more and rows[0] == {"prompt": "short", "response": "fine"}
    assert {len(v) for v in rows[1].values()} == {evaluation.MAX_FIELD_CHARS}
    assert notes == [f"3 field(s) of d.jsonl were over {evaluation.MAX_FIELD_CHARS:,} characters and were cut to "
                     f"their first {evaluation.MAX_FIELD_CHARS:,} (first: line 2 `prompt`)."]


def test_csv_field_over_the_csv_limit_is_an_input_error(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("text,label\nfine,positive\n" + "x" * 200_000 + ",negative\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"d.csv line 3: not valid CSV \(field larger than field limit"):
        evaluation.load_examples(path, "sentiment")
    assert len(evaluation.load_examples(path, "sentiment", limit=1)) == 1
