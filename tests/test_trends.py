"""The trend (SPEC §9): each group's red, yellow and green counts and three rates at every month end,
kept in month_trends: filled when the nightly run closes the months, equal to the month flags'
counts and to compute_rates as of each month end, kept (not recomputed per request), dropped and
computed again after a late report changes a past month; drawn on the overview and a leader's page."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from datetime import date, datetime, timezone
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from pipeline.db import session_scope
from pipeline.demo import generate_demo
from pipeline.ingest.record import record_batch
from pipeline.models import Leader, MonthFlag, MonthTrend, Project, ProjectList
from pipeline.rates import CITY_GROUP, GROUPINGS, UNSPECIFIED_GROUP, compute_rates
from pipeline.runtime import Runtime
from pipeline.tasks.dispatch import apply_inline
from pipeline.trends import missing_months, trend
from pipeline.web import create_app
from tests.rates_oracle import subjects_as_of
from tests.web_support import bearer, demo_loaded, login, user

LATER = datetime(2025, 1, 2, 9, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def rt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    with demo_loaded(tmp_path_factory.mktemp("trends")) as runtime:
        yield runtime


def month_ends(rt: Runtime) -> list[date]:
    with session_scope(rt.session_factory) as session:
        return list(session.scalars(select(MonthFlag.month_end).distinct().order_by(MonthFlag.month_end)))


def counted(session: Session, month_end: date, by: str) -> dict[str, Counter[str]]:
    """The month flags of ``month_end`` counted per group, in Python from the ORM rows."""
    rows = session.execute(
        select(MonthFlag.project_id, MonthFlag.computed_color, Project.county, Project.industry, Leader.name)
        .join(Project, Project.id == MonthFlag.project_id).join(Leader, Leader.id == Project.leader_id, isouter=True)
        .where(MonthFlag.month_end == month_end)).all()
    lists: dict[int, set[str]] = {}
    for pid, name in session.execute(select(ProjectList.project_id, ProjectList.list_name)):
        lists.setdefault(pid, set()).add(name.strip())
    out: dict[str, Counter[str]] = {}
    for pid, colour, county, industry, leader in rows:
        groups = {"city": [CITY_GROUP], "county": [county], "industry": [industry or UNSPECIFIED_GROUP],
                  "leader": [leader or UNSPECIFIED_GROUP],
                  "list": sorted(lists.get(pid) or {UNSPECIFIED_GROUP})}[by]
        for g in groups:
            out.setdefault(g, Counter())[colour] += 1
    return out


def assert_trend_is_the_month_flags_and_the_rates(rt: Runtime, months: list[date]) -> None:
    with session_scope(rt.session_factory) as session:
        kept = {by: trend(session, group_by=by, months=None) for by in GROUPINGS}
        for month_end in months:
            subjects = subjects_as_of(session, month_end)
            for by in GROUPINGS:
                points = {p.group: p for p in kept[by] if p.month_end == month_end}
                rates = {g.group: g.to_json() for g in compute_rates(subjects, as_of=month_end, by=by)}
                counts = counted(session, month_end, by)
                assert set(points) == set(rates) == set(counts), (month_end, by)
                for group, p in points.items():
                    assert p.rates.to_json() == rates[group], (month_end, by, group)
                    c = counts[group]
                    assert (p.red, p.yellow, p.green) == (c["red"], c["yellow"], c["green"]), (month_end, by, group)


def test_the_nightly_close_fills_the_trend_of_every_month(rt: Runtime) -> None:
    months = month_ends(rt)
    assert len(months) == 12 and months[-1] == date(2024, 12, 31)
    with session_scope(rt.session_factory) as session:
        assert missing_months(session) == months  # loading the reports keeps no trend yet
    rt.reflag_reserve()
    with session_scope(rt.session_factory) as session:
        assert missing_months(session) == []
        city = trend(session, group_by="city", group=CITY_GROUP)
    assert [p.month_end for p in city] == months
    assert len({(p.red, p.yellow, p.green) for p in city}) > 6  # it moved over the year
    assert_trend_is_the_month_flags_and_the_rates(rt, months)


def test_the_trend_is_kept_not_recomputed_per_request(rt: Runtime) -> None:
    with session_scope(rt.session_factory) as session:
        before = dict(session.execute(select(MonthTrend.month_end, func.max(MonthTrend.computed_at))
                                      .group_by(MonthTrend.month_end)).tuples().all())
        trend(session, group_by="county", now=LATER)
        after = dict(session.execute(select(MonthTrend.month_end, func.max(MonthTrend.computed_at))
                                     .group_by(MonthTrend.month_end)).tuples().all())
    assert before == after and len(after) == 12


def test_a_late_report_drops_the_months_it_changes_and_they_come_back_right(rt: Runtime) -> None:
    months = month_ends(rt)
    reserve = generate_demo(seed=2024, reference=rt.reference)
    march = reserve.reports[2]
    with session_scope(rt.session_factory) as session:
        green = set(session.scalars(select(Project.code).join(MonthFlag, MonthFlag.project_id == Project.id)
                                    .where(MonthFlag.month_end == date(2024, 3, 31),
                                           MonthFlag.computed_color == "green")))
    row = next(r for r in march if r.code in green and not r.needs_coordination)
    late = replace(row, needs_coordination=True, problems="征地未完成，需协调")  # same 报告期, later: it wins
    with session_scope(rt.session_factory) as session:
        before = trend(session, group_by="city", group=CITY_GROUP)
        batch = record_batch(session, source="file", filename="补报.xlsx", content_sha256=None, total_rows=1,
                             rows=[late], errors=[], clock=rt.clock).batch_id
    apply_inline(rt, [batch])
    with session_scope(rt.session_factory) as session:
        assert missing_months(session) == months[2:]  # March on: dropped; January and February kept
        after = trend(session, group_by="city", group=CITY_GROUP, now=LATER)
    march_before, march_after = before[2], after[2]
    assert (march_after.green, march_after.yellow) == (march_before.green - 1, march_before.yellow + 1)
    assert after[:2] == before[:2]
    assert_trend_is_the_month_flags_and_the_rates(rt, months)


def test_the_overview_and_the_leader_page_draw_the_trend(rt: Runtime) -> None:
    user(rt, "office-trend", "office")
    token = user(rt, "office-trend-api", "office")
    with session_scope(rt.session_factory) as session:
        city = trend(session, group_by="city", group=CITY_GROUP, now=LATER)
        leader = session.scalar(select(Leader.name).order_by(Leader.name).limit(1))
        own = trend(session, group_by="leader", group=leader)
    with TestClient(create_app(rt)) as client:
        login(client, "office-trend")
        data = json.loads(re.search(r'id="trend-data">(.*?)</script>', client.get("/").text, re.S).group(1))
        assert data["months"] == [f"2024年{m}月" for m in range(1, 13)]
        assert data["red"] == [p.red for p in city] and data["green"] == [p.green for p in city]
        page = client.get(f"/leaders/{leader}").text
        mine = json.loads(re.search(r'id="trend-data">(.*?)</script>', page, re.S).group(1))
        assert mine["yellow"] == [p.yellow for p in own] and len(mine["months"]) == 12
        past = client.get("/", params={"as_of": "2024-06-30"}).text
        assert json.loads(re.search(r'id="trend-data">(.*?)</script>', past, re.S).group(1))["months"][-1] == "2024年6月"
        api = client.get("/api/trend", params={"by": "county", "months": 3}, headers=bearer(token)).json()
        assert {p["month_end"] for p in api} == {"2024-10-31", "2024-11-30", "2024-12-31"}
        assert all(set(p) >= {"red", "yellow", "green", "start_rate", "stats_rate", "investment"} for p in api)


def test_on_postgresql_the_close_keeps_the_same_trend(tmp_path: Path, pg_url: str) -> None:
    """COPY into a staging table and INSERT … ON CONFLICT on PostgreSQL: the same figures."""
    with demo_loaded(tmp_path, database_url=pg_url) as runtime:
        runtime.reflag_reserve()
        assert_trend_is_the_month_flags_and_the_rates(runtime, month_ends(runtime))
        with session_scope(runtime.session_factory) as session:
            assert missing_months(session) == []
            session.execute(delete(MonthTrend).where(MonthTrend.month_end == date(2024, 5, 31)))
        with session_scope(runtime.session_factory) as session:
            assert len(trend(session, group_by="city", now=LATER)) == 12  # the missing month computed again
