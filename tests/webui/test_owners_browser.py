"""Two visitors of a shared Space in two browser contexts: each sees only their own chat, training run and
adapters, and B's Cancel of A's run is refused with a message. Screenshots land in test-artifacts/."""

import os
import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run", "--disable-sync", "--disable-quic"]
NAME = "visitor-a-topics"

if not Path(CHROMIUM).exists():
    if os.environ.get("CI"):
        raise RuntimeError("Chromium is missing in CI: .ci/run should have installed it")
    pytest.skip("Debian's chromium is not installed (apt-get install chromium)", allow_module_level=True)


@pytest.fixture(scope="module")
def pages(app_url, settings):
    from playwright.sync_api import sync_playwright

    with pytest.MonkeyPatch.context() as mp, sync_playwright() as p:
        mp.setattr(settings, "demo_mode", True)
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        out = []
        for _ in range(2):  # two contexts: two visitors with nothing shared but the server
            page = browser.new_context(locale="en-US", viewport={"width": 1280, "height": 900}).new_page()
            page.goto(app_url)
            page.wait_for_selector("textarea", timeout=60_000)
            out.append(page)
        yield out
        browser.close()


def _shot(page, name):
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _body_contains(page, needle, timeout=120_000):
    page.wait_for_function("n => document.body.innerText.includes(n)", arg=needle, timeout=timeout)


def _button(page, name):
    return page.get_by_role("button", name=name, exact=True)


def test_two_visitors_see_only_their_own_work(pages):
    a, b = pages
    # A chats; B's conversation stays empty
    a.get_by_label("Your message or text to continue").fill("Name one colour of the rainbow.")
    _button(a, "Send").click()
    a.wait_for_function("() => document.querySelectorAll('.message').length >= 2 && "
                        "!document.querySelector('.generating, .pending')", timeout=120_000)
    assert "Name one colour" not in b.inner_text("body")

    # A trains; B sees a busy slot and nothing of A's run, and B's Cancel is refused
    for page in pages:
        page.get_by_role("tab", name="Fine-tune").click()
    a.get_by_label("Epochs").first.fill("3")
    a.get_by_label("Epochs").first.press("Enter")
    a.get_by_label("Adapter name").first.fill(NAME)
    _button(a, "Start training").click()
    _body_contains(a, f"{NAME} (classification) · running", timeout=120_000)
    _button(b, "Cancel").click()
    _body_contains(b, "cancel only your own", timeout=30_000)
    _body_contains(b, "busy with another visitor", timeout=30_000)  # Markdown curls the apostrophe
    _shot(b, "visitor-b-during-a-run")
    _body_contains(a, f"{NAME} (classification) · finished", timeout=300_000)
    _shot(a, "visitor-a-finished")
    assert NAME not in b.inner_text("body")

    # after a reload (the same browser, so the same visitor) A's Adapters table lists it; B's never does
    tables = {}
    for who, page in (("a", a), ("b", b)):
        page.reload()
        page.wait_for_selector("textarea", timeout=60_000)
        page.get_by_role("tab", name="Fine-tune").click()
        page.get_by_text("Saved adapters").click()
        table = page.locator("#adapters-table")
        page.wait_for_function("() => document.querySelector('#adapters-table').innerText.includes('sentiment-minilm')",
                               timeout=30_000)  # the shared, bundled adapter: the table is filled
        tables[who] = table.inner_text()
        _shot(page, f"visitor-{who}-adapters")
    assert NAME in tables["a"] and NAME not in tables["b"], tables
    _body_contains(a, f"{NAME} (classification) · finished", timeout=30_000)  # A's last run, re-attached
    assert NAME not in b.inner_text("body")
    b.get_by_label("Adapter name").last.fill(NAME)
    _button(b, "Remove").click()
    _body_contains(b, "not found among your adapters", timeout=30_000)
    a.get_by_label("Adapter name").last.fill(NAME)
    _button(a, "Remove").click()
    _body_contains(a, f"Removed {NAME}", timeout=30_000)
