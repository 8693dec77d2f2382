"""Benchmark (not a test): the backtest (方案试算) over twelve months of a 20,000-project reserve, and
the forecast (预警) over the same reserve, on PostgreSQL. Target (issue 11): the backtest in under
a minute on this machine.

    .venv/bin/python bench/backtest.py [--size 20000] [--runs 3] [--chunk 20000] [--json]

The reserve is the demo's twelve monthly reports (2024) repeated with new codes to ``--size``
projects (bench/reserve.py), written by COPY into a scratch database that is dropped afterwards.
The backtest compares the scheme in force (jingzhou-2024) with yinchuan-2025 at each month end
from 2024-01 to 2024-12, with the changed projects listed (``--projects``, the heavier form). Each
figure is the median of ``--runs`` runs, the first run (cold) beside it; the machine's load
average and core count are printed with them.
"""

from __future__ import annotations

import argparse
import json
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
from pipeline.alerts.calendar import ReviewCalendar, load_review_calendar  # noqa: E402
from pipeline.alerts.holidays import load_working_calendar  # noqa: E402
from pipeline.backtest import backtest, month_ends  # noqa: E402
from pipeline.db import make_engine, make_session_factory, session_scope  # noqa: E402
from pipeline.forecast import forecast  # noqa: E402
from pipeline.rules import load_scheme  # noqa: E402

TARGET_SECONDS = 60.0
MONTHS = month_ends(date(2024, 1, 1), date(2024, 12, 31))
FORECAST_AS_OF = date(2024, 10, 31)  # the December review ahead


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--chunk", type=int, default=20_000)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--check", action="store_true",
                        help="also check each month's counts under both schemes against the re-flag's evaluation")
    args = parser.parse_args()
    config = reserve.CONFIG
    current = load_scheme("jingzhou-2024", config_dir=config)
    candidate = load_scheme("yinchuan-2025", config_dir=config)
    calendar = ReviewCalendar(load_review_calendar(config / "reviews.yaml"),
                              load_working_calendar(config / "holidays.yaml"))
    with reserve.scratch_databases() as make:
        url = make()
        engine = make_engine(url)
        started = time.perf_counter()
        updates = reserve.reports(args.size, range(1, 13))
        reserve.load(engine, updates)
        loaded = time.perf_counter() - started
        factory = make_session_factory(engine)

        def run_backtest() -> tuple[float, list]:
            with session_scope(factory) as s:
                began = time.perf_counter()
                months = backtest(s, current=current, candidate=candidate, months=MONTHS, with_projects=True,
                                  chunk_size=args.chunk)
                took = time.perf_counter() - began
                s.rollback()
            return took, months

        def run_forecast() -> tuple[float, int]:
            with session_scope(factory) as s:
                began = time.perf_counter()
                items = forecast(s, scheme=current, calendar=calendar, as_of=FORECAST_AS_OF, chunk_size=args.chunk)
                took = time.perf_counter() - began
                s.rollback()
            return took, len(items)

        backtests = [run_backtest() for _ in range(args.runs)]
        forecasts = [run_forecast() for _ in range(args.runs)]
        checked = check(factory, backtests[0][1], current, candidate) if args.check else None
        engine.dispose()
    months = backtests[0][1]
    times = [t for t, _ in backtests]
    result = {
        "projects": args.size, "updates": updates.height, "load_seconds": round(loaded, 2),
        "backtest_months": len(MONTHS), "backtest_first_seconds": round(times[0], 2),
        "backtest_median_seconds": round(statistics.median(times), 2), "target_seconds": TARGET_SECONDS,
        "changed_per_month": [m.changed for m in months],
        "december": {"current": months[-1].current, "candidate": months[-1].candidate},
        "forecast_first_seconds": round(forecasts[0][0], 2),
        "forecast_median_seconds": round(statistics.median(t for t, _ in forecasts), 2),
        "forecast_items": forecasts[0][1], "chunk": args.chunk, "checked": checked,
        "load_average": [round(x, 2) for x in os.getloadavg()], "cpus": os.cpu_count(),
    }
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
        return
    ok = "达标" if result["backtest_median_seconds"] < TARGET_SECONDS else "未达标"
    print(f"储备 {args.size} 个项目、{updates.height} 条月报（载入 {loaded:.1f} 秒）")
    print(f"方案试算 jingzhou-2024 对 yinchuan-2025，{len(MONTHS)} 个月末：首次 {times[0]:.2f} 秒，"
          f"中位数 {result['backtest_median_seconds']:.2f} 秒（目标 < {TARGET_SECONDS:.0f} 秒，{ok}）")
    print(f"  各月变化项目数：{result['changed_per_month']}")
    print(f"预警（截至 {FORECAST_AS_OF}，下次述职）：首次 {forecasts[0][0]:.2f} 秒，中位数 "
          f"{result['forecast_median_seconds']:.2f} 秒，{forecasts[0][1]} 个项目")
    if checked is not None:
        print(f"逐月核对（与重新挂牌的评估路径一致）：{'一致' if checked else '不一致'}")
    print(f"机器负载 {result['load_average']}，{result['cpus']} 个 CPU")


def check(factory, months, current, candidate) -> bool:  # type: ignore[no-untyped-def]
    """Each month's counts under both schemes equal those of ``reflag.evaluate_scope`` over the
    whole reserve as of that month end (another path: the previous month's base colour evaluated
    from the stored reports, not chained)."""
    import polars as pl

    from pipeline.reflag import evaluate_scope
    from pipeline.snapshot import Scope

    same = True
    with session_scope(factory) as s:
        for month in months:
            for scheme, counts in ((current, month.current), (candidate, month.candidate)):
                judged = evaluate_scope(s, Scope(), month.month_end, scheme=scheme).filter(pl.col("as_of").is_not_null())
                found = dict(zip(*judged["color"].value_counts().to_dict(as_series=False).values()))
                same &= all(found.get(c, 0) == n for c, n in counts.items())
        s.rollback()
    return same


if __name__ == "__main__":
    main()
