"""The LM lab's theory views in headless Chromium: the attention heatmap against the API's weights, the position
encodings against the formula, and the LSTM trained live, stopped, then scored beside the bigram and SmolLM2.
Screenshots land in test-artifacts/ (lm-lab-attention.png, lm-lab-positions.png, lm-lab-lstm.png)."""

from __future__ import annotations

import math
import re

import pytest
import torch

from browser_helpers import button, open_page, require_chromium, shot
from lmdemo.config import get_settings
from lmdemo.jobs.lmlab import BigramModel
from lmdemo.jobs.lstm_lm import MAX_STEPS, bundled_corpus
from lmdemo.models.loading import resolve_dtype

pytestmark = pytest.mark.browser
require_chromium()

TEXT = "The cat sat on the mat because it was warm."


def _panel(page):
    return page.locator(".tabitem[role=tabpanel]").filter(visible=True).last  # the inner (LM lab) tab's panel


def _open(page, sub: str) -> None:
    page.get_by_role("tab", name="LM lab", exact=True).click()
    page.get_by_role("tab", name=sub, exact=True).click()
    page.wait_for_timeout(300)


def _slider(page, elem_id: str, value: int) -> None:
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.press("Enter")


def _idle(page, timeout=180_000) -> None:
    page.wait_for_function("() => !document.querySelector('.generating, .pending')", timeout=timeout)


def test_attention_heatmap_is_the_models_attention(browser, app_url, client):
    page = open_page(browser, app_url)
    _open(page, "Attention")
    panel = _panel(page)
    panel.get_by_label("Text (the first 64 tokens are shown)").fill(TEXT)
    _slider(page, "attention-layer", 3)
    _slider(page, "attention-head", 2)
    button(page, "Show attention").click()
    page.locator("#attention-table td").first.wait_for(timeout=120_000)
    _idle(page)
    cells = page.eval_on_selector_all("#attention-table td", "tds => tds.map(td => [+td.dataset.i, +td.dataset.j, "
                                                               "+td.dataset.w])")
    api = client.predict(TEXT, "", 3, 2, api_name="/attention")
    n = len(api["tokens"])
    assert len(cells) == n * n  # one cell per (query, key) pair
    shown = [[0.0] * n for _ in range(n)]
    for i, j, w in cells:
        shown[i][j] = w
    # a bf16 model's (the default on AVX512-BF16 CPUs) softmax rows sum to 1 within bf16's ~3 digits
    row_sum_tol = 1e-3 if resolve_dtype(get_settings().dtype, torch.device("cpu")) == torch.float32 else 1e-2
    for i in range(n):
        assert sum(shown[i]) == pytest.approx(1.0, abs=row_sum_tol)
        assert shown[i] == pytest.approx(api["weights"][i], abs=1e-5)  # the same weights as the API's
        assert all(w == 0 for w in shown[i][i + 1:])  # SmolLM2 is causal: nothing above the diagonal
    header = page.locator("#attention-header").inner_text()
    assert "layer 3 of 30" in header and "head 2 of 9" in header
    reading = page.locator("#attention-reading li").all_inner_texts()
    assert len(reading) == n and reading[1].startswith(repr(api["tokens"][1]))
    assert page.locator("#attention-layer input[type=range]").get_attribute("max") == "29"
    shot(page, "lm-lab-attention")
    # out of range: a clear message, not a traceback
    _slider(page, "attention-head", 8)
    page.get_by_label("Text (the first 64 tokens are shown)").fill(TEXT + " " + "word " * 80)
    button(page, "Show attention").click()
    page.get_by_text(re.compile(r"Showing the first 64 of \d+ tokens")).wait_for(timeout=120_000)
    assert page.locator("#attention-table td").count() == 64 * 64


def test_position_views_plot_the_formula_and_the_models_rope(browser, app_url):
    page = open_page(browser, app_url)
    _open(page, "Positions")
    page.locator("#pe-dims textarea, #pe-dims input").first.fill("0, 8, 9")
    button(page, "Plot").click()
    page.locator("#rope-text").get_by_text("base θ = 100,000").wait_for(timeout=120_000)
    _idle(page)
    caption = page.locator("#pe-caption").inner_text()
    assert "64 positions" in caption and "128 dimensions" in caption
    for dim in (0, 8, 9):  # wavelength 2π · 10000^(2i/d) of each drawn dimension, worked out here
        length = 2 * math.pi * 10000 ** ((dim - dim % 2) / 128)
        assert f"dimension {dim}: a full turn every {length:,.1f} positions" in caption
    page.locator("#pe-image img").wait_for(timeout=30_000)
    page.locator("#pe-curves svg.marks, #pe-curves canvas").first.wait_for(timeout=30_000)  # vega draws after
    rope_text = page.locator("#rope-text").inner_text()
    assert "head size 64" in rope_text and "pair 0: 1 rad per position" in rope_text
    shot(page, "lm-lab-positions")
    page.locator("#pe-d-model input[type=number]").fill("7")
    page.locator("#pe-d-model input[type=number]").press("Enter")
    button(page, "Plot").click()
    page.get_by_text("must be even").first.wait_for(timeout=30_000)


def test_lstm_trains_live_stops_and_scores_beside_bigram_and_transformer(browser, app_url):
    page = open_page(browser, app_url)
    _open(page, "LSTM vs bigram vs Transformer")
    _slider(page, "lstm-steps", MAX_STEPS)  # long enough to see it live and stop it
    button(page, "Train the LSTM").click()
    status = page.locator("#lstm-status")
    status.get_by_text(re.compile(r"^step \d+/2000")).wait_for(timeout=60_000)  # live progress while it trains
    page.locator("#lstm-loss svg.marks, #lstm-loss canvas").first.wait_for(timeout=30_000)
    button(page, "Stop").click()
    status.get_by_text("(stopped)").wait_for(timeout=60_000)
    done = status.inner_text()
    steps = int(re.search(r"Trained (\d+) steps", done).group(1))
    before, after = map(float, re.search(r"corpus ([\d.]+) → ([\d.]+)", done).groups())
    assert 0 < steps < MAX_STEPS and after < before
    text = "the dogs under the big tree are happy."
    page.get_by_label("Text to score").fill(text)
    button(page, "Score with all three").click()
    table = page.locator("#lstm-compare table")
    table.wait_for(timeout=120_000)
    _idle(page)
    rows = [r.split("\t") for r in table.locator("tbody tr").all_inner_texts()]
    assert [r[0] for r in rows] == ["bigram (k=1)", "LSTM", "smollm2-135m-instruct"]
    expected = BigramModel.fit(bundled_corpus(), 1.0).perplexity(text)  # the bigram worked out here
    assert float(rows[0][3]) == pytest.approx(expected, abs=0.01)
    words = len(re.findall(r"\w+|[^\w\s]", text)) + 1  # words, the full stop and </s>
    assert int(rows[0][2]) == int(rows[1][2]) == words
    for name, row in zip(("bigram", "lstm", "transformer"), rows):  # one coloured piece per predicted unit
        assert page.locator(f"#strip-{name} .token").count() == int(row[2])
    page.locator("#lstm-gates svg.marks, #lstm-gates canvas").first.wait_for(timeout=30_000)
    shot(page, "lm-lab-lstm")


def _step(page) -> int:
    found = re.search(r"^step (\d+)/", page.locator("#lstm-status").inner_text())
    return int(found.group(1)) if found else -1


def test_two_visitors_train_their_own_lstm(browser, app_url, settings, monkeypatch):
    """On a shared Space, B's Stop leaves A's training running, each stops and scores their own LSTM only."""
    monkeypatch.setattr(settings, "demo_mode", True)
    a, b = open_page(browser, app_url), open_page(browser, app_url)
    for page in (a, b):
        _open(page, "LSTM vs bigram vs Transformer")
    _slider(a, "lstm-steps", MAX_STEPS)
    button(a, "Train the LSTM").click()
    a.locator("#lstm-status").get_by_text(re.compile(r"^step \d+/2000")).wait_for(timeout=60_000)
    button(b, "Stop").click()  # B's own Stop: nothing of B's runs, and A's run must not notice
    seen = _step(a)
    a.wait_for_function("s => { const m = document.querySelector('#lstm-status').innerText.match(/^step (\\d+)\\//);"
                        " return m && +m[1] > s; }", arg=seen + 20, timeout=60_000)
    assert "Trained" not in a.locator("#lstm-status").inner_text()
    button(a, "Stop").click()
    a.locator("#lstm-status").get_by_text("(stopped)").wait_for(timeout=60_000)
    button(b, "Score with all three").click()  # B has trained nothing: told to train first, A's model unused
    b.get_by_text("Train the LSTM first").first.wait_for(timeout=30_000)
    button(b, "Train the LSTM").click()
    b.locator("#lstm-status").get_by_text("(all steps)").wait_for(timeout=120_000)
    for page in (a, b):
        button(page, "Score with all three").click()
    for who, page in (("a", a), ("b", b)):
        page.locator("#lstm-compare table").wait_for(timeout=120_000)
        _idle(page)
        shot(page, f"lm-lab-lstm-visitor-{who}")
