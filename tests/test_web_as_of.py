"""The 截至日期 picker (SPEC §9): the overview, the project list (and its API) and the leader pages
as of a past date show the counts, flags and lists of the reserve as it stood then (the month flags
of that month end, computed when the reports were loaded); without a date, the stored flags."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from pipeline.db import session_scope
from pipeline.models import Leader, MonthFlag, Project, ProjectFlag
from pipeline.runtime import Runtime
from pipeline.web import create_app
from tests.web_support import bearer, demo_loaded, login, user

PAST = date(2024, 6, 30)


@pytest.fixture(scope="module")
def rt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    with demo_loaded(tmp_path_factory.mktemp("as-of")) as runtime:
        user(runtime, "office", "office")
        yield runtime


@pytest.fixture(scope="module")
def client(rt: Runtime) -> Iterator[TestClient]:
    """The office, signed in."""
    with TestClient(create_app(rt)) as c:
        login(c, "office")
        yield c


def month_colours(rt: Runtime, month_end: date) -> dict[str, str]:
    with session_scope(rt.session_factory) as session:
        return dict(session.execute(select(Project.code, MonthFlag.computed_color)
                                    .join(Project, Project.id == MonthFlag.project_id)
                                    .where(MonthFlag.month_end == month_end)).tuples().all())


def tiles(html: str) -> dict[str, int]:
    return {name: int(n) for n, name in re.findall(r"<b>(\d+)</b><span>(红牌|黄牌|绿牌)</span>", html)}


def test_the_overview_counts_as_of_a_past_date(rt: Runtime, client: TestClient) -> None:
    then = Counter(month_colours(rt, PAST).values())
    with session_scope(rt.session_factory) as session:
        now = Counter(dict(session.execute(select(ProjectFlag.effective_color, func.count())
                                           .group_by(ProjectFlag.effective_color)).tuples().all()))
    assert then != now  # the year moved: the test can tell the two apart
    past = client.get("/", params={"as_of": PAST.isoformat()})
    assert past.status_code == 200
    assert tiles(past.text) == {"红牌": then["red"], "黄牌": then["yellow"], "绿牌": then["green"]}
    assert "截至 2024-06-30" in past.text and 'name="as_of"' in past.text and "回到评估日期" in past.text
    assert "/projects?color=red&amp;as_of=2024-06-30" in past.text
    today = client.get("/")
    assert tiles(today.text) == {"红牌": now["red"], "黄牌": now["yellow"], "绿牌": now["green"]}
    assert "回到评估日期" not in today.text


def test_the_list_and_its_api_as_of_a_past_date(rt: Runtime, client: TestClient) -> None:
    then = month_colours(rt, PAST)
    red_then = sorted(c for c, colour in then.items() if colour == "red")
    token = user(rt, "office-api", "office")
    answer = client.get("/api/projects", params={"as_of": PAST.isoformat(), "color": "red", "per_page": 200},
                        headers=bearer(token)).json()
    assert answer["total"] == len(red_then)
    assert [p["code"] for p in answer["items"]] == red_then
    assert all(p["flag"] == "red" and p["as_of"] <= "2024-06-30" for p in answer["items"])
    by_flag = client.get("/api/projects", params={"as_of": PAST.isoformat(), "sort": "flag", "per_page": 5},
                         headers=bearer(token)).json()
    assert [p["flag"] for p in by_flag["items"]] == ["red"] * 5
    page = client.get("/projects", params={"as_of": PAST.isoformat(), "color": "red"})
    assert f"共 {len(red_then)} 个" in page.text and "截至 2024-06-30" in page.text
    assert red_then[0] in page.text


def test_the_leader_pages_as_of_a_past_date(rt: Runtime, client: TestClient) -> None:
    then = month_colours(rt, PAST)
    with session_scope(rt.session_factory) as session:
        leaders = dict(session.execute(select(Project.code, Leader.name)
                                       .join(Leader, Leader.id == Project.leader_id)).tuples().all())
    per_leader: dict[str, Counter[str]] = {}
    for code, colour in then.items():
        per_leader.setdefault(leaders[code], Counter())[colour] += 1
    name, counts = max(per_leader.items(), key=lambda kv: (kv[1]["red"], kv[0]))
    board = client.get("/leaders", params={"as_of": PAST.isoformat()}).text
    row = re.search(rf">{re.escape(name)}</a>.*?</tr>", board, re.S)
    assert row is not None
    numbers = [int(n) for n in re.findall(r'data-label="(?:红牌|黄牌|绿牌)">(\d+)<', row.group(0))]
    assert numbers == [counts["red"], counts["yellow"], counts["green"]]
    page = client.get(f"/leaders/{name}", params={"as_of": PAST.isoformat()}).text
    assert tiles(page) == {"红牌": counts["red"], "黄牌": counts["yellow"], "绿牌": counts["green"]}
    assert f"红牌项目（{counts['red']}个）" in page and "截至 2024-06-30" in page


def test_a_date_after_the_evaluation_date_or_no_date_is_refused(client: TestClient) -> None:
    assert client.get("/", params={"as_of": "2025-01-31"}).status_code == 400
    assert client.get("/projects", params={"as_of": "2024-02-30"}).status_code == 422
    assert client.get("/", params={"as_of": ""}).status_code == 200


def test_on_postgresql_the_list_as_of_a_past_date_equals_the_month_flags(tmp_path: Path, pg_url: str) -> None:
    """The staged flags travel by COPY into a temporary table dropped at commit: the same answer."""
    with demo_loaded(tmp_path, database_url=pg_url) as runtime:
        token = user(runtime, "office-pg", "office")
        then = month_colours(runtime, PAST)
        with TestClient(create_app(runtime)) as c:
            for colour in ("red", "yellow"):
                answer = c.get("/api/projects", params={"as_of": PAST.isoformat(), "color": colour, "per_page": 200},
                               headers=bearer(token)).json()
                assert [p["code"] for p in answer["items"]] == sorted(k for k, v in then.items() if v == colour)
            login(c, "office-pg")
            counts = Counter(then.values())
            assert tiles(c.get("/", params={"as_of": PAST.isoformat()}).text) == {
                "红牌": counts["red"], "黄牌": counts["yellow"], "绿牌": counts["green"]}
