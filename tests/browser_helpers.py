"""Headless Chromium for the browser tests: Debian's chromium through playwright, pages, screenshots."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run", "--disable-sync", "--disable-quic"]


def require_chromium(module_level: bool = True) -> None:
    """Skip without Debian's chromium; CI installs it (.ci/run) and must run these tests."""
    if Path(CHROMIUM).exists():
        return
    if os.environ.get("CI"):
        raise RuntimeError("Chromium is missing in CI: .ci/run should have installed it")
    pytest.skip("Debian's chromium is not installed (apt-get install chromium)", allow_module_level=module_level)


def launch(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)


# Contexts opened so far: conftest closes a test's own after it, since a page left open keeps polling the app
# (training status, adapter watcher) and its renderer takes CPU from every later test.
OPENED: list = []


def open_page(browser, url: str, locale: str = "en-US"):
    """A fresh browser context (a new visitor) on the app, once its first text box is there."""
    context = browser.new_context(locale=locale, viewport={"width": 1280, "height": 900})
    OPENED.append(context)
    page = context.new_page()
    page.goto(url)
    page.wait_for_selector("textarea", timeout=60_000)
    return page


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def button(page, name: str):
    return page.get_by_role("button", name=name, exact=True)
