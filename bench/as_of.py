"""Time the reserve as of a date and the trend on a reserve of N projects with twelve monthly reports
(PostgreSQL scratch database, the demo repeated; see reserve.py).

    .venv/bin/python bench/as_of.py [N]     (default 20,000)

Prints: the nightly run that closes the twelve month ends (month flags and their trend) and flags
the reserve; `flags --as-of` (evaluated and staged, then read back sorted by code) at a date
between reports and at a month end; one month end's trend computed; a grouping's trend read.
"""

from __future__ import annotations

import sys
import tempfile
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
from pipeline.trends import fill_trends, trend  # noqa: E402


def seconds(since: float) -> str:
    return f"{time.perf_counter() - since:.2f} s"


def main(n: int) -> None:
    with reserve.scratch_databases() as make:
        url = make()
        engine = make_engine(url)
        reserve.load(engine, reserve.reports(n, range(1, 13)))
        engine.dispose()
        rt = Runtime(load_settings(data_dir=Path(tempfile.mkdtemp()), database_url=url, as_of=date(2024, 12, 31)))
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
            t = time.perf_counter()
            with session_scope(rt.session_factory) as session:
                points = trend(session, group_by="county")
            print(f"trend read, by county ({len(points)} points): {seconds(t)}")
        finally:
            rt.dispose()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000)
