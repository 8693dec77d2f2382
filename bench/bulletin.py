"""The monthly bulletin 通报 on a large reserve:
`.venv/bin/python bench/bulletin.py [--n 20000] [--runs 3] [--json]`.

Loads N projects (the demo repeated, twelve monthly reports each) into a scratch PostgreSQL database
and times ``gather_bulletin`` for June 2024 (beside May) twice: with the month ends not closed (the
red shares evaluated as of each month end, chunk by chunk) and after the nightly run has closed them
(the red shares read from the month flags). The rates of both month ends are computed either way.
Each figure is the median of ``--runs`` runs; the load average is printed with them.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))

import reserve  # noqa: E402
from pipeline.bulletin import gather_bulletin  # noqa: E402
from pipeline.db import make_engine, session_scope  # noqa: E402
from pipeline.runtime import Runtime  # noqa: E402
from pipeline.settings import load_settings  # noqa: E402

MONTH = date(2024, 6, 30)
AS_OF = date(2024, 12, 31)


def timed_bulletin(rt: Runtime) -> tuple[float, int]:
    started = time.perf_counter()
    with session_scope(rt.session_factory) as session:
        b = gather_bulletin(session, MONTH, scheme=rt.scheme, compiled=rt.compiled,
                            order=rt.reference.order_for("county"), chunk_size=rt.settings.reflag_chunk_size)
    return time.perf_counter() - started, sum(line.projects for line in b.lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    out: dict[str, object] = {"projects": args.n, "month": MONTH.isoformat()}

    def median(rt: Runtime) -> tuple[float, int]:
        runs = [timed_bulletin(rt) for _ in range(args.runs)]
        return statistics.median(took for took, _ in runs), runs[0][1]

    with reserve.scratch_databases() as make:
        url = make()
        engine = make_engine(url)
        reserve.load(engine, reserve.reports(args.n, range(1, 13)))
        engine.dispose()
        rt = Runtime(load_settings(database_url=url, as_of=AS_OF))
        out["load_average"] = os.getloadavg()[0]
        out["open_months_seconds"], out["counted"] = median(rt)
        started = time.perf_counter()
        rt.reflag_reserve(as_of=AS_OF)  # closes January to December: setup, timed for reference only
        out["close_twelve_months_seconds"] = time.perf_counter() - started
        out["closed_months_seconds"], _ = median(rt)
        rt.dispose()
    if args.json:
        print(json.dumps(out))
        return
    print(f"通报 {MONTH:%Y-%m}，{args.n} 个项目（计入 {out['counted']} 个）")
    print(f"  月末未关账（逐块评估红牌）：{out['open_months_seconds']:.2f} 秒")
    print(f"  月末已关账（读取月度挂牌）：{out['closed_months_seconds']:.2f} 秒")
    print(f"  （关账十二个月的整体重评：{out['close_twelve_months_seconds']:.2f} 秒）")
    print(f"  （各取 {args.runs} 次的中位数；负载 {out['load_average']:.2f}）")


if __name__ == "__main__":
    main()
