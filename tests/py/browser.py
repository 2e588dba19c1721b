"""Headless Chromium for the page tests, driven by Playwright.

The browser is Debian's chromium (/usr/bin/chromium, installed by
scripts/install-test-deps.sh); Playwright's own browser downloads are never used. Import the
fixtures into a conftest (tests/py/conftest.py does) and use:

* `browser_page(**context_options)`: a new page in a fresh browser context (own cookies and
  storage, so two pages are two independent users). Contexts are closed at teardown.
  Certificate errors are NOT ignored: a module serving https:// with a test certificate
  overrides `chromium` with `launch(extra_args=[spki_pin_arg(cert)])`, so that Chromium
  accepts that certificate's key and nothing else.

The browser is started once per test module, and stopped at the module's end: while
Playwright's sync API runs, the main thread has a running asyncio loop, which would break
tests elsewhere that call asyncio.run().
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import subprocess
from pathlib import Path

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


def spki_pin_arg(cert_pem: Path) -> str:
    """Chromium's flag that accepts certificates with this public key (base64 SHA-256 of the
    SubjectPublicKeyInfo), and only those, whoever signed them."""
    pub = subprocess.run(["openssl", "x509", "-in", str(cert_pem), "-pubkey", "-noout"],
                         check=True, capture_output=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=pub,
                         check=True, capture_output=True).stdout
    return "--ignore-certificate-errors-spki-list=" + base64.b64encode(hashlib.sha256(der).digest()).decode()


@contextlib.contextmanager
def launch(extra_args=()):
    if not os.path.exists(CHROMIUM):
        raise FileNotFoundError(f"{CHROMIUM} is missing: scripts/install-test-deps.sh installs Debian's chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, *extra_args], headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def chromium():
    with launch() as browser:
        yield browser


@pytest.fixture
def browser_page(chromium):
    contexts = []

    def new_page(**options):
        ctx = chromium.new_context(**options)
        contexts.append(ctx)
        page = ctx.new_page()
        page.set_default_timeout(10_000)
        return page

    yield new_page
    for ctx in contexts:
        ctx.close()
