"""The rates read from the database chunk by chunk (pipeline/rates_as_of.py) equal compute_rates over
the same projects built the plain way (tests/rates_oracle.py), for every grouping, on SQLite and on
PostgreSQL, with chunks small enough that their boundaries fall between the projects; as of the
evaluation date and as of past dates, where some projects' newest report is after D and some have
none yet; projects on several lists, on none, with blank and repeated list names, without a leader
or an industry, with a blank county."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import date, timedelta
from decimal import Decimal

import polars as pl
import pytest
from sqlalchemy import text

from pipeline.db import session_scope
from pipeline.ingest.record import record_batch
from pipeline.ingest.template import UpdateRow
from pipeline.rates import CITY_GROUP, GROUPINGS, UNSPECIFIED_GROUP, compute_rates
from pipeline.rates_as_of import rates_as_of, rates_by
from pipeline.runtime import Runtime
from pipeline.tasks.dispatch import apply_inline
from tests.factories import code, row
from tests.rates_oracle import subjects_as_of

PROJECTS = 60
REPORT_DAYS = (date(2024, 3, 31), date(2024, 5, 31), date(2024, 8, 31), date(2024, 12, 31))
DAYS = (date(2024, 12, 31), date(2024, 6, 30), date(2024, 4, 30), date(2024, 3, 31), date(2024, 1, 31))
LISTS = ("亿元以上项目", "省市重点项目", "重大基础设施项目", "国债和专项债项目")
COUNTIES = ("荆州区", "沙市区", "公安县", "监利市")
LEADERS = ("王建国", "李明", "张华", None)
INDUSTRIES = ("先进制造业", "基础设施", None)
CHUNK = 7  # ids per chunk: 60 projects cross eight chunk boundaries


def maybe_day(rng: random.Random, low: date, high: date) -> date | None:
    """A day in [low, high] (None a quarter of the time)."""
    if rng.random() < 0.25 or high < low:
        return None
    return low + timedelta(days=rng.randrange((high - low).days + 1))


def money(rng: random.Random) -> Decimal | None:
    return None if rng.random() < 0.15 else Decimal(rng.randrange(0, 2_000_000)) / 100


def reports_of(rng: random.Random, n: int) -> list[UpdateRow]:
    """Project n's reports on some of REPORT_DAYS (the first from March, May or August: as of an
    earlier day it has none), its dates drawn around 2024 and never after the report's 报告期."""
    first = rng.randrange(3)
    days = [d for d in REPORT_DAYS[first:] if rng.random() < 0.7] or [REPORT_DAYS[-1]]
    lists = tuple(rng.sample(LISTS, rng.choice((0, 0, 1, 2, 3))))
    planned_start = maybe_day(rng, date(2023, 6, 1), date(2025, 3, 1))
    planned_completion = maybe_day(rng, planned_start or date(2023, 9, 1), date(2025, 12, 31))
    master = {"county": rng.choice(COUNTIES), "lists": lists, "leader": rng.choice(LEADERS),
              "industry": rng.choice(INDUSTRIES), "nature": rng.choice(("新开工", "续建")),
              "planned_start": planned_start, "planned_completion": planned_completion}
    out = []
    for day in days:
        started = maybe_day(rng, date(2023, 6, 1), day)
        completed = maybe_day(rng, started, day) if started else None
        stats = maybe_day(rng, started, day) if started else None
        out.append(row(n, as_of=day, actual_start=started, actual_completion=completed, stats_included_on=stats,
                       annual_plan=money(rng), ytd_completed=money(rng), cumulative_completed=None, **master))
    return out


def load(rt: Runtime, batches: list[list[UpdateRow]]) -> None:
    for rows in batches:
        with session_scope(rt.session_factory) as session:
            batch = record_batch(session, source="file", filename="t.xlsx", content_sha256=None,
                                 total_rows=len(rows), rows=rows, errors=[], clock=rt.clock).batch_id
        apply_inline(rt, [batch])


@pytest.fixture
def reserve(any_runtime: Runtime) -> Runtime:
    """PROJECTS projects; project 1 reported twice for 2024-05-31 (the later arrival wins); then,
    straight into the reserve, list names with blanks around them, repeated once trimmed, and blank;
    a blank county."""
    rng = random.Random(2024)
    reports = [r for n in range(1, PROJECTS + 1) for r in reports_of(rng, n)]
    again = replace(next(r for r in reports if r.code == code(1)), as_of=date(2024, 5, 31),
                    actual_start=date(2024, 5, 1), planned_start=date(2024, 4, 1), annual_plan=Decimal("777.77"))
    load(any_runtime, [reports, [again]])
    with session_scope(any_runtime.session_factory) as session:
        ids = {c: i for i, c in session.execute(text("SELECT id, code FROM projects"))}
        session.execute(text("INSERT INTO project_lists (project_id, list_name) VALUES "
                             "(:a, ' 省市重点项目 '), (:a, '省市重点项目'), (:b, '  '), (:c, ' 新清单')"),
                        {"a": ids[code(2)], "b": ids[code(3)], "c": ids[code(4)]})
        session.execute(text("DELETE FROM project_lists WHERE project_id = :b AND list_name <> '  '"),
                        {"b": ids[code(3)]})
        session.execute(text("UPDATE projects SET county = '  ', leader_id = NULL, industry = NULL WHERE id = :e"),
                        {"e": ids[code(5)]})
    return any_runtime


def test_every_grouping_equals_compute_rates_as_of_each_day(reserve: Runtime) -> None:
    rt = reserve
    order = rt.reference.order_for
    with session_scope(rt.session_factory) as session:
        for day in DAYS:
            subjects = subjects_as_of(session, day)
            every = rates_by(session, day, GROUPINGS, order=order, chunk_size=CHUNK)
            assert list(every) == list(GROUPINGS)
            for by in GROUPINGS:
                expected = compute_rates(subjects, as_of=day, by=by, order=order(by))
                assert every[by] == expected, (day, by)
                assert rates_as_of(session, day, by=by, order=order(by), chunk_size=CHUNK) == expected, (day, by)
            assert rates_as_of(session, day, by="list", order=order("list")) == every["list"]  # one chunk
    # The data reach every case the rates must get right (so the equalities above say something).
    with session_scope(rt.session_factory) as session:
        now, past, early = (subjects_as_of(session, d) for d in (date(2024, 12, 31), date(2024, 4, 30),
                                                                 date(2024, 1, 31)))
        lists = {g.group: g.projects for g in rates_as_of(session, date(2024, 12, 31), by="list")}
    assert early == [] and 0 < len(past) < len(now) == PROJECTS  # none, some and all reported by D
    reported_later = {s.facts.code for s in now if s.facts.as_of > date(2024, 4, 30)}
    assert {s.facts.code for s in past} & reported_later  # the newest report by D is not the newest
    assert {"省市重点项目", "新清单", UNSPECIFIED_GROUP} <= set(lists) and "" not in lists


def test_an_empty_reserve_and_a_day_before_every_report(any_runtime: Runtime) -> None:
    rt = any_runtime
    with session_scope(rt.session_factory) as session:
        every = rates_by(session, date(2024, 12, 31), chunk_size=CHUNK)
    assert every == {by: compute_rates([], as_of=date(2024, 12, 31), by=by) for by in GROUPINGS}
    assert [g.group for g in every["city"]] == [CITY_GROUP] and every["county"] == []


def test_among_keeps_only_the_projects_a_user_may_see(reserve: Runtime) -> None:
    """A leader's (or a unit's) rates: compute_rates over their projects alone."""
    rt = reserve
    day = date(2024, 6, 30)
    with session_scope(rt.session_factory) as session:
        leader_id, leader = session.execute(text(
            "SELECT id, name FROM leaders WHERE name = '李明'")).one()
        mine = [s for s in subjects_as_of(session, day) if s.leader == leader]
        assert mine
        for by in GROUPINGS:
            assert rates_as_of(session, day, by=by, among=pl.col("leader_id") == leader_id, chunk_size=CHUNK) == \
                compute_rates(mine, as_of=day, by=by), by
        assert rates_as_of(session, day, among=pl.col("unit_id") == -1) == compute_rates([], as_of=day)


def test_an_unknown_grouping_is_refused(any_runtime: Runtime) -> None:
    with session_scope(any_runtime.session_factory) as session, pytest.raises(ValueError, match="unit"):
        rates_by(session, date(2024, 12, 31), ("county", "unit"))
