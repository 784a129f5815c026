"""Encoder-decoder families through the running app: tiny Marian, T5 and BART folders (tests/tiny_families.py)
typed into the model box as a user would.

* /translate and /summarize (gradio_client) return exactly what the model itself gives under greedy decoding
  (computed here with transformers, not with lmdemo), T5's "summarize: " prefix applied and Marian's pair kept.
* A pair the Marian model does not translate is a one-line message that names the pair it does.
* In headless Chromium: the Translate tab with the Marian folder, and a seq2seq LoRA run in the Fine-tune tab
  whose before/after table shows the numbers the adapter's saved eval files hold. Screenshots: test-artifacts/.
"""

from __future__ import annotations

import json
import math
import re
import time
from functools import lru_cache
from pathlib import Path

import pytest
import torch

import tiny_families as tf
from browser_helpers import button as _button, open_page as _page, shot as _shot

pytestmark = pytest.mark.filterwarnings("ignore:Recommended. pip install sacremoses")

MODEL_LABEL = "Model (built-in, local folder, Hub id or engine)"
# Never in the Marian model's training rows; its greedy output is not a copy (checked below), so a job that
# echoed its input, or ran another model, could not match the reference on it.
UNSEEN = "The weather is nice today."
ADAPTER = "families-marian-seq2seq"  # this module's own adapter name (the app's adapters folder is shared)
# What lmdemo allows itself, per call: a translation unit at most 3 * source tokens + 20 new tokens (at most 256),
# a summary of the default 2 sentences 2 * 45 + 16. A fair reference ends with EOS well within these.
SUMMARY_CAP = 2 * 45 + 16


# ---------------------------------------------------------------- the tiny models, built once for the module

@pytest.fixture(scope="module")
def marian_dir(tmp_path_factory) -> Path:
    return tf.build_marian_copy(tmp_path_factory.mktemp("marian-en-fr") / "model")


@pytest.fixture(scope="module")
def t5_dir(tmp_path_factory) -> Path:
    return tf.build_t5_prefix(tmp_path_factory.mktemp("t5-prefix") / "model")


@pytest.fixture(scope="module")
def bart_dir(tmp_path_factory) -> Path:
    return tf.build_bart(tmp_path_factory.mktemp("bart") / "model")


# ---------------------------------------------------------------- the reference: transformers on its own

@lru_cache(maxsize=None)
def _reference_model(folder: str):
    """Tokenizer and model read straight from the folder, on the device and in the dtype lmdemo picks by default."""
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    from lmdemo.config import get_settings
    from lmdemo.models.loading import resolve_device, resolve_dtype

    device = resolve_device(get_settings().device)
    dtype = resolve_dtype(get_settings().dtype, device)
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSeq2SeqLM.from_pretrained(folder, dtype=dtype).to(device).eval()
    return tok, model


def greedy(folder: Path, text: str, cap: int) -> str:
    """The model's greedy output for `text` (already prefixed where the family wants it), decoded without special
    tokens. Asserts that EOS ended it before `cap` new tokens, so that lmdemo's own length cap cannot have cut
    lmdemo's answer where this one went on."""
    tok, model = _reference_model(str(folder))
    inputs = tok(text, return_tensors="pt").to(model.device)
    with torch.no_grad():
        out = model.generate(**inputs, num_beams=1, do_sample=False, max_new_tokens=cap + 50)
    ids = out[0].tolist()
    new = len(ids) - 1  # the decoder start token is not generated
    assert ids[-1] == tok.eos_token_id and new <= cap, (
        f"the reference for {text!r} did not end with EOS within {cap} new tokens: {ids}")
    return tok.decode(ids, skip_special_tokens=True).strip()


def translation_cap(folder: Path, text: str) -> int:
    tok, _ = _reference_model(str(folder))
    return min(256, 3 * len(tok(text, add_special_tokens=False).input_ids) + 20)


def app_error(client, **kwargs) -> str:
    """The message of a call that must fail: a gradio AppError of one line, no traceback."""
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError) as info:
        client.predict(**kwargs)
    message = str(info.value).strip()
    assert message and "\n" not in message, message
    assert "Traceback" not in message and 'File "' not in message, message
    assert not re.search(r"\b[A-Z]\w*(Error|Exception): ", message.split(": ", 1)[-1]), message
    return message


# ---------------------------------------------------------------- API

def test_translate_api_is_the_marian_models_greedy_output(client, marian_dir):
    texts = tf.COPY_SENTENCES[:3] + [UNSEEN]
    for text in texts:
        reference = greedy(marian_dir, text, translation_cap(marian_dir, text))
        res = client.predict(text=text, source="en", target="fr", model=str(marian_dir), api_name="/translate")
        assert res["translation"] == reference, (text, res)
        assert (res["text"], res["source"], res["target"], res["sentences"]) == (text, "en", "fr", 1), res
        assert res["notes"] == [], res  # the tokenizer names its pair (en -> fr): nothing to warn about
        if text in tf.COPY_SENTENCES:
            assert reference == text  # the builder's promise, so the reference itself is sound
        else:
            assert reference != text, "the unseen sentence is copied too: it no longer tells the model apart"


def test_summarize_api_is_the_t5_models_greedy_output_with_its_prefix(client, t5_dir):
    for a, b in tf.T5_PAIRS[:2]:
        text = f"{a} {b}"
        reference = greedy(t5_dir, tf.T5_PREFIX + text, SUMMARY_CAP)
        # With the prefix the model answers A; without it, B (the builder checked both): A proves the prefix.
        assert reference == a
        res = client.predict(text=text, model=str(t5_dir), api_name="/summarize")
        assert res["summary"] == reference, (text, res)
        assert (res["input_words"], res["summary_words"], res["chunks"]) == (
            len(text.split()), len(a.split()), 1), res


def test_summarize_api_is_the_bart_models_greedy_output(client, bart_dir):
    for a, b in tf.BART_PAIRS[:2]:
        text = f"{a} {b}"
        reference = greedy(bart_dir, text, SUMMARY_CAP)
        assert reference == a
        res = client.predict(text=text, length=2, unit="sentences", model=str(bart_dir), api_name="/summarize")
        assert res["summary"] == reference, (text, res)
        assert (res["input_words"], res["summary_words"], res["chunks"]) == (
            len(text.split()), len(a.split()), 1), res


def test_a_pair_the_marian_model_lacks_names_the_pair_it_has(client, marian_dir):
    text = tf.COPY_SENTENCES[0]
    message = app_error(client, text=text, source="en", target="de", model=str(marian_dir), api_name="/translate")
    assert "English → French" in message and "English → German" in message, message
    message = app_error(client, text=text, source="fr", target="en", model=str(marian_dir), api_name="/translate")
    assert "from English only" in message and "French → English" in message, message
    # and the app answers the next (right) request
    res = client.predict(text=text, source="en", target="fr", model=str(marian_dir), api_name="/translate")
    assert res["translation"] == text


# ---------------------------------------------------------------- browser

def _pick(box, value):
    """Type a value into a gradio dropdown that takes custom values, and commit it."""
    box.click()
    box.fill(value)
    box.press("Enter")


@pytest.mark.browser
def test_translate_tab_with_the_marian_folder(browser, app_url, marian_dir):
    from playwright.sync_api import expect

    text = tf.COPY_SENTENCES[1]
    reference = greedy(marian_dir, text, translation_cap(marian_dir, text))
    assert reference == text
    page = _page(browser, app_url)
    page.get_by_role("tab", name="Translate").click()
    model_box = page.get_by_label(MODEL_LABEL).filter(visible=True)
    expect(model_box).to_have_count(1)
    _pick(model_box, str(marian_dir))
    expect(model_box).to_have_value(str(marian_dir))
    source_box = page.get_by_label("Text to translate")
    source_box.fill(text)
    out_box = page.get_by_label("Translation", exact=True)
    expect(out_box).to_have_value("")
    _button(page, "Translate").click()
    # the output box's own value (the input box holds the same sentence: a page-wide check would prove nothing)
    expect(out_box).to_have_value(reference, timeout=120_000)
    page.wait_for_function("() => !document.querySelector('.generating, .pending')", timeout=60_000)
    expect(out_box).to_have_value(reference)
    assert source_box.input_value() == text
    assert "Traceback" not in page.content()
    _shot(page, "families-translate-marian")
    # a sentence the model does not copy: the box shows the model's own output, not the input
    unseen = greedy(marian_dir, UNSEEN, translation_cap(marian_dir, UNSEEN))
    assert unseen != UNSEEN
    source_box.fill(UNSEEN)
    _button(page, "Translate").click()
    expect(out_box).to_have_value(unseen, timeout=120_000)
    assert source_box.input_value() == UNSEEN


_STATUS = re.compile(r"(?P<name>[\w-]+) \((?P<task>\w+)\) · (?P<state>\w+) · step (?P<step>\d+)/(?P<max>\d+|\?)")


def _training_state(page, name):
    """(task, state, step) of run `name` as the status line shows it; None before it shows."""
    for m in _STATUS.finditer(page.inner_text("body")):
        if m["name"] == name:
            return m["task"], m["state"], int(m["step"])
    return None


def _numbers_after(cells: list[str], who: str, count: int) -> list[float]:
    assert who in cells, cells
    shown = cells[cells.index(who) + 1:][:count]
    assert all(re.fullmatch(r"\d+(\.\d+)?", c) for c in shown), (who, shown)
    return [float(c) for c in shown]


@pytest.mark.browser
def test_finetune_tab_trains_a_marian_translation_adapter(browser, app_url, client, marian_dir, tmp_path):
    from playwright.sync_api import expect

    # 40 pairs: the target is the source with a fixed French word in front; 10 % (4 rows) are held back.
    rows = [{"source": s, "target": f"Merci {s}"} for s in tf.SENTENCES[:40]]
    upload = tmp_path / "en-fr-pairs.jsonl"
    upload.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")

    page = _page(browser, app_url)
    page.get_by_role("tab", name="Fine-tune").click()
    page.get_by_text("translation (seq2seq)", exact=True).click()
    # the task's change shows the language pair (and resets the base box): wait for it before typing the base
    expect(page.locator("#finetune-source")).to_be_visible(timeout=30_000)
    expect(page.locator("#finetune-target")).to_be_visible()
    expect(page.locator("#finetune-source input")).to_have_value("English")
    expect(page.locator("#finetune-target input")).to_have_value("French")
    page.locator("#finetune-upload input[type=file]").set_input_files(str(upload))
    # the upload's preview: the file's own columns and first rows (the row counts: see test_finetune_tab_data_check_counts_seq2seq_rows)
    preview = page.get_by_role("grid", name="First rows")
    expect(preview).to_contain_text(f"Merci {tf.SENTENCES[0]}", timeout=60_000)
    assert preview.inner_text().split()[:2] == ["source", "target"], preview.inner_text()
    base_box = page.locator("#finetune-base input")
    _pick(base_box, str(marian_dir))
    expect(base_box).to_have_value(str(marian_dir))
    epochs = page.get_by_label("Epochs").first
    epochs.fill("6")
    epochs.press("Enter")
    page.get_by_label("Adapter name").first.fill(ADAPTER)
    _button(page, "Start training").click()

    seen, deadline = [], time.monotonic() + 240
    while time.monotonic() < deadline:
        now = _training_state(page, ADAPTER)
        if now and (seen or now[1] in ("starting", "running")) and (not seen or now != seen[-1]):
            seen.append(now)
            if now[1] in ("finished", "failed", "cancelled"):
                break
        page.wait_for_timeout(300)
    assert seen and seen[-1][:2] == ("translation", "finished"), f"{ADAPTER}: the status line read {seen}"

    status = client.predict(api_name="/finetune_status")
    assert (status["state"], status["name"], status["task"]) == ("finished", ADAPTER, "translation"), status
    assert status["step"] == status["max_steps"] == 6 * math.ceil(36 / 8), status
    metrics = status["comparison"]["metrics"]
    assert set(metrics) == {"base", "fine-tuned"} and all(list(m) == ["bleu", "chrf"] for m in metrics.values())

    # the before/after table: bleu and chrf of base and fine-tuned, as the adapter's eval files hold them
    folder = Path(status["output_dir"])
    from lmdemo.config import get_settings
    from lmdemo.models.adapters import EVAL_FILES

    assert folder == get_settings().home / "adapters" / ADAPTER, folder
    saved = {who: json.loads((folder / EVAL_FILES[key]).read_text(encoding="utf-8"))
             for who, key in (("base", "base"), ("fine-tuned", "adapter"))}
    assert all(s["task"] == "translation" and s["n"] == 4 for s in saved.values()), saved
    assert (folder / "adapter_model.safetensors").is_file()
    meta = json.loads((folder / "lmdemo.json").read_text(encoding="utf-8"))
    assert (meta["task"], meta["source"], meta["target"], meta["base_model"]) == (
        "translation", "en", "fr", str(marian_dir)), meta
    table = page.get_by_role("grid", name="Base vs fine-tuned on the validation split")
    expect(table).to_contain_text("chrf", timeout=30_000)
    cells = table.inner_text().split()
    assert cells[:3] == ["model", "bleu", "chrf"], cells
    for who in ("base", "fine-tuned"):
        shown = _numbers_after(cells, who, 2)
        on_disk = [saved[who]["metrics"][m] for m in ("bleu", "chrf")]
        assert shown == pytest.approx([round(v, 4) for v in on_disk], abs=1e-4), (who, shown, on_disk)
        assert shown == pytest.approx([round(metrics[who][m], 4) for m in ("bleu", "chrf")], abs=1e-4)

    # the side-by-side table: held-back rows with their reference, base and fine-tuned outputs
    examples = status["comparison"]["examples"]
    assert 1 <= len(examples) <= 3 and all(e["reference"] == f"Merci {e['input']}" for e in examples), examples
    side = page.get_by_role("grid", name="Outputs side by side")
    expect(side).to_contain_text(examples[0]["input"], timeout=30_000)
    text = side.inner_text()
    for e in examples:
        assert e["input"] in text and e["reference"] in text, (e, text)
    side.scroll_into_view_if_needed()
    _shot(page, "families-finetune-seq2seq")
    # its base is this module's tmp folder: the adapter would outlive it in the shared adapters folder
    left = client.predict(name=ADAPTER, api_name="/adapters_remove")
    assert ADAPTER not in [a["name"] for a in left] and not folder.exists()


def test_finetune_check_api_reads_seq2seq_pairs_without_a_base(client, tmp_path):
    upload = tmp_path / "pairs.jsonl"
    upload.write_text("".join(json.dumps({"source": s, "target": s}) + "\n" for s in tf.SENTENCES[:40]))
    planned = client.predict(task="translation", data=str(upload), api_name="/finetune_check")
    assert (planned["task"], planned["train_rows"], planned["validation_rows"]) == ("translation", 36, 4)


@pytest.mark.browser
def test_finetune_tab_data_check_counts_seq2seq_rows(browser, app_url, tmp_path):
    from playwright.sync_api import expect

    upload = tmp_path / "pairs.jsonl"
    upload.write_text("".join(json.dumps({"source": s, "target": s}) + "\n" for s in tf.SENTENCES[:40]))
    page = _page(browser, app_url)
    page.get_by_role("tab", name="Fine-tune").click()
    page.get_by_text("translation (seq2seq)", exact=True).click()
    expect(page.locator("#finetune-source")).to_be_visible(timeout=30_000)
    page.locator("#finetune-upload input[type=file]").set_input_files(str(upload))
    expect(page.get_by_role("grid", name="First rows")).to_contain_text(tf.SENTENCES[0], timeout=60_000)
    page.wait_for_timeout(1000)  # the summary line is written by the same event as the preview
    body = page.inner_text("body")
    shown = body[body.find("Check data"):body.find("First rows")].strip()  # the data summary line
    assert "needs a base model" not in shown and "36 training rows, 4 validation rows" in shown, shown
