"""What the pages say, in Chinese and in order: search over leader, unit and problems; counties in
their configured order; rule names and values with units on the project page; titles that fit the
reader's scope; the 提醒 page with the sent time and a preview."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import date, datetime, timezone
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import insert

from pipeline.db import session_scope
from pipeline.models import OutboxMessage
from pipeline.runtime import Runtime, set_runtime
from pipeline.web import create_app
from tests.conftest import make_runtime
from tests.factories import code
from tests.web_support import LEADER_B, UNIT_A, UNIT_B, bearer, login, small_reserve, user


@pytest.fixture
def rt(tmp_path: Path) -> Iterator[Runtime]:
    runtime = make_runtime(tmp_path, as_of=date(2024, 12, 31))
    small_reserve(runtime)
    yield runtime
    runtime.dispose()
    set_runtime(None)


@pytest.fixture
def client(rt: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(rt)) as c:
        yield c


def send(client: TestClient, token: str, *updates: dict[str, object]) -> None:
    answer = client.post("/api/updates", json=list(updates), headers=bearer(token))
    assert answer.status_code in (200, 201, 202), answer.text


def codes(client: TestClient, token: str, **params: str) -> list[str]:
    answer = client.get("/api/projects", params=params, headers=bearer(token))
    assert answer.status_code == 200, answer.text
    return [p["code"] for p in answer.json()["items"]]


def update(n: int, **fields: object) -> dict[str, object]:
    return {"code": code(n), "name": f"测试项目{n}", "county": "荆州区", "nature": "续建", "total_investment": 50000,
            "annual_plan": 12000, "planned_start": "2023-03-01", "actual_start": "2023-03-10",
            "stats_included_on": "2023-05-01", "ytd_completed": 12000, "cumulative_completed": 30000,
            "leader": "王建国", "unit": UNIT_A, "as_of": "2024-12-31", **fields}


def test_search_finds_the_leader_the_unit_and_the_problems(rt: Runtime, client: TestClient) -> None:
    token = user(rt, "office", "office")
    send(client, token, update(2, problems="征地拆迁未完成，需市政府协调"))
    assert codes(client, token, q=LEADER_B) == [code(3), code(4)]  # 包保领导
    assert codes(client, token, q=UNIT_B) == [code(3), code(4)]  # 责任单位
    assert codes(client, token, q="沙市区人民") == [code(3), code(4)]  # part of the unit's name
    assert codes(client, token, q="征地拆迁") == [code(2)]  # 存在问题
    assert codes(client, token, q=code(1)[:17]) == [code(1), code(2), code(3), code(4)]  # a code prefix
    assert codes(client, token, q="测试项目4") == [code(4)]  # the name
    assert codes(client, token, q="%") == []  # a wildcard is a character like any other
    assert codes(client, token, q=LEADER_B, sort="ytd") == [code(3), code(4)]  # with a join for the sort
    page = client.get("/projects", params={"q": "征地"}, headers=bearer(token))
    assert "项目代码、名称、包保领导、责任单位或存在问题" in page.text and code(2) in page.text


def test_counties_come_in_their_configured_order(rt: Runtime, client: TestClient) -> None:
    """沙市区, 荆州区, …, 公安县 as config/counties.yaml lists them (公安县 would come first by code point)."""
    token = user(rt, "office", "office")
    send(client, token, update(5, county="公安县"))
    assert [p["county"] for p in client.get("/api/projects", params={"sort": "county"}, headers=bearer(token))
            .json()["items"]] == ["沙市区", "沙市区", "荆州区", "荆州区", "公安县"]
    login(client, "office")
    overview = client.get("/")
    charts = re.search(r'<script type="application/json" id="chart-data">(.*?)</script>', overview.text, re.S)
    assert charts and json.loads(charts.group(1))["rates"]["groups"] == ["沙市区", "荆州区", "公安县"]
    listed = client.get("/projects", params={"sort": "county"}).text
    assert listed.index("沙市区</td>") < listed.index("荆州区</td>") < listed.index("公安县</td>")


def test_project_page_says_rule_names_and_values_with_units(rt: Runtime, client: TestClient) -> None:
    user(rt, "office", "office")
    login(client, "office")
    page = client.get(f"/projects/{code(1)}").text
    assert "未按期开工" in page and "START_OVERDUE" not in page
    assert "逾期：305 天" in page and "计划开工：2024-03-01" in page
    assert "overdue_days" not in page and "as_of" not in page
    send(client, user(rt, "api", "office"), update(2, ytd_completed=3966, annual_plan=12000))  # pace 0.3305
    page = client.get(f"/projects/{code(2)}").text
    assert "投资进度滞后" in page and "BEHIND_PACE" not in page
    assert "完成比（占序时目标）：33.1%" in page and "0.3305" not in page and "pace_ratio" not in page
    assert "本年完成投资：3,966 万元" in page and "序时目标：12,000 万元" in page


def test_titles_follow_the_readers_scope(rt: Runtime, client: TestClient) -> None:
    user(rt, "office", "office")
    user(rt, "unit", "unit", unit=UNIT_A)
    login(client, "office")
    assert "全市三率与投资完成率" in client.get("/").text
    with TestClient(client.app) as other:
        login(other, "unit")
        home = other.get("/").text
        assert "本单位项目三率与投资完成率" in home and "全市三率" not in home


def test_alerts_page_shows_when_each_message_was_sent_and_a_preview(rt: Runtime, client: TestClient) -> None:
    user(rt, "office", "office")
    sent = datetime(2024, 12, 31, 9, 30, tzinfo=timezone.utc)
    with session_scope(rt.session_factory) as s:
        message_id = s.scalar(insert(OutboxMessage).values(
            key="view:sent", kind="red_notice", channel="email", recipient="leader@example.org", recipient_name="王建国",
            subject="【红牌提醒】测试项目1", body_text="项目已挂红牌。", body_html="<p>项目已挂<b>红牌</b></p>",
            payload={}, status="sent", attempts=1, next_attempt_at=sent, created_at=sent, sent_at=sent,
        ).returning(OutboxMessage.id))
    login(client, "office")
    listing = client.get("/alerts").text
    assert "发送时间" in listing and "2024-12-31 09:30" in listing and f'href="/alerts/{message_id}"' in listing
    preview = client.get(f"/alerts/{message_id}")
    assert preview.status_code == 200 and "项目已挂红牌。" in preview.text
    assert f'src="/alerts/{message_id}/body.html"' in preview.text
    body = client.get(f"/alerts/{message_id}/body.html")
    assert body.text == "<p>项目已挂<b>红牌</b></p>"
    assert "sandbox" in body.headers["content-security-policy"] and "script" not in body.headers["content-security-policy"]


def test_the_leader_page_compares_with_the_previous_reviews_digest_day(rt: Runtime, client: TestClient) -> None:
    """SPEC §9: the changes since the last review compare with the day the previous review's digest
    described (its digest day, 2024-10-24 for the review of 2024-10-31), not the review date. Project
    7, planned to start on 2024-08-28 and not started, was 57 days late (yellow) on 2024-10-24 and 64
    days late (red) on 2024-10-31: against the digest day it turned red; against the review date it
    did not change."""
    from pipeline.ingest.record import record_batch
    from pipeline.tasks.dispatch import apply_inline
    from tests.factories import row

    late = {"nature": "新开工", "planned_start": date(2024, 8, 28), "actual_start": None, "stats_included_on": None,
            "ytd_completed": None, "cumulative_completed": None, "leader": LEADER_B, "unit": UNIT_B}
    rows = [row(7, name="逾期开工项目", as_of=date(2024, 10, 20), **late),
            row(7, name="逾期开工项目", as_of=date(2024, 12, 31), **late)]
    with session_scope(rt.session_factory) as session:
        batch = record_batch(session, source="file", filename="t.xlsx", content_sha256=None, total_rows=len(rows),
                             rows=rows, errors=[], clock=rt.clock).batch_id
    apply_inline(rt, [batch])
    user(rt, "office", "office")
    login(client, "office")
    page = client.get(f"/leaders/{LEADER_B}")
    assert page.status_code == 200
    heading, changes = page.text.split("以来的挂牌变化", 1)
    assert "逾期开工项目" in changes, changes
    item = changes[changes.index("逾期开工项目"):]
    item = item[:item.index("</li>")]
    assert re.search(r"黄牌</span>\s*→\s*<span[^>]*>红牌", item), item
    assert "自上次述职（2024年10月31日，挂牌截至2024年10月24日）" in heading  # both dates named
