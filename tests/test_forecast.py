"""The forecast (预警, SPEC §10) against hand-worked cases at every band edge, on both schemes.

Unless a test says otherwise: D = 2024-05-31, the next review R = 2024-06-28 (the last working
day of June 2024), the end of the month before R is 2024-05-31 = D, so ESCALATED at R reads the
base flag there computed the same way (报告期 moved, ytd scaled by f(M)/f(D) = 1).
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from pipeline.db import session_scope
from pipeline.errors import ActionRefused
from pipeline.forecast import ForecastItem, forecast, ytd_scale
from pipeline.ingest.record import record_batch
from pipeline.models import Leader
from pipeline.rules import load_scheme, time_progress
from pipeline.runtime import Runtime
from tests.factories import code, row

D = date(2024, 5, 31)
R = date(2024, 6, 28)
NOT_STARTED = {"nature": "新开工", "actual_start": None, "stats_included_on": None,
               "cumulative_completed": Decimal(0), "ytd_completed": Decimal(0)}
ON_PACE = {"ytd_completed": Decimal(6000)}  # 6000 of 12000 by May 31: ratio 1.2, green everywhere


def load(rt: Runtime, *rows: Any) -> None:
    """Record and apply the rows, one batch per 报告期 (oldest first)."""
    for day in sorted({r.as_of for r in rows}):
        batch = [r for r in rows if r.as_of == day]
        with session_scope(rt.session_factory) as s:
            batch_id = record_batch(s, source="file", filename=None, content_sha256=None, total_rows=len(batch),
                                    rows=batch, errors=[], clock=rt.clock).batch_id
        rt.apply_delivered(batch_id)


def run(rt: Runtime, *, as_of: date = D, review: date | None = None, scheme: str | None = None,
        leader: str | None = None) -> dict[str, ForecastItem]:
    chosen = load_scheme(scheme, config_dir=rt.settings.config_dir) if scheme else rt.scheme
    with session_scope(rt.session_factory) as s:
        leader_id = s.scalar(select(Leader.id).where(Leader.name == leader)) if leader else None
        items = forecast(s, scheme=chosen, calendar=rt.review_calendar, as_of=as_of, review=review,
                         leader_id=leader_id, chunk_size=100)
    assert [i.code for i in items] == sorted(i.code for i in items)
    return {i.code: i for i in items}


def reasons(item: ForecastItem) -> list[tuple[str, str, str]]:
    return [(r["code"], r["color"], r["message"]) for r in item.reasons]


def test_jingzhou_at_every_edge_when_d_is_the_month_end_before_the_review(any_runtime: Runtime) -> None:
    load(
        any_runtime,
        # START_OVERDUE: 32 days late now (yellow); 60 days on R (still yellow), so yellow at the
        # month end and at R: ESCALATED makes it red.
        row(1, as_of=D, planned_start=R - timedelta(days=60), **NOT_STARTED),
        # 61 days on R: red by START_OVERDUE itself, no ESCALATED (the base is red, not yellow).
        row(2, as_of=D, planned_start=R - timedelta(days=61), **NOT_STARTED),
        # Completed, waiting for the statistics 30 days after its start: green now, 58 days on R:
        # yellow by NOT_IN_STATS only (its overdue completion and its pace no longer count).
        row(3, as_of=D, actual_start=date(2024, 5, 1), actual_completion=date(2024, 5, 20), stats_included_on=None,
            planned_completion=date(2024, 3, 31), ytd_completed=Decimal(0)),
        # Completed, 31 days since start now (yellow), 59 on R (yellow): ESCALATED does not judge a
        # completed project, so it stays yellow and is not listed.
        row(4, as_of=D, actual_start=date(2024, 4, 30), actual_completion=date(2024, 5, 20), stats_included_on=None,
            ytd_completed=Decimal(0)),
        # Needs coordination, first reported now: yellow now, yellow at the month end, so red on R.
        row(5, as_of=D, needs_coordination=True, problems="征地拆迁未完成", **ON_PACE),
        # Pace ratio exactly 0.8 now (4000 of 12000 × 5/12): green; scaled by f(R)/f(D), still 0.8.
        row(6, as_of=D, ytd_completed=Decimal(4000)),
        # Pace ratio exactly 0.6 now: yellow; yellow at the month end and on R: red by ESCALATED.
        row(7, as_of=D, ytd_completed=Decimal(3000)),
        # Just under 0.6: red already, not listed.
        row(8, as_of=D, ytd_completed=Decimal("2999.99")),
        # A report older than D: STALE would fire now (yellow at 46 days) but not on R (reports
        # keep arriving), and its pace is fine: not worse.
        row(9, as_of=date(2024, 4, 15), ytd_completed=Decimal(6000)),
        # On pace, nothing wrong: green to green.
        row(10, as_of=D, **ON_PACE),
    )
    found = run(any_runtime)
    assert sorted(found) == [code(n) for n in (1, 2, 3, 5, 7)]
    assert {c: (i.flag_now, i.flag_at_review) for c, i in found.items()} == {
        code(1): ("yellow", "red"), code(2): ("yellow", "red"), code(3): ("green", "yellow"),
        code(5): ("yellow", "red"), code(7): ("yellow", "red"),
    }
    assert reasons(found[code(1)]) == [
        ("ESCALATED", "red", "上月末（2024-05-31）与截至2024-06-28均为黄牌，连续黄牌升级为红牌"),
        ("START_OVERDUE", "yellow", "计划2024-04-29开工，截至2024-06-28已逾期60天未开工"),
    ]
    assert reasons(found[code(2)]) == [("START_OVERDUE", "red", "计划2024-04-28开工，截至2024-06-28已逾期61天未开工")]
    assert reasons(found[code(3)]) == [("NOT_IN_STATS", "yellow", "2024-05-01实际开工，截至2024-06-28已开工58天仍未入统")]
    assert [r[0] for r in reasons(found[code(5)])] == ["ESCALATED", "NEEDS_COORDINATION"]
    assert [r[0] for r in reasons(found[code(7)])] == ["ESCALATED", "BEHIND_PACE"]
    item = found[code(1)]
    assert (item.name, item.leader, item.as_of, item.review) == ("测试项目1", "王建国", D, R)
    assert item.to_json() == {"code": code(1), "as_of": "2024-05-31", "review": "2024-06-28", "flag_now": "yellow",
                              "flag_at_review": "red", "reasons": item.reasons}


def test_escalated_reads_the_real_month_end_when_it_is_before_d(sqlite_runtime: Runtime) -> None:
    """D = 2024-06-14 lies in R's month: the month end before R (May 31) is before D, so ESCALATED
    reads the base flag the real May report gave, not one made from June's report."""
    june = date(2024, 6, 14)
    load(
        sqlite_runtime,
        row(1, as_of=D, **ON_PACE),  # green in May ...
        row(1, as_of=june, needs_coordination=True, problems="用地未批", **ON_PACE),  # ... yellow now: stays yellow
        row(2, as_of=D, needs_coordination=True, problems="用地未批", **ON_PACE),  # yellow in May ...
        row(2, as_of=june, **ON_PACE),  # ... green now, green on R
        # First reported in June, 46 days late now: yellow; 60 on R: yellow (no May flag): not listed.
        row(3, as_of=june, planned_start=R - timedelta(days=60), **NOT_STARTED),
        # 61 days on R: red.
        row(4, as_of=june, planned_start=R - timedelta(days=61), **NOT_STARTED),
    )
    found = run(sqlite_runtime, as_of=june)
    assert sorted(found) == [code(4)]
    assert (found[code(4)].flag_now, found[code(4)].flag_at_review) == ("yellow", "red")


def test_review_in_the_next_year_does_not_scale_the_ytd(sqlite_runtime: Runtime) -> None:
    """D = 2024-12-31, R = 2025-04-30: no scaling, the year's ytd stands as reported."""
    dec = date(2024, 12, 31)
    review = date(2025, 4, 30)
    load(
        sqlite_runtime,
        # Pace ratio 0.7 at year end (first report: yellow now). Unscaled on R: 8400 of 12000 × 4/12
        # is 2.1, green, so it is not listed (scaled it would stay 0.7: yellow twice, red).
        row(1, as_of=dec, ytd_completed=Decimal(8400)),
        # Planned to start on 2025-01-15: green now, 105 days late on R: red.
        row(2, as_of=dec, planned_start=date(2025, 1, 15), planned_completion=date(2026, 12, 31), **NOT_STARTED),
    )
    assert ytd_scale(dec, review) is None
    found = run(sqlite_runtime, as_of=dec, review=review)
    assert sorted(found) == [code(2)]
    assert reasons(found[code(2)]) == [("START_OVERDUE", "red", "计划2025-01-15开工，截至2025-04-30已逾期105天未开工")]


def test_the_default_review_in_the_next_year(sqlite_runtime: Runtime) -> None:
    """From the last review of 2024, the next is the last working day of February 2025."""
    dec = date(2024, 12, 31)
    load(sqlite_runtime, row(1, as_of=dec, planned_start=date(2024, 12, 30), **NOT_STARTED))
    found = run(sqlite_runtime, as_of=dec)
    # 1 day late now (yellow), 60 days on 2025-02-28 (yellow) and yellow on 2025-01-31: red.
    assert [(i.review, i.flag_now, i.flag_at_review) for i in found.values()] == [(date(2025, 2, 28), "yellow", "red")]


def test_yinchuan_at_every_edge(any_runtime: Runtime) -> None:
    load(
        any_runtime,
        # Delay month 2 now (yellow), month 3 on R (red).
        row(1, as_of=D, planned_start=date(2024, 4, 30), **NOT_STARTED),
        # Delay month 1 now, month 2 on R: yellow to yellow (no ESCALATED here).
        row(2, as_of=D, planned_start=date(2024, 5, 1), **NOT_STARTED),
        # Pace gap on R exactly 10 points: 10680 × f(R) − 3550 × f(R)/f(D) = 1068 (f(R) = 89/180):
        # green now (8.43 points), yellow on R.
        row(3, as_of=D, annual_plan=Decimal(10680), ytd_completed=Decimal(3550)),
        # One 万元 more: just under 10 points on R, green.
        row(4, as_of=D, annual_plan=Decimal(10680), ytd_completed=Decimal(3551)),
        # Completed, 30 days since start now, 58 on R: yellow by NOT_IN_STATS alone.
        row(5, as_of=D, actual_start=date(2024, 5, 1), actual_completion=date(2024, 5, 20), stats_included_on=None,
            ytd_completed=Decimal(0)),
    )
    assert ytd_scale(D, R) == time_progress(R) / time_progress(D)
    found = run(any_runtime, scheme="yinchuan-2025")
    assert sorted(found) == [code(1), code(3), code(5)]
    assert (found[code(1)].flag_now, found[code(1)].flag_at_review) == ("yellow", "red")
    assert reasons(found[code(1)]) == [
        ("START_OVERDUE", "red", "计划2024-04-30开工，截至2024-06-28仍未开工，已进入延期第3个月（逾期59天）")]
    assert (found[code(3)].flag_now, found[code(3)].flag_at_review) == ("green", "yellow")
    (pace,) = found[code(3)].reasons
    assert pace["code"] == "BEHIND_PACE" and pace["values"]["pace_gap"] == 10
    assert [r[0] for r in reasons(found[code(5)])] == ["NOT_IN_STATS"]


def test_one_leaders_projects_and_a_review_not_after_d(sqlite_runtime: Runtime) -> None:
    load(
        sqlite_runtime,
        row(1, as_of=D, planned_start=date(2024, 4, 20), **NOT_STARTED),  # 王建国: 41 days late now, 69 on R
        row(2, as_of=D, planned_start=date(2024, 4, 20), leader="李明", **NOT_STARTED),
    )
    assert sorted(run(sqlite_runtime)) == [code(1), code(2)]
    assert sorted(run(sqlite_runtime, leader="李明")) == [code(2)]
    with pytest.raises(ActionRefused, match="述职日期 2024-05-31 应晚于截至日期 2024-05-31"):
        run(sqlite_runtime, review=D)
