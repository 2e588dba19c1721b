"""Headless Chromium for the page tests, driven by Playwright.

The browser is Debian's chromium (/usr/bin/chromium, installed by
scripts/install-test-deps.sh); Playwright's own browser downloads are never used. Import the
fixtures into a conftest (tests/py/conftest.py does) and use:

* `browser_page(**context_options)`: a new page in a fresh browser context (own cookies and
  storage, so two pages are two independent users); certificate errors are ignored, so a
  test may serve https:// with a test certificate. Contexts are closed at teardown.

The browser is started once per test module, and stopped at the module's end: while
Playwright's sync API runs, the main thread has a running asyncio loop, which would break
tests elsewhere that call asyncio.run().
"""

from __future__ import annotations

import os

import pytest

CHROMIUM = os.environ.get("WSGATE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def chromium():
    if not os.path.exists(CHROMIUM):
        raise FileNotFoundError(f"{CHROMIUM} is missing: scripts/install-test-deps.sh installs Debian's chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def browser_page(chromium):
    contexts = []

    def new_page(**options):
        options.setdefault("ignore_https_errors", True)
        ctx = chromium.new_context(**options)
        contexts.append(ctx)
        page = ctx.new_page()
        page.set_default_timeout(10_000)
        return page

    yield new_page
    for ctx in contexts:
        ctx.close()
