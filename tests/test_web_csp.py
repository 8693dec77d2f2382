"""The Content-Security-Policy fits every page: in a real Chromium, no page (the overview's ECharts,
Swagger UI at /api/docs, the account and audit pages) reports a single violation."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from pipeline.web import create_app
from tests.factories import code
from tests.browser_support import ARGS, CHROMIUM, need_browser as _need_browser
from tests.web_support import PASSWORD, running, serve, small_reserve, user

RECORD_VIOLATIONS = """
window.__violations = [];
document.addEventListener('securitypolicyviolation',
    e => window.__violations.push(e.violatedDirective + ' ' + e.blockedURI));
"""
PAGES = ["/", "/projects", f"/projects/{code(1)}", "/leaders", "/upload", "/alerts", "/users", "/audit",
         "/account/password", "/api/docs"]


@pytest.fixture
def site(tmp_path: Path) -> Iterator[str]:
    _need_browser()
    with running(tmp_path, as_of=date(2024, 12, 31)) as rt:
        small_reserve(rt)
        user(rt, "office", "office")
        with serve(create_app(rt)) as base:
            yield base


def test_no_page_violates_the_policy(site: str) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        context = browser.new_context(locale="zh-CN")
        context.add_init_script(RECORD_VIOLATIONS)
        page = context.new_page()
        errors: list[str] = []
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        try:
            page.goto(f"{site}/login")
            page.fill("input[name=username]", "office")
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(f"{site}/")
            seen = {}
            for path in PAGES:
                answer = page.goto(site + path)
                assert answer is not None and answer.status == 200, path
                assert "frame-ancestors 'none'" in (answer.headers.get("content-security-policy") or ""), path
                if path == "/":
                    page.wait_for_selector("#chart-rates[data-rendered='1'] canvas")
                if path == "/api/docs":
                    page.wait_for_selector("[data-path='/api/updates']")
                seen[path] = page.evaluate("window.__violations")
        finally:
            context.close()
            browser.close()
    assert all(not v for v in seen.values()), seen
    assert not errors, errors
