"""Headless Chromium for the browser tests: Debian's /usr/bin/chromium driven by Playwright's Python API.

Under CI=true a missing Chromium or Playwright fails the test; elsewhere it skips. Screenshots go
under test-artifacts/.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import IN_CI

CHROMIUM = os.environ.get("PIPELINE_TEST_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1440, "height": 900}


def need_browser() -> None:
    missing = None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing = "the playwright package is not installed (pip install playwright)"
    if missing is None and not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        missing = f"Chromium not found at {CHROMIUM} (apt-get install chromium)"
    if missing:
        if IN_CI:
            pytest.fail(f"{missing}; under CI=true the browser tests must run")
        pytest.skip(missing)


@contextmanager
def chromium() -> Iterator[Any]:
    """A launched headless browser (closed after)."""
    from playwright.sync_api import sync_playwright

    need_browser()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


def overflow(page: Any) -> dict[str, Any]:
    """How wide the document is against the viewport, and the widest element poking out (if any)."""
    return page.evaluate("""() => {
        const vw = window.innerWidth, doc = document.documentElement.scrollWidth;
        let widest = null;
        for (const el of document.querySelectorAll('body *')) {
            const r = el.getBoundingClientRect();
            if (r.width > 0 && r.right > vw + 0.5 && (!widest || r.right > widest.right))
                widest = {tag: el.tagName, cls: el.className && String(el.className), right: Math.round(r.right),
                          text: (el.innerText || '').slice(0, 40)};
        }
        return {viewport: vw, document: doc, widest: widest};
    }""")
