"""Every tab used in headless Chromium as a visitor would; screenshots land in test-artifacts/."""

import math
import re
import time

import pytest

from browser_helpers import button as _button, open_page as _page, require_chromium, shot as _shot

pytestmark = pytest.mark.browser
require_chromium()


@pytest.fixture(scope="module")
def base_url(app_url):
    return app_url


def _tab(page, name):
    page.get_by_role("tab", name=name).click()


def _textareas_contain(page, needle, timeout=120_000):
    page.wait_for_function("n => [...document.querySelectorAll('textarea')].some(t => t.value.includes(n))",
                           arg=needle, timeout=timeout)


def _body_contains(page, needle, timeout=120_000):
    page.wait_for_function("n => document.body.innerText.includes(n)", arg=needle, timeout=timeout)


def _finished(page):
    page.wait_for_function("() => !document.querySelector('.generating, .pending')", timeout=120_000)


def test_generate_tab(browser, base_url):
    page = _page(browser, base_url)
    page.get_by_label("Your message or text to continue").fill("What is the capital of France?")
    _button(page, "Send").click()
    _body_contains(page, "tok/s")
    _body_contains(page, "· eos")
    assert "Paris" in page.locator(".message-wrap").inner_text()
    assert "· fastgen" in page.inner_text("body")  # the backend that decoded, beside tok/s (CPU: fastgen)
    _shot(page, "generate")


def test_sentiment_tab(browser, base_url):
    page = _page(browser, base_url)
    _tab(page, "Sentiment")
    page.get_by_text("Not worth the money: it broke after two days.").first.click()
    _button(page, "Classify").click()
    _body_contains(page, "negative")
    assert "negative" in page.locator(".output-class").first.inner_text()
    _shot(page, "sentiment")
    # many texts at once: a table and a CSV download
    page.get_by_text("Many texts").click()
    page.get_by_label("One text per line").fill("Fantastic staff and a lovely room.\nThe screen cracked on day one.")
    _button(page, "Classify all").click()
    # each row reads text, label, score (the dataframe renders rows outside its <table>, so read the page text)
    _body_contains(page, "Fantastic staff and a lovely room.\npositive", timeout=60_000)
    _body_contains(page, "The screen cracked on day one.\nnegative", timeout=10_000)
    _button(page, "Download CSV").wait_for(timeout=30_000)
    _shot(page, "sentiment-batch")


def test_summarise_tab(browser, base_url):
    page = _page(browser, base_url)
    _tab(page, "Summarise")
    from playwright.sync_api import expect

    page.get_by_text("The city council voted on Tuesday").first.click()
    source_box = page.get_by_label("Text to summarise")
    expect(source_box).to_have_value(re.compile("^The city council voted on Tuesday"), timeout=10_000)
    source = source_box.input_value().strip()
    _button(page, "Summarise").click()
    _body_contains(page, "→ summary")
    _finished(page)
    # the summary's own box, not the page (the input and the example already hold the source text)
    summary = page.get_by_label("Summary", exact=True).input_value().strip()
    assert summary and summary != source
    assert len(summary.split()) < len(source.split())
    lengths = re.search(r"input (\d+) words \(\d+ tokens\) → summary (\d+) words", page.inner_text("body"))
    assert lengths, "the lengths line is missing"
    assert int(lengths[1]) == len(source.split()) and int(lengths[2]) == len(summary.split()) > 0
    _shot(page, "summarise")


def test_translate_tab(browser, base_url):
    page = _page(browser, base_url)
    _tab(page, "Translate")
    page.get_by_label("Text to translate").fill("I would like a cup of coffee, please.")
    _button(page, "Translate").click()
    _textareas_contain(page, "café")
    # the whole sentence, not a streamed prefix: the translation ends with its full stop
    page.wait_for_function("() => [...document.querySelectorAll('textarea')].some("
                           "t => t.value.includes('café') && t.value.trim().endsWith('.'))", timeout=120_000)
    _shot(page, "translate")


def test_lm_lab_tab(browser, base_url):
    page = _page(browser, base_url)
    _tab(page, "LM lab")
    _button(page, "Score text").click()
    _body_contains(page, "perplexity =")
    _button(page, "Predict next token").click()
    page.wait_for_selector("canvas, svg.marks", timeout=60_000)
    _button(page, "Compare perplexities").click()
    _body_contains(page, "bigram, add-1")
    _shot(page, "lm-lab")


def test_evaluate_tab_compares_models(browser, base_url, tmp_path):
    page = _page(browser, base_url)
    _tab(page, "Evaluate")
    page.get_by_label("Task").first.click()
    page.get_by_role("option", name="generation").click()
    page.get_by_label("Models to compare (comma-separated: default, built-in names, adapter folders, Hub ids)").fill(
        "smollm2-135m-instruct, gemma-3-270m")
    slider_box = page.get_by_label("Examples (first N)").first
    slider_box.fill("10")
    slider_box.press("Enter")
    _button(page, "Evaluate").click()
    _body_contains(page, "perplexity · gemma-3-270m")  # chart bars are labelled metric · model
    _body_contains(page, "perplexity · smollm2-135m-instruct")
    _finished(page)
    assert "Download results JSON" in page.content()
    # two models: the second against the first, per example (perplexity: lower is better)
    paired = page.locator("#evaluate-paired").inner_text()
    assert re.search(r"gemma-3-270m vs smollm2-135m-instruct on 10 examples: \d+ wins, \d+ losses, \d+ ties; "
                     r"perplexity difference [+-]\d", paired), paired
    _shot(page, "evaluate")


def test_finetune_upload_with_column_mapping(browser, base_url, tmp_path):
    page = _page(browser, base_url)
    _tab(page, "Fine-tune")
    # a user's own file with other column names, mapped through the column pickers
    rows = [("The striker scored a late winner.", "sport"), ("Shares rose after strong results.", "business"),
            ("The keeper saved two penalties.", "sport"), ("The bank cut its interest rate.", "business")] * 6
    upload = tmp_path / "my-topics.csv"
    upload.write_text("headline,topic\n" + "".join(f"{t},{l}\n" for t, l in rows))
    page.locator("#finetune-upload input[type=file]").set_input_files(str(upload))
    _body_contains(page, "missing column")  # text/label are not the file's names
    for label, column in (("Text / prompt / source column", "headline"), ("Label / response / target column", "topic")):
        box = page.get_by_label(label).first
        box.fill(column)
        box.press("Enter")
    _button(page, "Check data").click()
    _body_contains(page, "labels: business, sport")
    assert "The striker scored a late winner." in page.inner_text("body")  # preview of the first rows
    _shot(page, "finetune-upload")


_STATUS = re.compile(r"(?P<name>[\w-]+) \((?P<task>\w+)\) · (?P<state>\w+) · step (?P<step>\d+)/(?P<max>\d+|\?)")


def _training_status(page, name):
    """(state, step, max_steps) of run `name` as the status line shows them; None before it shows."""
    for m in _STATUS.finditer(page.inner_text("body")):
        if m["name"] == name:
            return m["state"], int(m["step"]), int(m["max"]) if m["max"].isdigit() else None
    return None


def _watch_training(page, name, until, timeout=300):
    """Read the status line every 0.3 s until `until(state, step, max_steps)`; every distinct reading, in order.

    Readings count from the first one of a live run (starting/running): until then the line may still show
    the end of an earlier run of the same name, restored from disk when the app started.
    """
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = _training_status(page, name)
        if now and (seen or now[0] in ("starting", "running")) and (not seen or now != seen[-1]):
            seen.append(now)
            if until(*now):
                return seen
        page.wait_for_timeout(300)
    raise AssertionError(f"{name}: the status line never got there; it read {seen}")


def _steps_grow(seen):
    steps = [step for _, step, _ in seen]
    assert steps == sorted(steps), f"the step count went backwards: {seen}"
    return steps


def _plot(page, label):
    return page.locator(".block").filter(has=page.get_by_text(label, exact=True)).last


def _assert_curves_drawn(page, status):
    """Each loss series the run reported (API) is drawn: vega's SVG line, with one point mark per reported point."""
    from playwright.sync_api import expect

    assert status["losses"], "the run reported no loss at all"
    for key, label in (("loss", "Training loss"), ("eval_loss", "Validation loss")):
        points = [p for p in status["losses"] if key in p]
        # validation runs before the first step too (step 0: the prototype head of a classifier)
        assert all(math.isfinite(p[key]) and 0 <= p["step"] <= status["max_steps"] for p in points), points
        if points:
            plot = _plot(page, label)
            expect(plot.locator(".mark-line path")).to_have_count(1, timeout=30_000)
            assert plot.locator(".mark-line path").get_attribute("d"), label
            expect(plot.locator(".mark-symbol path")).to_have_count(len(points), timeout=10_000)


def _no_run_going(client, timeout=300):
    """Cancel a run an earlier (failed) test left going, so this test's start is not refused as a second run."""
    status = client.predict(api_name="/finetune_status")
    if status["state"] in ("starting", "running"):
        client.predict(api_name="/finetune_cancel")
    deadline = time.monotonic() + timeout
    while client.predict(api_name="/finetune_status")["state"] in ("starting", "running"):
        assert time.monotonic() < deadline, "an earlier run would not stop"
        time.sleep(1)


def _fill(page, label, value):
    box = page.get_by_label(label).first
    box.fill(str(value))
    box.press("Enter")


def test_finetune_tab_trains_cancels_and_compares(browser, base_url, client):
    _no_run_going(client)
    page = _page(browser, base_url)
    _tab(page, "Fine-tune")
    _button(page, "Check data").click()
    _body_contains(page, "labels: business, food, science, sport")
    from playwright.sync_api import expect

    # the pickers show the file's own column names, not a UI label that happens to share its key
    expect(page.get_by_label("Text / prompt / source column").first).to_have_value("text")
    expect(page.get_by_label("Label / response / target column").first).to_have_value("label")
    _fill(page, "Epochs", 2)
    _fill(page, "Max steps (0: by epochs)", 12)  # the wiring is under test here, not how well it learns
    page.get_by_label("Adapter name").first.fill("browser-topics")
    _button(page, "Start training").click()
    seen = _watch_training(page, "browser-topics", lambda state, *_: state in ("finished", "failed", "cancelled"),
                           timeout=600)
    state, step, max_steps = seen[-1]
    assert state == "finished" and 0 < step == max_steps == 12, seen  # every asked-for step ran
    assert any(s == "running" for s, _, _ in seen), seen
    _steps_grow(seen)
    _body_contains(page, "fine-tuned")
    # what the run reported, through the public API (a script's view of the same job)
    status = client.predict(api_name="/finetune_status")
    assert (status["state"], status["name"], status["step"], status["max_steps"]) == (
        "finished", "browser-topics", step, max_steps)
    _assert_curves_drawn(page, status)
    # the before/after table holds the comparison's numbers: base and fine-tuned rows, a number per metric
    metrics = (status["comparison"] or {}).get("metrics")
    assert metrics and set(metrics) == {"base", "fine-tuned"}, status["comparison"]
    table = page.get_by_role("grid", name="Base vs fine-tuned on the validation split")
    cells = table.inner_text().split()  # header, then each row's cells (one per line or tab-separated)
    for who in ("base", "fine-tuned"):
        assert who in cells, cells
        shown = cells[cells.index(who) + 1:][:len(metrics[who])]
        assert all(re.fullmatch(r"[01](\.\d+)?", c) for c in shown), (who, shown)  # a score per metric
        assert [float(c) for c in shown] == pytest.approx([round(v, 4) for v in metrics[who].values()], abs=1e-4)
    _shot(page, "finetune-finished")
    # the new adapter is in the Sentiment tab's picker at once, without a reload
    _tab(page, "Sentiment")
    from playwright.sync_api import expect

    picker = page.get_by_label("Model").filter(visible=True)
    picker.click()
    expect(page.get_by_role("option", name="browser-topics", exact=True)).to_be_visible(timeout=10_000)
    picker.press("Escape")
    # the run is kept: Past runs shows its settings, its time beside nothing estimated, and its curves
    _tab(page, "Fine-tune")
    page.get_by_text("Past runs", exact=True).click()
    expect(page.locator("#past-run-summary")).to_contain_text("browser-topics", timeout=15_000)
    summary = page.locator("#past-run-summary").inner_text()
    assert re.search(r"took \d+ s, \d+\.\d\d s/step", summary) and f"({max_steps} steps)" in summary, summary
    assert "epochs 2.0" in summary, summary
    expect(_plot(page, "Past run: validation loss").locator(".mark-line path")).to_have_count(1, timeout=30_000)
    _shot(page, "finetune-past-run")

    _fill(page, "Epochs", 20)
    _fill(page, "Max steps (0: by epochs)", 0)
    page.get_by_label("Adapter name").first.fill("browser-cancelled")
    _button(page, "Start training").click()
    first = _watch_training(page, "browser-cancelled", lambda state, step, _: state == "running" and step > 0,
                            timeout=240)
    _button(page, "Start training").click()  # a second start while one runs is refused, with a message
    _body_contains(page, "is already running; wait for it or cancel it", timeout=30_000)
    page.reload()  # a reloaded page re-attaches to the running job, and it is still counting
    page.wait_for_selector("textarea", timeout=60_000)
    _tab(page, "Fine-tune")
    before = first[-1][1]
    later = _watch_training(page, "browser-cancelled", lambda state, step, _: state == "running" and step > before,
                            timeout=180)
    _steps_grow(first + later)
    _button(page, "Cancel").click()
    end = _watch_training(page, "browser-cancelled", lambda state, *_: state in ("finished", "failed", "cancelled"))
    state, step, max_steps = end[-1]
    assert state == "cancelled" and before < step < max_steps, end  # stopped early, after real steps
    assert "the adapter trained so far is saved" in page.inner_text("body")
    status = client.predict(api_name="/finetune_status")
    assert (status["state"], status["name"], status["step"]) == ("cancelled", "browser-cancelled", step)
    _shot(page, "finetune-cancelled")


def test_sft_through_the_tab_reaches_every_picker_at_once(browser, base_url, client):
    """Instruction tuning on the bundled sample, from the Fine-tune tab: the worker trains SmolLM2, the comparison
    scores the response in the trained (chat) format, and the adapter shows in each causal-LM picker without a
    reload."""
    from playwright.sync_api import expect

    _no_run_going(client)
    page = _page(browser, base_url)
    _tab(page, "Fine-tune")
    page.get_by_label("instruction / SFT").check()
    expect(page.get_by_label("Sample data set").first).to_have_value("instructions (short answers)", timeout=15_000)
    _body_contains(page, "80 training rows, 20 validation rows")
    _fill(page, "Epochs", 1)
    _fill(page, "Max steps (0: by epochs)", 4)  # the path through tab, worker and comparison, not the learning
    page.get_by_label("Adapter name").first.fill("browser-sft")
    _button(page, "Start training").click()
    seen = _watch_training(page, "browser-sft", lambda state, *_: state in ("finished", "failed", "cancelled"),
                           timeout=900)
    assert seen[-1][0] == "finished", seen
    status = client.predict(api_name="/finetune_status")
    metrics = status["comparison"]["metrics"]
    assert {"base", "fine-tuned"} == set(metrics) and all("perplexity" in m for m in metrics.values()), metrics
    cells = [c for row in status["comparison"]["examples"] for c in (row["base"], row["fine-tuned"])]
    assert cells and not any("chat template" in c for c in cells), cells  # generated in the trained format
    _body_contains(page, "validation examples:")  # wins / losses / ties and the interval, under the status line
    _shot(page, "finetune-sft-finished")
    for tab in ("Generate", "Summarise", "Translate", "LM lab"):
        _tab(page, tab)
        picker = page.get_by_label("Model").filter(visible=True).first
        picker.click()
        expect(page.get_by_role("option", name="browser-sft", exact=True)).to_be_visible(timeout=10_000)
        picker.press("Escape")


def test_models_tab_and_chinese_page(browser, base_url):
    page = _page(browser, base_url, locale="zh-CN")
    _body_contains(page, "文本生成")  # tab labels follow the browser's language
    page.get_by_role("tab", name="模型", exact=True).click()
    names = ("smollm2-135m-instruct", "gemma-3-270m", "all-minilm-l6-v2")
    for name in names:  # the table is filled when the page loads, its states in the page's language
        _body_contains(page, f"{name}\n就绪", timeout=30_000)
    _button(page, "刷新").click()
    page.wait_for_timeout(1000)
    for name in names:
        _body_contains(page, f"{name}\n就绪", timeout=30_000)
    _shot(page, "models-zh")


def test_binary_training_file_shows_a_message_not_a_traceback(browser, base_url, tmp_path):
    page = _page(browser, base_url)
    _tab(page, "Fine-tune")
    upload = tmp_path / "photo.csv"
    upload.write_bytes(bytes(range(256)) * 64)
    page.locator("#finetune-upload input[type=file]").set_input_files(str(upload))
    _body_contains(page, "photo.csv looks binary", timeout=60_000)
    assert "Traceback" not in page.content()
    _shot(page, "finetune-binary-upload")


def test_empty_input_shows_a_message_not_a_traceback(browser, base_url):
    page = _page(browser, base_url)
    _tab(page, "Sentiment")
    _button(page, "Classify").click()
    _body_contains(page, "Please type some text first.", timeout=30_000)
    assert "Traceback" not in page.content()
    _shot(page, "empty-input")


def test_share_section_dry_run_shows_the_card(browser, base_url):
    from lmdemo.jobs.sentiment import DEFAULT_ADAPTER

    page = _page(browser, base_url)
    _tab(page, "Fine-tune")
    page.get_by_text("Share on the Hugging Face Hub").click()
    picker = page.get_by_label("Adapter", exact=True)
    picker.fill(DEFAULT_ADAPTER)
    picker.press("Enter")
    page.get_by_label("Repo id (USER/NAME)").fill("demo-user/sentiment-minilm")
    page.get_by_label("Write token", exact=False).fill("hf_browserTestToken000")
    _button(page, "Build the upload folder (dry run)").click()
    page.get_by_text("these files would be uploaded").wait_for(timeout=60_000)
    page.get_by_text("base_model_relation: adapter").first.wait_for(timeout=10_000)
    assert "adapter_model.safetensors" in page.content()
    assert "hf_browserTestToken000" not in page.inner_text("body")  # a password box never shows it
    page.get_by_text("base_model_relation: adapter").first.scroll_into_view_if_needed()
    _shot(page, "finetune-share-dry-run")
