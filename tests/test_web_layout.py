"""Every page, for every role, at a phone's 390x844 and a desktop's 1440x900, in a real Chromium:
nothing is wider than the screen (the document's width is at most the viewport's), the menu
collapses behind a button on the phone and sits in the bar on the desktop, no page raises a script
error or fetches anything off-site. Full-page screenshots go to test-artifacts/layout/.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select

from pipeline.db import session_scope
from pipeline.ingest.export import write_template
from pipeline.models import Leader, OutboxMessage, Project, ProjectFlag, Unit
from pipeline.runtime import Runtime, set_runtime
from pipeline.web import create_app
from tests.browser_support import ARTIFACTS, DESKTOP, PHONE, chromium, need_browser, overflow
from tests.web_support import AS_OF, PASSWORD, demo_runtime, serve, user
from tests.factories import ACTOR

SHOTS = ARTIFACTS / "layout"
VIEWPORTS = {"phone": PHONE, "desktop": DESKTOP}


@dataclass(frozen=True)
class Site:
    base: str
    leader: str
    leader_red: str  # a red project of that leader
    unit: str
    unit_project: str
    red: str  # a red project (office)
    failed_message: int
    batch: int  # an upload with refused rows


def _uploaded_batch(rt: Runtime, folder: Path) -> int:
    """An office upload with one good and two refused rows (for the report page)."""
    from pipeline.accounts import Principal
    from pipeline.web.uploads import submit_file

    good = {"code": "2024-421088-44-01-990101", "name": "版式测试项目（一个很长的项目名称，用来检查窄屏上的换行）",
            "county": "监利市", "nature": "续建", "total_investment": 30000, "annual_plan": 6000,
            "planned_start": "2023-05-01", "actual_start": "2023-05-02", "stats_included_on": "2023-06-01",
            "ytd_completed": 5900, "leader": "马敏刚", "unit": "监利市人民政府", "as_of": "2024-12-31"}
    rows = [good, {**good, "code": "2024-421088-44-01-990102", "county": "火星区"},
            {**good, "code": "2024-421088-44-01-990103", "nature": "在建", "problems": "x" * 300}]
    path = write_template(rows, folder / "版式测试.xlsx")
    office = Principal(0, "office", "投资科", "office")
    sub = submit_file(rt, office, path, ACTOR)
    assert sub.batch_id is not None and sub.rejected == 2
    return sub.batch_id


def _change_requests(rt: Runtime, project_code: str) -> None:
    """The unit's update of its project with a long new name, a new leader and lists: three requests."""
    from dataclasses import replace

    from pipeline.ingest.record import record_batch
    from pipeline.tasks.dispatch import apply_inline
    from tests.factories import row

    changed = replace(row(1, as_of=AS_OF), code=project_code, county=None, nature=None, total_investment=None,
                      industry=None, annual_plan=None, planned_start=None, planned_completion=None, unit=None,
                      name="版式测试：一个很长很长的新项目名称，用来检查变更申请在窄屏上的换行（二期扩建工程）",
                      leader="欧阳新领导", lists=("亿元以上项目", "省市重点项目", "重大基础设施项目"))
    with session_scope(rt.session_factory) as session:
        unit_id = session.scalar(select(Project.unit_id).where(Project.code == project_code))
        batch = record_batch(session, source="api", filename=None, content_sha256=None, total_rows=1, rows=[changed],
                             errors=[], clock=rt.clock, unit_id=unit_id).batch_id
    apply_inline(rt, [batch])


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    need_browser()
    folder = tmp_path_factory.mktemp("web-layout")
    rt = demo_runtime(folder)
    user(rt, "office", "office")
    with session_scope(rt.session_factory) as session:
        leader, leader_red = session.execute(
            select(Leader.name, Project.code).join(Project, Project.leader_id == Leader.id)
            .join(ProjectFlag, ProjectFlag.project_id == Project.id).where(ProjectFlag.effective_color == "red")
            .order_by(Project.code).limit(1)).one()
        unit, unit_project = session.execute(
            select(Unit.name, Project.code).join(Project, Project.unit_id == Unit.id)
            .join(ProjectFlag, ProjectFlag.project_id == Project.id).where(ProjectFlag.effective_color == "red")
            .order_by(Project.code.desc()).limit(1)).one()
        now = rt.clock.now()
        failed = session.scalar(insert(OutboxMessage).values(
            key="layout:failed", kind="red_notice", channel="email", recipient="a.very.long.address.of.a.leader@example.org",
            recipient_name=leader, subject="【红牌提醒】一个名称很长很长的重大项目（2024-421088-44-01-000001）",
            body_text="正文", body_html="<p>正文</p>", payload={}, status="failed", attempts=8, next_attempt_at=now,
            last_error="SMTP 服务器拒绝连接：Connection refused (errno 111) " * 3, created_at=now,
        ).returning(OutboxMessage.id))
    user(rt, "leader", "leader", leader=leader)
    user(rt, "unit", "unit", unit=unit)
    batch = _uploaded_batch(rt, folder)
    _change_requests(rt, unit_project)
    with serve(create_app(rt)) as base:
        yield Site(base, leader, leader_red, unit, unit_project, leader_red, int(failed), batch)
    rt.dispose()
    set_runtime(None)


PAST = "2024-06-30"  # a 截至日期 before the evaluation date


def pages_of(role: str, s: Site) -> dict[str, str]:
    """name → path: every page the role can open."""
    if role == "office":
        return {"overview": "/", "projects": "/projects", "projects-red": "/projects?color=red&sort=county",
                "project": f"/projects/{s.red}", "leaders": "/leaders", "leader": f"/leaders/{s.leader}",
                "forecast": "/forecast", "backtest": "/backtest", "upload": "/upload",
                "upload-report": f"/upload?batch={s.batch}", "alerts": "/alerts",
                "alert": f"/alerts/{s.failed_message}", "bulletin": "/bulletin", "bulletin-june": "/bulletin?month=2024-06",
                "not-found": "/projects/2024-000000-00-00-000000",
                "changes": "/changes", "changes-all": "/changes?status=all", "project-changes": f"/projects/{s.unit_project}",
                "api-docs": "/api/docs", "overview-past": f"/?as_of={PAST}", "projects-past": f"/projects?as_of={PAST}",
                "leaders-past": f"/leaders?as_of={PAST}", "leader-past": f"/leaders/{s.leader}?as_of={PAST}"}
    if role == "leader":
        return {"home": "/", "projects": "/projects", "project": f"/projects/{s.leader_red}",
                "leader": f"/leaders/{s.leader}", "forbidden": "/alerts", "changes": "/changes",
                "home-past": f"/?as_of={PAST}"}
    return {"overview": "/", "projects": "/projects", "project": f"/projects/{s.unit_project}", "upload": "/upload",
            "forbidden": "/bulletin", "changes": "/changes"}


def sign_in(page: Any, base: str, username: str) -> None:
    page.goto(f"{base}/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(re.escape(base) + r"/$"))


def open_context(browser: Any, base: str, viewport: dict[str, int]) -> tuple[Any, Any, list[str]]:
    context = browser.new_context(viewport=viewport, locale="zh-CN", device_scale_factor=1,
                                  is_mobile=viewport["width"] < 500, has_touch=viewport["width"] < 500)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" and "status of 40" not in msg.text else None)
    page.on("request", lambda req: errors.append(f"off-site request: {req.url}")
            if not req.url.startswith(base) and not req.url.startswith(("data:", "about:")) else None)
    return context, page, errors


def check_menu(page: Any, size: str) -> None:
    links = page.locator("header nav a")
    assert links.count() >= 3
    if size == "phone":
        assert not links.first.is_visible()  # collapsed behind the button
        page.click("label.menu-button")
        assert links.first.is_visible()
    else:
        assert not page.locator("label.menu-button").is_visible()
    for i in range(links.count()):  # each link on one line, never a character per line
        assert text_lines(links.nth(i)) == 1, links.nth(i).inner_text()
    assert text_lines(page.locator(".brand")) == 1


def text_lines(locator: Any) -> int:
    """How many lines the element's text is laid out on (distinct tops of its text's boxes)."""
    return int(locator.evaluate("""el => { const r = document.createRange(); r.selectNodeContents(el);
        const boxes = Array.from(r.getClientRects()).filter(b => b.width > 0).sort((a, b) => a.top - b.top);
        let lines = 0, bottom = -Infinity;
        for (const b of boxes) { if (b.top >= bottom - 1) { lines++; bottom = b.bottom; } else bottom = Math.max(bottom, b.bottom); }
        return lines; }"""))


def visit(page: Any, base: str, path: str) -> None:
    page.goto(base + path)
    page.wait_for_load_state("load")
    if page.locator("#chart-data").count():
        for chart in ("#chart-colors", "#chart-rates", "#chart-investment"):
            page.wait_for_selector(f"{chart}[data-rendered='1'] canvas")
    if path == "/api/docs":
        page.wait_for_selector(".swagger-ui .opblock")


@pytest.mark.parametrize("size", VIEWPORTS)
@pytest.mark.parametrize("role", ["anonymous", "office", "leader", "unit"])
def test_every_page_fits_the_screen(site: Site, role: str, size: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    viewport = VIEWPORTS[size]
    faults = []
    with chromium() as browser:
        context, page, errors = open_context(browser, site.base, viewport)
        try:
            if role == "anonymous":
                pages = {"login": "/login"}
            else:
                sign_in(page, site.base, role)
                pages = pages_of(role, site)
            for name, path in pages.items():
                visit(page, site.base, path)
                if name in ("overview", "home", "projects"):
                    check_menu(page, size)
                    page.goto(site.base + path)
                page.screenshot(path=str(SHOTS / f"{role}-{name}-{size}.png"), full_page=True)
                found = overflow(page)
                if found["document"] > found["viewport"]:
                    faults.append((path, found))
        finally:
            context.close()
    assert not faults, faults
    assert not errors, errors


def test_leader_home_acknowledges_with_one_tap_and_shows_it_everywhere(site: Site) -> None:
    """On the phone: the leader's red project, its note, the button; then 已确认 on the home, the
    project page (no form any more) and the project list."""
    note = "已约谈责任单位，月底前开工"
    with chromium() as browser:
        context, page, errors = open_context(browser, site.base, PHONE)
        try:
            sign_in(page, site.base, "leader")
            assert "一个名称很长很长的重大项目" in page.locator("#notices").inner_text()  # the notices sent to them
            assert page.locator("#forecast h2").inner_text().startswith("述职前将转红、转黄")  # the forecast's section
            card = page.locator(f"#p-{site.leader_red}")
            assert card.locator(".flag-red").count() == 1 and card.locator(".acked").count() == 0
            card.locator("textarea[name=note]").fill(note)
            card.locator("button[type=submit]").click()
            page.wait_for_selector(".flash-ok")
            card = page.locator(f"#p-{site.leader_red}")
            assert card.locator(".acked").inner_text() == "已确认"
            assert card.locator("form").count() == 0
            assert overflow(page)["document"] <= PHONE["width"]
            page.screenshot(path=str(SHOTS / "leader-home-acknowledged-phone.png"), full_page=True)

            page.goto(f"{site.base}/projects/{site.leader_red}")
            assert page.locator("#flag .acked").inner_text() == "已确认"
            assert note in page.locator("#flag .ack-note").inner_text()
            assert page.locator("#ack-form").count() == 0 and page.locator("#acknowledge").count() == 0
            assert page.locator("#timeline li.event-ack").count() == 1
            page.goto(f"{site.base}/projects?q={site.leader_red}")
            assert page.locator("table.projects tbody tr .acked").count() == 1
        finally:
            context.close()
    assert not errors, errors


@pytest.mark.parametrize("size", VIEWPORTS)
def test_the_backtest_results_fit_the_screen(site: Site, size: str) -> None:
    """The office edits the scheme (START_OVERDUE red after 30 days instead of 60) and tries it on
    December: the month table and the changed projects, with both reasons, fit the screen."""
    with chromium() as browser:
        context, page, errors = open_context(browser, site.base, VIEWPORTS[size])
        try:
            sign_in(page, site.base, "office")
            page.goto(f"{site.base}/backtest")
            edited = page.locator("textarea[name=text]").input_value().replace(
                "yellow: {min: 1, max: 60}\n    red: {above: 60}", "yellow: {min: 1, max: 30}\n    red: {above: 30}")
            page.locator("textarea[name=text]").fill(edited)
            page.locator("input[name=from]").fill("2024-12")
            page.locator("input[name=to]").fill("2024-12")
            page.click("#backtest-form button[type=submit]")
            page.wait_for_selector("#backtest-months")
            assert page.locator("#m-2024-12 li.pcard").count() > 0
            page.screenshot(path=str(SHOTS / f"office-backtest-result-{size}.png"), full_page=True)
            found = overflow(page)
            assert found["document"] <= found["viewport"], found
        finally:
            context.close()
    assert not errors, errors
