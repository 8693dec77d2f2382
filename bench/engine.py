"""Benchmark (not a test): the columnar rules engine over a large realistic reserve.

    .venv/bin/python bench/engine.py [--n 1000000] [--json]

The demo reserve (1,463 projects, about a quarter flagged as of 2024-12-31) is repeated with new
codes to N projects; its facts frames (now, and the previous month's end for ESCALATED) are built
before the clock starts. Timed: ``evaluate_with_previous`` over the whole frame, reasons JSON text
included (median of several runs), and, on a sample, the per-row oracle (tests/rules_oracle.py)
for comparison. Target: ≥ 1,000,000 project evaluations per second.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.demo.generate import generate_demo  # noqa: E402
from pipeline.facts import ProjectFacts  # noqa: E402
from pipeline.reference import load_reference  # noqa: E402
from pipeline.rules import compile_scheme, facts_frame, load_scheme, previous_month_end  # noqa: E402
from pipeline.settings import REPO_ROOT  # noqa: E402
from tests.rules_oracle import oracle_evaluate_many  # noqa: E402

CONFIG = REPO_ROOT / "config"
AS_OF = date(2024, 12, 31)
TARGET = 1_000_000  # evaluations per second
ORACLE_SAMPLE = 20_000


def demo_items(as_of: date) -> list[tuple[ProjectFacts | None, ProjectFacts | None]]:
    """Each demo project's newest row on or before D and on or before the previous month's end."""
    demo = generate_demo(seed=2024, reference=load_reference(CONFIG))
    month_end = previous_month_end(as_of)
    now: dict[str, ProjectFacts] = {}
    before: dict[str, ProjectFacts] = {}
    for report in demo.reports:
        for row in report:
            facts = row.facts()
            if facts.as_of <= as_of:
                now[facts.code] = facts
            if facts.as_of <= month_end:
                before[facts.code] = facts
    return [(now.get(code), before.get(code)) for code in sorted(now.keys() | before.keys())]


def repeated(frame: pl.DataFrame, n: int) -> pl.DataFrame:
    """``frame`` repeated to ``n`` rows; copies differ in the code's fourth segment (10, 11, ...)."""
    copies = -(-n // frame.height)
    parts = [
        frame.with_columns(pl.concat_str([pl.col("code").str.slice(0, 15), pl.lit(f"{10 + k:02d}"),
                                          pl.col("code").str.slice(17)]).alias("code")) if k else frame
        for k in range(copies)
    ]
    return pl.concat(parts).head(n)


def _median_seconds(fn: Callable[[], object], runs: int) -> tuple[float, float]:
    """Median wall-clock seconds and median CPU seconds (all threads of this process) of ``fn``."""
    wall, cpu = [], []
    for _ in range(runs):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(wall), statistics.median(cpu)


def measure_engine(n: int, *, runs: int = 5, scheme_name: str = "jingzhou-2024") -> dict[str, object]:
    """Time the columnar engine over ``n`` realistic projects and the oracle over a sample."""
    scheme = load_scheme(scheme_name, config_dir=CONFIG)
    compiled = compile_scheme(scheme)
    items = demo_items(AS_OF)
    current = repeated(facts_frame([row for row, _ in items]), n).rechunk()
    previous = repeated(facts_frame([prev for _, prev in items]), n).rechunk()
    result = compiled.evaluate_with_previous(current, previous, AS_OF)  # warm-up, and the flagged share
    flagged = result.filter(pl.col("color") != "green").height
    load = os.getloadavg()[0]
    seconds, cpu_seconds = _median_seconds(lambda: compiled.evaluate_with_previous(current, previous, AS_OF), runs)
    sample = (items * (-(-ORACLE_SAMPLE // len(items))))[:ORACLE_SAMPLE]
    oracle_seconds, _ = _median_seconds(lambda: oracle_evaluate_many(scheme, sample, AS_OF), 3)
    return {
        "scheme": scheme_name,
        "as_of": AS_OF.isoformat(),
        "projects": n,
        "flagged_share": round(flagged / n, 4),
        "runs": runs,
        "engine_seconds": round(seconds, 4),
        "engine_evals_per_s": round(n / seconds),
        "engine_cpu_seconds": round(cpu_seconds, 4),  # both cores' time: what a busy machine cannot hide
        "load_average_1min": round(load, 2),
        "oracle_sample": len(sample),
        "oracle_evals_per_s": round(len(sample) / oracle_seconds),
        "speedup": round((n / seconds) / (len(sample) / oracle_seconds), 1),
        "target_evals_per_s": TARGET,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="number of projects")
    parser.add_argument("--runs", type=int, default=5, help="timed runs (the median is reported)")
    parser.add_argument("--scheme", default="jingzhou-2024")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    figures = measure_engine(args.n, runs=args.runs, scheme_name=args.scheme)
    if args.json:
        print(json.dumps(figures))
        return
    print(f"columnar engine, {figures['projects']:,} projects ({figures['scheme']}, as of {figures['as_of']}, "
          f"{figures['flagged_share']:.1%} flagged): {figures['engine_seconds']:.3f} s, "
          f"engine_evals_per_s = {figures['engine_evals_per_s']:,}  (target ≥ {TARGET:,}; "
          f"CPU {figures['engine_cpu_seconds']:.3f} s; load average {figures['load_average_1min']})")
    print(f"per-row oracle, {figures['oracle_sample']:,} projects: oracle_evals_per_s = "
          f"{figures['oracle_evals_per_s']:,}  (columnar ×{figures['speedup']})")


if __name__ == "__main__":
    main()
