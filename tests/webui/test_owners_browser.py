"""Two visitors of a shared Space in two browser contexts: each sees only their own chat, training run and
adapters, and B's Cancel of A's run is refused with a message. Screenshots land in test-artifacts/."""

import pytest

from browser_helpers import launch, open_page, require_chromium, shot as _shot

pytestmark = pytest.mark.browser
NAME = "visitor-a-topics"
require_chromium()


@pytest.fixture(scope="module")
def pages(app_url, settings):
    from playwright.sync_api import sync_playwright

    with pytest.MonkeyPatch.context() as mp, sync_playwright() as p:
        mp.setattr(settings, "demo_mode", True)
        browser = launch(p)
        # two contexts: two visitors with nothing shared but the server
        yield [open_page(browser, app_url) for _ in range(2)]
        browser.close()


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
        # the shared, bundled adapter: the table is filled (it may not exist yet while the accordion opens)
        page.wait_for_function("() => { const t = document.querySelector('#adapters-table');"
                               " return t !== null && t.innerText.includes('sentiment-minilm'); }", timeout=30_000)
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
