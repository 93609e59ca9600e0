"""Headless Chromium for page tests: Debian's /usr/bin/chromium driven by Playwright.

The flags keep Chromium off the network (this machine's network is closed; background
connections would only fail) and work as root in CI.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("HOMECARE_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"


@pytest.fixture(scope="module")
def chromium() -> Iterator[object]:
    # Module scope: Playwright's sync API keeps an event loop running in this thread while it
    # is open, which would break every asyncio test that runs after it.
    if not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} not found: `make test` installs Debian's chromium package")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield browser
        browser.close()


TOKEN_KEY = "homecare.token"  # where services/runtime/login.js keeps the bearer token


def log_in_as(page, token: str) -> None:  # type: ignore[no-untyped-def]
    """The page's origin starts with this token in localStorage, as if its user had logged in
    (kept across reloads unless the page replaces it, e.g. after a log-in through the form)."""
    key = json.dumps(TOKEN_KEY)
    page.context.add_init_script(  # about:blank has no storage: nothing to do there
        f"try {{ if (!localStorage.getItem({key})) localStorage.setItem({key}, "
        f"{json.dumps(token)}); }} catch (e) {{}}")


@pytest.fixture
def page(chromium):  # type: ignore[no-untyped-def]
    """A fresh browser context (own storage, service workers, offline switch) and page."""
    context = chromium.new_context(locale="zh-CN", viewport={"width": 390, "height": 844})
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture
def screenshot_dir() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
