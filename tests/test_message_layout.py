"""Messages as a leader reads them on a phone: every kind of email (a leader's digest, an all-green
digest, the office digest, a red notice) rendered by Chromium at 390 px: nothing wider than the
screen, a viewport meta, one column (no table of more than two columns), under 100 KB; the robots'
markdown carries the link to the project or the digest's page. Screenshots go to
test-artifacts/messages/.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date
from html.parser import HTMLParser

import pytest
from sqlalchemy import case, func, select

from pipeline.alerts.content import leader_digest, office_digest, red_notice
from pipeline.alerts.render import RenderedMessage
from pipeline.db import session_scope
from pipeline.models import Leader, Project, ProjectFlag
from pipeline.runtime import Runtime, set_runtime
from tests.browser_support import ARTIFACTS, PHONE, chromium, need_browser, overflow
from tests.web_support import demo_runtime

SHOTS = ARTIFACTS / "messages"
LINK = "https://xm.jzfgw.gov.cn"
REVIEW, PREVIOUS, D = date(2024, 12, 27), date(2024, 10, 31), date(2024, 12, 20)
MAX_BYTES = 100 * 1024
CODE = re.compile(r"\d{4}-\d{6}-\d{2}-\d{2}-\d{6}")  # a project code (SPEC §2)


class _Cells(HTMLParser):
    """The most cells any table row holds, and whether a viewport meta is there."""

    def __init__(self) -> None:
        super().__init__()
        self.widest_row = 0
        self._row = 0
        self.viewport = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tr":
            self._row = 0
        elif tag in ("td", "th"):
            self._row += 1
            self.widest_row = max(self.widest_row, self._row)
        elif tag == "meta" and dict(attrs).get("name") == "viewport":
            self.viewport = "width=device-width" in (dict(attrs).get("content") or "")


@pytest.fixture(scope="module")
def messages(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, RenderedMessage]]:
    rt: Runtime = demo_runtime(tmp_path_factory.mktemp("messages"))
    try:
        with session_scope(rt.session_factory) as s:
            flagged = func.sum(case((ProjectFlag.effective_color != "green", 1), else_=0))
            by_leader = s.execute(
                select(Leader.id, Leader.name, func.count(), flagged)
                .join(Project, Project.leader_id == Leader.id).join(ProjectFlag, ProjectFlag.project_id == Project.id)
                .group_by(Leader.id, Leader.name)).all()
            busiest = max(by_leader, key=lambda r: r[3])
            green_leader = next((r for r in by_leader if r[3] == 0), None)
            red_project = s.scalar(select(ProjectFlag.project_id).where(ProjectFlag.effective_color == "red")
                                   .order_by(ProjectFlag.project_id).limit(1))
            common = {"review_date": REVIEW, "as_of": D, "previous_review": PREVIOUS, "scheme": rt.scheme,
                      "link_base": LINK}
            found = {
                "leader-digest": leader_digest(s, leader_id=busiest[0], **common),
                "office-digest": office_digest(s, **common, county_order=rt.reference.order_for("county")),
                "red-notice": red_notice(s, project_id=red_project, link_base=LINK, scheme=rt.scheme),
            }
            if green_leader is None:  # make one: a leader whose only project is green
                leader = Leader(name="绿牌领导", title="测试")
                s.add(leader)
                s.flush()
                pid = s.scalar(select(ProjectFlag.project_id).where(ProjectFlag.effective_color == "green").limit(1))
                s.get(Project, pid).leader_id = leader.id  # type: ignore[union-attr]
                s.flush()
                green_leader = (leader.id, leader.name)
            found["all-green-digest"] = leader_digest(s, leader_id=green_leader[0], **common)
            every_leader = [leader_digest(s, leader_id=r[0], **common) for r in by_leader]
        assert found["all-green-digest"].payload["red"] == 0 and found["all-green-digest"].payload["yellow"] == 0
        found.update({f"leader-{i}": m for i, m in enumerate(every_leader)})
        yield found
    finally:
        rt.dispose()
        set_runtime(None)


def test_every_email_is_small_single_column_and_has_a_viewport(messages: dict[str, RenderedMessage]) -> None:
    for name, m in messages.items():
        size = len(m.html.encode("utf-8"))
        assert size < MAX_BYTES, (name, size)
        cells = _Cells()
        cells.feed(m.html)
        assert cells.viewport, name
        assert cells.widest_row <= 2, (name, cells.widest_row)  # cards and two-column lists, no wide tables
    office = messages["office-digest"]
    assert "另有" in office.html and "红牌" in office.html  # a long list is cut in the body, whole in the workbook


@pytest.mark.parametrize("kind", ["leader-digest", "all-green-digest", "office-digest", "red-notice"])
def test_each_kind_fits_a_phone_screen(messages: dict[str, RenderedMessage], kind: str) -> None:
    need_browser()
    SHOTS.mkdir(parents=True, exist_ok=True)
    with chromium() as browser:
        context = browser.new_context(viewport=PHONE, locale="zh-CN", is_mobile=True, has_touch=True)
        page = context.new_page()
        requests: list[str] = []
        page.on("request", lambda req: requests.append(req.url) if not req.url.startswith(("data:", "about:")) else None)
        try:
            page.set_content(messages[kind].html, wait_until="load")
            found = overflow(page)
            page.screenshot(path=str(SHOTS / f"{kind}-390.png"), full_page=True)
            # the text is laid out for the phone: a paragraph is about as wide as the screen, not 980 px
            widest_text = page.evaluate("() => Math.max(...Array.from(document.querySelectorAll('p, div'))"
                                        ".map(e => e.getBoundingClientRect().width))")
        finally:
            context.close()
    assert found["document"] <= found["viewport"] == PHONE["width"], found
    assert widest_text <= PHONE["width"]
    assert requests == []  # nothing fetched from outside


def test_the_text_part_names_the_projects_the_html_part_names(messages: dict[str, RenderedMessage]) -> None:
    """The two parts of one email carry the same lists: cut at the same length in the body (the
    whole lists are in the workbook), so a plain-text reader misses nothing an HTML reader sees and
    a reserve of a hundred thousand red projects does not make a body of tens of megabytes."""
    office = messages["office-digest"]
    assert "另有" in office.text  # the fixture's office digest has more red projects than the body lists
    for name, m in messages.items():
        assert set(CODE.findall(m.text)) == set(CODE.findall(m.html)), name
    assert len(office.text.encode("utf-8")) < MAX_BYTES


def test_robot_messages_link_to_the_project_or_the_digest_page(messages: dict[str, RenderedMessage]) -> None:
    leader = messages["leader-digest"]
    assert leader.payload["link"].startswith(f"{LINK}/leaders/")
    assert f"]({leader.payload['link']})" in leader.markdown
    office = messages["office-digest"]
    assert office.payload["link"] == f"{LINK}/" and f"]({LINK}/)" in office.markdown
    notice = messages["red-notice"]
    assert notice.payload["link"].startswith(f"{LINK}/projects/") and f"]({notice.payload['link']})" in notice.markdown
    for m in (leader, office, notice):  # near the top: a robot that cuts a long message keeps the link
        assert m.markdown.encode().index(b"](" + LINK.encode()) < 1024
