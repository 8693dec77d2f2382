"""Time the reserve as of a date and the trend on a reserve of N projects with twelve monthly reports
(PostgreSQL scratch database, the demo repeated; see reserve.py).

    .venv/bin/python bench/as_of.py [N]     (default 20,000)

Prints: the nightly run that closes the twelve month ends (month flags and their trend) and flags
the reserve; `flags --as-of` (evaluated and staged, then read back sorted by code) at a date
between reports and at a month end; one month end's trend computed; the trend of the twelve month
ends computed again (median of RUNS), beside its floor: the raw read of the same facts (a COPY of
every project with its county, industry and leader and every applied report dated on or before
each month end, and of the lists); a grouping's trend read; the load average.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import reserve  # noqa: E402
from pipeline.as_of import stage_flags_as_of, staged_flag_lines  # noqa: E402
from pipeline.db import make_engine, session_scope  # noqa: E402
from pipeline.runtime import Runtime  # noqa: E402
from pipeline.settings import load_settings  # noqa: E402
from pipeline.months import month_end_of  # noqa: E402
from pipeline.trends import fill_trends, trend  # noqa: E402

MONTH_ENDS = tuple(month_end_of(date(2024, m, 1)) for m in range(1, 13))
RUNS = 3
FLOOR_SQL = """
    SELECT p.id, p.county, p.industry, l.name, u.as_of, u.annual_plan, u.planned_start, u.planned_completion,
           u.actual_start, u.actual_completion, u.stats_included_on, u.cumulative_completed, u.ytd_completed,
           u.needs_coordination, u.problems
    FROM projects p LEFT JOIN leaders l ON l.id = p.leader_id JOIN status_updates u ON u.project_code = p.code
    WHERE u.status = 'applied' AND u.as_of <= DATE '{day}'"""


def read_floor(url: str) -> float:
    """The raw read of what the trend's rates read for the twelve month ends."""
    from run import _psycopg

    with _psycopg(url) as conn, conn.cursor() as cur:
        started = time.perf_counter()
        for sql in [FLOOR_SQL.format(day=day.isoformat()) for day in MONTH_ENDS] + [
                "SELECT project_id, list_name FROM project_lists"] * len(MONTH_ENDS):
            with cur.copy(f"COPY ({sql}) TO STDOUT WITH (FORMAT csv)") as copy:
                for _ in copy:
                    pass
        return time.perf_counter() - started


def timed_trend_fill(rt: Runtime) -> float:
    started = time.perf_counter()
    with session_scope(rt.session_factory) as session:
        fill_trends(session, MONTH_ENDS, now=rt.clock.now())
    return time.perf_counter() - started


def seconds(since: float) -> str:
    return f"{time.perf_counter() - since:.2f} s"


def main(n: int) -> None:
    with reserve.scratch_databases() as make:
        url = make()
        engine = make_engine(url)
        reserve.load(engine, reserve.reports(n, range(1, 13)))
        engine.dispose()
        rt = Runtime(load_settings(data_dir=Path(reserve.scratch_dir("as-of-")), database_url=url, as_of=date(2024, 12, 31)))
        try:
            t = time.perf_counter()
            rt.reflag_reserve()
            print(f"{n} projects: nightly run (12 month ends closed with their trend, then flagged): {seconds(t)}")
            for day in (date(2024, 6, 28), date(2024, 12, 31)):
                t = time.perf_counter()
                with session_scope(rt.session_factory) as session:
                    stage_flags_as_of(session, day, scheme=rt.scheme, compiled=rt.compiled,
                                      chunk_size=rt.settings.reflag_chunk_size)
                    lines = sum(1 for _ in staged_flag_lines(session, day))
                print(f"flags as of {day} ({lines} lines, sorted by code): {seconds(t)}")
            t = time.perf_counter()
            with session_scope(rt.session_factory) as session:
                fill_trends(session, [date(2024, 6, 30)], now=rt.clock.now())
            print(f"trend of one month end, every grouping: {seconds(t)}")
            load = os.getloadavg()[0]
            fill = statistics.median(timed_trend_fill(rt) for _ in range(RUNS))
            floor = statistics.median(read_floor(url) for _ in range(RUNS))
            print(f"trend of the twelve month ends, every grouping: {fill:.2f} s (median of {RUNS}); raw read floor "
                  f"{floor:.2f} s (×{fill / floor:.1f}); load average {load:.2f}")
            t = time.perf_counter()
            with session_scope(rt.session_factory) as session:
                points = trend(session, group_by="county")
            print(f"trend read, by county ({len(points)} points): {seconds(t)}")
        finally:
            rt.dispose()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000)
