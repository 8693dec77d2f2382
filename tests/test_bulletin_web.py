"""The 月度通报 page: the office's printable bulletin (A4) with its month picker and xlsx download,
refused to a unit's and a leader's account."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from fastapi.testclient import TestClient

from pipeline.bulletin import MEASURES
from pipeline.db import session_scope
from pipeline.ingest.record import record_batch
from pipeline.runtime import Runtime, set_runtime
from pipeline.web import create_app
from tests.browser_support import PHONE, chromium, overflow
from tests.conftest import make_runtime
from tests.test_bulletin import D, MONTH_ENDS, gather, load_reserve, report
from tests.web_support import bearer, serve, user
from tests.test_web_layout import sign_in


@pytest.fixture(scope="module")
def rt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    """The reserve of tests/test_bulletin.py (January to March 2024), as of 2024-03-31, months not closed."""
    runtime = make_runtime(tmp_path_factory.mktemp("bulletin-web"), as_of=D)
    load_reserve(runtime)
    yield runtime
    runtime.dispose()
    set_runtime(None)


@pytest.fixture(scope="module")
def tokens(rt: Runtime) -> dict[str, str]:
    """An account of each role (username = role) and its API token."""
    return {"office": user(rt, "office", "office"), "unit": user(rt, "unit", "unit", unit="荆州区人民政府"),
            "leader": user(rt, "leader", "leader", leader="王建国")}


@pytest.fixture(scope="module")
def client(rt: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(rt)) as c:
        yield c


def sections(html: str) -> list[list[str]]:
    """The county names of each ranking on the page, in the page's order."""
    return [re.findall(r'<td class="title">([^<]+)</td>', part) for part in html.split('<section class="card ranking">')[1:]]


def test_the_page_shows_each_ranking_for_the_last_month_end_by_default(rt: Runtime, client: TestClient,
                                                                     tokens: dict[str, str]) -> None:
    page = client.get("/bulletin", headers=bearer(tokens["office"]))
    assert page.status_code == 200, page.text
    html = page.text
    assert "2024年3月重大项目推进情况通报" in html and "截至 2024-03-31，与上月末 2024-02-29 比较" in html
    assert 'name="month" value="2024-03" max="2024-03"' in html
    assert 'href="/bulletin.xlsx?month=2024-03"' in html and "/static/css/bulletin.css" in html
    expected = gather(rt, D)
    assert sections(html) == [[line.county for line in expected.ranking(m)] for m in MEASURES]
    first = expected.ranking("start_rate")[0]["start_rate"]
    assert f'data-label="开工率">{first.value.display()}</td>' in html
    assert 'href="/bulletin"' in html  # in the office's menu


def test_another_month_and_bad_months(client: TestClient, tokens: dict[str, str]) -> None:
    office = bearer(tokens["office"])
    february = client.get("/bulletin", params={"month": "2024-02"}, headers=office)
    assert february.status_code == 200 and "2024年2月重大项目推进情况通报" in february.text
    assert "与上月末 2024-01-31 比较" in february.text
    future = client.get("/bulletin", params={"month": "2024-04"}, headers=office)
    assert future.status_code == 400 and "2024-04 月尚未结束" in future.text
    bad = client.get("/bulletin", params={"month": "2024-13"}, headers=office)
    assert bad.status_code == 400 and "月份格式应为 YYYY-MM" in bad.text


def test_the_xlsx_download_holds_the_pages_numbers(rt: Runtime, client: TestClient, tokens: dict[str, str]) -> None:
    answer = client.get("/bulletin.xlsx", params={"month": "2024-02"}, headers=bearer(tokens["office"]))
    assert answer.status_code == 200, answer.text
    assert "filename*=UTF-8''" in answer.headers["content-disposition"]
    assert "bulletin-2024-02.xlsx" in answer.headers["content-disposition"]
    book = openpyxl.load_workbook(io.BytesIO(answer.content))
    sheet = book["红牌占比排名"]
    assert "2024年2月" in sheet["A1"].value
    expected = gather(rt, MONTH_ENDS[1]).ranking("red_share")
    rows = [[c.value for c in r] for r in sheet.iter_rows(min_row=3)]
    assert [(r[0], r[1], r[3], r[4]) for r in rows] == [
        (line["red_share"].rank, line.county, line["red_share"].value.numerator, line["red_share"].value.denominator)
        for line in expected]
    known = [r for r in rows if r[4]]
    assert all(isinstance(r[2], (int, float)) and r[2] == r[3] / r[4] for r in known)  # a number, not text
    assert any(r[3] for r in known)  # some county has red projects


@pytest.mark.parametrize("role", ["unit", "leader"])
def test_a_unit_or_a_leader_is_refused(client: TestClient, tokens: dict[str, str], role: str) -> None:
    for path in ("/bulletin", "/bulletin.xlsx"):
        answer = client.get(path, headers=bearer(tokens[role]))
        assert answer.status_code == 403, (path, answer.text)
        assert "该操作仅限投资科账号" in answer.text
    home = client.get("/", headers=bearer(tokens[role]))
    assert home.status_code == 200 and 'href="/bulletin"' not in home.text


def test_printed_on_a4_without_the_menu(rt: Runtime, tokens: dict[str, str], tmp_path: Path) -> None:
    """In print: the menu, the month form and the footer are hidden, the rankings are tables again
    (not the phone's cards), and the page prints to A4 (a PDF of A4 pages)."""
    with serve(create_app(rt)) as base, chromium() as browser:
        context = browser.new_context(viewport=PHONE, locale="zh-CN")
        page = context.new_page()
        try:
            sign_in(page, base, "office")
            page.goto(f"{base}/bulletin?month=2024-03")
            assert page.locator("header.top").is_visible() and page.locator("form.bulletin-controls").is_visible()
            assert page.locator("table.cards thead").first.is_hidden()  # cards on the phone
            assert overflow(page)["document"] <= PHONE["width"]
            page.emulate_media(media="print")
            assert page.locator("header.top").is_hidden() and page.locator("footer").is_hidden()
            assert page.locator("form.bulletin-controls").is_hidden()
            assert page.locator("table.cards thead").first.is_visible()  # a table on paper
            assert page.locator("h1").is_visible()
            pdf = page.pdf(prefer_css_page_size=True, path=str(tmp_path / "bulletin.pdf"))
        finally:
            context.close()
    sizes = re.findall(rb"/MediaBox\s*\[\s*0 0 ([\d.]+) ([\d.]+)\s*\]", pdf)
    assert sizes and all(abs(float(w) - 595.92) < 2 and abs(float(h) - 842.88) < 2 for w, h in sizes), sizes


def test_the_page_and_its_xlsx_cost_one_computation_until_a_batch_is_applied(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.web import bulletin_pages

    rt = make_runtime(tmp_path, as_of=D)  # a reserve of its own: this test applies a batch
    load_reserve(rt)
    office = bearer(user(rt, "office", "office"))

    made: list[date] = []
    real = bulletin_pages.gather_bulletin

    def counted(session: Any, month_end: date, **kw: Any) -> Any:
        made.append(month_end)
        return real(session, month_end, **kw)

    monkeypatch.setattr(bulletin_pages, "gather_bulletin", counted)
    with TestClient(create_app(rt)) as c:
        before = c.get("/bulletin", params={"month": "2024-03"}, headers=office).text
        assert c.get("/bulletin.xlsx", params={"month": "2024-03"}, headers=office).status_code == 200
        assert c.get("/bulletin", headers=office).text == before  # the default month is the same bulletin
        assert made == [D]
        c.get("/bulletin", params={"month": "2024-02"}, headers=office)
        assert made == [D, MONTH_ENDS[1]]
        # A late March report for a project of 纪南文旅区 (none before): the bulletin is computed again.
        late = report(1, D)
        with session_scope(rt.session_factory) as s:
            batch = record_batch(s, source="file", filename=None, content_sha256=None, total_rows=1,
                                 rows=[replace(late, code="2024-421000-44-01-990001", county="纪南文旅区")],
                                 errors=[], clock=rt.clock).batch_id
        rt.apply_delivered(batch)
        after = c.get("/bulletin", params={"month": "2024-03"}, headers=office).text
        assert made == [D, MONTH_ENDS[1], D]
        assert sections(after) != sections(before)
    rt.dispose()
    set_runtime(None)
