"""Digest planning for one review on a large reserve (issue 9.5/9.6: 100,000 projects and 30
leaders ≤ 10 s on PostgreSQL).

The reserve: N projects made from the demo with their September to December reports (the demo's
30 leaders, each answering for N/30 projects), month ends closed and flags written (setup, not
timed). The timed run plans the review of 2024-12-31 in a process of its own, warmed up as a
long-lived scheduler is: every leader's digest and the office digest, as of the digest day
(2024-12-24) against the previous review's (2024-10-24), rendered (text, HTML, markdown, xlsx) and
written to the outbox; then rolled back, so each run plans the same. The floor is the raw read of
the same data: a COPY out of every project with its unit, leader and every applied report dated on
or before each of the two days.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import date

import reserve
from pipeline.db import make_engine

AS_OF = date(2024, 12, 31)
REVIEW = date(2024, 12, 31)
MONTHS = (9, 10, 11, 12)
SIZE = 100_000
TARGET_S = 10.0

FLOOR_SQL = """
    SELECT p.id, p.code, p.name, p.county, un.name, l.name, u.as_of, u.annual_plan, u.planned_start,
           u.planned_completion, u.actual_start, u.actual_completion, u.stats_included_on, u.cumulative_completed,
           u.ytd_completed, u.needs_coordination, u.problems
    FROM projects p LEFT JOIN units un ON un.id = p.unit_id LEFT JOIN leaders l ON l.id = p.leader_id
    JOIN status_updates u ON u.project_code = p.code
    WHERE u.status = 'applied' AND u.as_of <= DATE '{day}'"""


def digest_reserve(make: Callable[..., str], n: int) -> str:
    from run import child

    url = make()
    engine = make_engine(url)
    reserve.load(engine, reserve.reports(n, MONTHS))
    engine.dispose()
    child("reflag", url, AS_OF.isoformat())  # closes the month ends, writes the flags: setup, not timed
    return url


def _digest_child(url: str, review: str) -> None:
    from sqlalchemy import func, select

    from pipeline.alerts.planning import plan_review
    from pipeline.alerts.recipients import Contact, RecipientsConfig
    from pipeline.models import Leader, OutboxAttachment, Project
    from pipeline.runtime import Runtime
    from pipeline.settings import load_settings
    from figures import peak_rss_mb
    from run import warm_up

    rt = Runtime(load_settings(database_url=url, as_of=AS_OF))
    warm_up(rt, AS_OF)
    calendar = rt.review_calendar
    session = rt.session_factory()
    leaders = session.scalars(select(Leader.name).order_by(Leader.id)).all()
    projects = session.scalar(select(func.count()).select_from(Project))
    ctx = replace(rt.alert_context(), recipients=RecipientsConfig(
        office=Contact(name="投资科", email="office@bench.example"),
        leaders={name: Contact(email=f"leader{i}@bench.example") for i, name in enumerate(leaders)}))
    session.rollback()
    started = time.perf_counter()
    messages = plan_review(session, review=date.fromisoformat(review), calendar=calendar, current=AS_OF, ctx=ctx)
    took = time.perf_counter() - started
    attached = session.scalar(select(func.sum(func.length(OutboxAttachment.content))))
    session.rollback()
    session.close()
    rt.dispose()
    print(json.dumps({"seconds": took, "messages": messages, "leaders": len(leaders), "projects": projects,
                      "attachment_bytes": attached, "rss_mb": peak_rss_mb()}))


def read_floor(url: str, days: tuple[date, ...]) -> float:
    from run import _psycopg

    with _psycopg(url) as conn, conn.cursor() as cur:
        started = time.perf_counter()
        for day in days:
            with cur.copy(f"COPY ({FLOOR_SQL.format(day=day.isoformat())}) TO STDOUT WITH (FORMAT csv)") as copy:
                for _ in copy:
                    pass
        return time.perf_counter() - started


def bench_digest(make: Callable[..., str], out: dict, n: int = SIZE, runs: int = 2) -> None:
    from pipeline.alerts.review_data import digest_dates
    from pipeline.runtime import Runtime
    from pipeline.settings import load_settings
    from run import child, load_average

    url = digest_reserve(make, n)
    load = load_average()
    results = [child("digest", url, REVIEW.isoformat()) for _ in range(runs)]
    rt = Runtime(load_settings(database_url=url))
    dates = digest_dates(rt.review_calendar, REVIEW)
    rt.dispose()
    floor = statistics.median(read_floor(url, (dates.day, dates.previous_day)) for _ in range(runs))
    took = statistics.median(r["seconds"] for r in results)
    first = results[0]
    key = "digest_plan_100k" if n == SIZE else f"digest_plan_{n}"
    out[f"{key}_s"], out[f"{key}_floor_s"] = round(took, 3), round(floor, 3)
    out[f"{key}_rss_mb"] = round(max(r["rss_mb"] for r in results), 1)
    print(f"digest planning, review {REVIEW} (as of {dates.day} against {dates.previous_day}), {first['projects']:,} "
          f"projects, {first['leaders']} leaders → {first['messages']} messages, "
          f"{(first['attachment_bytes'] or 0) / 1e6:.1f} MB of xlsx: {took:.2f} s (target ≤ {TARGET_S:.0f} s); "
          f"raw read floor {floor:.2f} s (×{took / floor:.1f}); peak RSS {out[f'{key}_rss_mb']:.0f} MB; "
          f"load average {load:.2f}", flush=True)


__all__ = ["bench_digest"]


if __name__ == "__main__":  # python bench/digest.py [N]: this figure alone
    import sys

    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
    figures: dict = {}
    with reserve.scratch_databases() as make:
        bench_digest(make, figures, int(sys.argv[1]) if len(sys.argv) > 1 else SIZE)
    print(json.dumps(figures, ensure_ascii=False))
