"""The workspace in a real headless Chromium (Debian's, driven by Playwright's Python API), against a
uvicorn server on a free local port, over the demo reserve as of 2024-12-31.

Screenshots go to test-artifacts/screenshots/. Under CI=true a missing Chromium or Playwright fails
the test; elsewhere it skips.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sqlalchemy import insert

from pipeline.db import session_scope
from pipeline.ingest.export import write_template
from pipeline.models import OutboxMessage
from pipeline.runtime import Runtime, set_runtime
from pipeline.web import create_app
from tests.conftest import service_env
from tests.browser_support import ARGS, ARTIFACTS, CHROMIUM, need_browser
from tests.web_support import PASSWORD, demo_runtime, serve, user

SHOTS = ARTIFACTS / "screenshots"
NOTE = "已约谈监利市责任单位，要求月底前整改到位"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    need_browser()
    rt = demo_runtime(tmp_path_factory.mktemp("web-browser"))
    user(rt, "office", "office")
    with session_scope(rt.session_factory) as session:  # one send that failed for good, to resend
        now = rt.clock.now()
        session.execute(insert(OutboxMessage).values(
            key="browser:failed", kind="red_notice", channel="email", recipient="leader@example.org",
            recipient_name="马敏刚", subject="【红牌提醒】浏览器测试", body_text="…", payload={}, status="failed",
            attempts=8, next_attempt_at=now, last_error="SMTP 服务器拒绝连接", created_at=now))
    yield rt
    rt.dispose()
    set_runtime(None)


@pytest.fixture(scope="module")
def site(demo: Runtime) -> Iterator[str]:
    with serve(create_app(demo)) as base:
        yield base


@pytest.fixture
def page(site: str) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        # Chromium's zygote fails under libfaketime: in a .ci/at-date run the browser keeps the real
        # clock (the server, whose clock decides every date shown, runs on the moved one).
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS, env=service_env())
        context = browser.new_context(viewport={"width": 1366, "height": 900}, locale="zh-CN")
        pg = context.new_page()
        errors: list[str] = []
        pg.on("pageerror", lambda exc: errors.append(str(exc)))
        pg.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        pg.on("request", lambda req: errors.append(f"off-site request: {req.url}")
              if not req.url.startswith(site) and not req.url.startswith("data:") else None)
        try:
            yield pg
        finally:
            context.close()
            browser.close()
        assert not errors, errors


def sign_in(page, site: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{site}/projects")
    assert "/login" in page.url  # sent to the login page first
    page.screenshot(path=str(SHOTS / "01-login.png"), full_page=True)
    page.fill("input[name=username]", "office")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{site}/projects")


def painted_pixels(page, selector: str) -> int:  # type: ignore[no-untyped-def]
    """Non-transparent pixels drawn on the chart's canvas (0 when nothing was drawn)."""
    return int(page.eval_on_selector(selector + " canvas", """c => {
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n; }"""))


def test_sign_in_overview_charts_filter_acknowledge(page, site: str) -> None:  # type: ignore[no-untyped-def]
    sign_in(page, site)
    page.goto(f"{site}/")
    for chart in ("#chart-colors", "#chart-rates", "#chart-investment"):
        page.wait_for_selector(f"{chart}[data-rendered='1'] canvas")
        box = page.locator(f"{chart} canvas").bounding_box()
        assert box and box["width"] > 200 and box["height"] > 150, chart
        page.wait_for_function(
            """sel => { const c = document.querySelector(sel + ' canvas'); const d = c.getContext('2d')
                .getImageData(0, 0, c.width, c.height).data; for (let i = 3; i < d.length; i += 4)
                if (d[i] > 0) return true; return false; }""", arg=chart)
        assert painted_pixels(page, chart) > 2000, chart
    assert page.locator(".tile.review").inner_text().count("双月述职") == 1
    assert int(page.locator(".tile-red b").inner_text()) > 0
    page.screenshot(path=str(SHOTS / "02-overview.png"), full_page=True)

    # filter to the red projects of 监利市 with the list's own form
    page.click("header nav >> text=项目清单")
    page.select_option("select[name=color]", "red")
    page.select_option("select[name=county]", "监利市")
    page.click("form.filters button[type=submit]")
    page.wait_for_url("**/projects?**")
    rows = page.locator("table.projects tbody tr")
    assert rows.count() > 0
    for i in range(rows.count()):
        assert rows.nth(i).locator("td").nth(2).inner_text() == "监利市"
        assert rows.nth(i).locator(".flag").first.inner_text() == "红牌"
    page.screenshot(path=str(SHOTS / "03-projects-red-jianli.png"), full_page=True)

    # open one, acknowledge it with a note, see the note on its timeline
    first = rows.first.locator("a.project-name")
    name = first.inner_text()
    first.click()
    page.wait_for_selector("#ack-form")
    assert page.locator("h1.project-title").inner_text().startswith(name)
    page.fill("#ack-form textarea[name=note]", NOTE)
    page.click("#ack-form button[type=submit]")
    page.wait_for_selector(".flash-ok")
    assert "已确认" in page.locator(".flash-ok").inner_text()
    entry = page.locator("#timeline li.event-ack")
    assert entry.count() == 1 and NOTE in entry.inner_text() and "投资科" not in NOTE
    assert "office" in entry.inner_text() or "确认红牌" in entry.inner_text()
    # still red (the flag itself is not changed), now marked acknowledged, and the form is gone
    assert page.locator("#flag .flag-red").count() == 1 and page.locator("#flag .acked").inner_text() == "已确认"
    assert NOTE in page.locator("#flag .ack-note").inner_text()
    assert page.locator("#ack-form").count() == 0
    page.screenshot(path=str(SHOTS / "04-project-acknowledged.png"), full_page=True)


def test_upload_reports_both_bad_rows_by_row_and_header(page, site: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    good = {"code": "2024-421088-44-01-990001", "name": "浏览器测试项目", "county": "监利市", "nature": "续建",
            "total_investment": 30000, "annual_plan": 6000, "planned_start": "2023-05-01", "actual_start": "2023-05-02",
            "stats_included_on": "2023-06-01", "ytd_completed": 5900, "leader": "马敏刚", "unit": "监利市人民政府",
            "as_of": "2024-12-31"}
    bad_county = {**good, "code": "2024-421088-44-01-990002", "county": "火星区"}
    bad_nature = {**good, "code": "2024-421088-44-01-990003", "nature": "在建"}
    path = write_template([good, bad_county, bad_nature], tmp_path / "十二月月报.xlsx")

    sign_in(page, site)
    page.goto(f"{site}/upload")
    page.set_input_files("#upload-form input[type=file]", str(path))
    page.click("#upload-form button[type=submit]")
    page.wait_for_selector("#upload-report")
    report = page.locator("#upload-report")
    assert "接收 1 行" in report.inner_text() and "拒收 2 行" in report.inner_text()
    cells = [[c.strip() for c in page.locator("table.rejections tbody tr").nth(i).locator("td").all_inner_texts()]
             for i in range(page.locator("table.rejections tbody tr").count())]
    assert [(c[0], c[1]) for c in cells] == [("3", "县市区"), ("4", "建设性质")]
    assert "火星区" in cells[0][2] and cells[0][3] and cells[1][3]
    page.screenshot(path=str(SHOTS / "05-upload-report.png"), full_page=True)

    page.goto(f"{site}/projects?q=浏览器测试项目")
    assert page.locator("table.projects tbody tr").count() == 1  # the good row landed and was applied


def test_leader_alerts_and_docs_pages_render(page, site: str) -> None:  # type: ignore[no-untyped-def]
    sign_in(page, site)
    page.goto(f"{site}/leaders")
    page.locator("table a").first.click()
    page.wait_for_selector("text=包保项目三率")
    page.screenshot(path=str(SHOTS / "06-leader.png"), full_page=True)
    page.goto(f"{site}/alerts?status=failed")
    assert page.locator("h1").inner_text().startswith("提醒")
    failed = page.locator("tbody tr", has_text="浏览器测试")
    assert "SMTP 服务器拒绝连接" in failed.inner_text()
    page.screenshot(path=str(SHOTS / "07-alerts-failed.png"), full_page=True)
    failed.locator("button", has_text="重发").click()
    page.wait_for_selector(".flash-ok")
    assert "重新排队" in page.locator(".flash-ok").inner_text()
    page.goto(f"{site}/alerts?status=sent")
    assert page.locator("tbody tr", has_text="浏览器测试").count() == 1  # sent on embedded defaults (.eml folder)
    page.goto(f"{site}/api/docs")
    page.wait_for_selector("[data-path='/api/updates']")
    page.screenshot(path=str(SHOTS / "08-api-docs.png"), full_page=True)


def test_a_large_upload_shows_rows_read_validated_and_applied(page, site: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Thousands of rows: the bars say how many rows were read and validated and how many applied;
    the report then appears in place (its address is the batch's, so a reload shows it again)."""
    from datetime import date

    from tests.factories import row

    rows = [row(n, as_of=date(2024, 12, 31), code=f"2024-421003-44-01-7{n:05d}") for n in range(1, 2001)]
    rows[10] = {**{k: v for k, v in vars(rows[10]).items() if k != "row_number"}, "county": "火星区"}
    path = write_template(rows, tmp_path / "全市十二月月报.xlsx")
    sign_in(page, site)
    page.goto(f"{site}/upload")
    page.set_input_files("#upload-form input[type=file]", str(path))
    page.click("#upload-form button[type=submit]")
    page.wait_for_selector("#upload-progress:not([hidden])")
    page.wait_for_selector("#upload-progress[data-finished='1']", timeout=240_000)
    validate, apply = page.locator("[data-bar=validate]"), page.locator("[data-bar=apply]")
    assert validate.get_attribute("data-done") == validate.get_attribute("data-total") == "2000"
    assert apply.get_attribute("data-done") == apply.get_attribute("data-total") == "1999"
    assert page.locator("[data-text=validate]").inner_text() == "已读取 2000 行，已校验 2000 行"
    assert page.locator("[data-text=apply]").inner_text() == "已入库 1999 / 1999 行"
    report = page.locator("#upload-report")
    assert "接收 1999 行" in report.inner_text() and "拒收 1 行" in report.inner_text()
    assert page.locator("#rejected-link").count() == 1
    assert "/upload?batch=" in page.url
    page.screenshot(path=str(SHOTS / "09-upload-progress.png"), full_page=True)
    page.reload()
    assert "接收 1999 行" in page.locator("#upload-report").inner_text()
