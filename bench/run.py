"""Benchmarks (not tests), on PostgreSQL: every figure beside its floor and its baseline, all
measured in the same run.

    .venv/bin/python bench/run.py [--sizes 1463,20000,100000,1000000] [--json] [--skip ingest,xlsx,...]
                                  [--db sqlite]

- reflag: the whole-reserve re-flag at each size, first evaluation (every flag and history row
  written) and nothing changed (on the flag tables vacuumed after that first evaluation, as the
  next night finds them), in a process of its own (its peak RSS is kept) warmed up as a
  long-lived worker is (configuration read, one small chunk run and rolled back); the floor is the
  raw read of the same rows (COPY of the join the re-flag reads) plus, for the first evaluation,
  the raw write of the rows it wrote (COPY into tables of the same shape); the baseline is the
  naive ORM loop (one object and two queries per project, the per-row engine) at the small sizes,
  where the first evaluation is also timed with every leader and unit addressed (the red notices
  it plans rendered and written to the outbox; the reserve has no address otherwise).
- parallel: the same re-flag as chunk tasks on one and on two Celery worker processes (Redis of
  its own), each set of workers warmed up by a first run (untimed, its flags then cleared), as
  long-lived workers are.
- engine: project evaluations per second of the columnar engine (bench/engine.py).
- ingest: 100,000 updates in 10 CSV files through ``pipeline import`` to two workers, recorded,
  applied and re-flagged.
- api: the same 100,000 updates posted to the JSON API in batches of 1,000, to applied and re-flagged.
- xlsx: a 1,463-row and a 100,000-row xlsx imported end to end (parse, validate, record, apply,
  re-flag) beside python-calamine's read of the same file.
- digest: planning one review's digests (30 leaders and the office) on 100,000 projects beside
  the raw read of the same data (bench/digest.py).
Each timing is the median of several runs; the machine's load average is printed with them.
With ``--db sqlite`` the re-flag figures (and the engine's) are measured on SQLite files instead,
the read floor being every row of the same SELECT fetched by the sqlite3 module and the write
floor one executemany per table.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import polars as pl  # noqa: E402
from sqlalchemy import text  # noqa: E402

import reserve  # noqa: E402
from pipeline.db import make_engine  # noqa: E402

AS_OF = date(2024, 12, 31)
SIZES = (1_463, 20_000, 100_000, 1_000_000)
NAIVE_SIZES = (1_463, 20_000)
TARGETS = {1_463: 0.1, 20_000: 1.0, 100_000: 4.0, 1_000_000: 30.0}
PY = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable


def median_of(runs: int, fn: Callable[[], float]) -> float:
    return statistics.median(fn() for _ in range(runs))


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def load_average() -> float:
    return os.getloadavg()[0]


# --- the reserve for a size ------------------------------------------------------------------------


def prepared_reserve(make: Callable[..., str], n: int, templates: dict[int, str]) -> str:
    """A database with N projects' November and December reports, their month ends closed and
    their flags written once (the template the timed runs copy); made once per size."""
    if n in templates:
        return templates[n]
    url = templates[n] = make()
    engine = make_engine(url)
    reserve.load(engine, reserve.reports(n, (11, 12)))
    engine.dispose()
    child("reflag", url, AS_OF.isoformat())  # closes Nov and Dec, writes the flags: setup, not timed
    return url


def fresh_copy(make: Callable[..., str], template: str, *, without_flags: bool) -> str:
    url = make(reserve.database_name(template))
    if without_flags:
        clear_flags(url)
    return url


FLAG_TABLES = ("acknowledgements", "outbox_attachments", "delivery_attempts", "outbox", "flag_history",
               "project_flags")  # referring tables first


def clear_flags(url: str) -> None:
    """No flag, history row or message yet (as before a first evaluation)."""
    engine = make_engine(url)
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text(f"TRUNCATE {', '.join(FLAG_TABLES)}"))
        else:
            for table in FLAG_TABLES:
                conn.execute(text(f"DELETE FROM {table}"))
    engine.dispose()
    settle(url)


def settle(url: str) -> None:
    """The flag tables as the next night finds them after a day's writes: vacuumed and analysed
    (else the first reader after a bulk write sets every row's hint bits, and autovacuum runs
    beside the clock)."""
    engine = make_engine(url)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("VACUUM ANALYZE project_flags, flag_history"))
        else:
            conn.execute(text("ANALYZE"))
    engine.dispose()


def child(command: str, *args: str) -> dict:
    """Run ``bench/run.py _<command> ...`` in a process of its own; its JSON result (time, RSS)."""
    done = subprocess.run([PY, __file__, f"_{command}", *args], capture_output=True, text=True, timeout=3600,
                          env={**os.environ, "PIPELINE_DATA_DIR": reserve.scratch_dir("child-")})
    if done.returncode != 0:
        raise RuntimeError(f"{command} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _reflag_child(url: str, day: str) -> None:
    from figures import peak_rss_mb
    from pipeline.runtime import Runtime
    from pipeline.settings import load_settings

    rt = Runtime(load_settings(database_url=url))
    warm_up(rt, date.fromisoformat(day))
    started = time.perf_counter()
    outcome = rt.reflag_reserve(as_of=date.fromisoformat(day))
    took = time.perf_counter() - started
    rt.dispose()
    print(json.dumps({"seconds": took, "changed": outcome.changed, "evaluated": outcome.evaluated,
                      "rss_mb": peak_rss_mb()}))


def warm_up(rt, day: date) -> None:  # type: ignore[no-untyped-def]
    """What a long-lived worker has done before its nightly run: configuration read and checked,
    mappers configured, a connection open, the statements of a run once (planned, one small chunk
    run with its flags, history and notices written, the run finished; then rolled back), and a
    whole chunk read and evaluated (read-only: the process has held frames of that size before)."""
    from sqlalchemy.orm import configure_mappers

    from pipeline.models import ReflagRun
    from pipeline.nightly import finish_run, plan_run, run_chunk
    from pipeline.reflag import chunk_scope, evaluate_scope

    rt.check_config()
    configure_mappers()
    session = rt.session_factory()
    try:
        plan = plan_run(session, as_of=day, scheme=rt.scheme, cause="warm-up", clock=rt.clock, chunk_size=100)
        if plan.chunks:
            run_chunk(session, plan.run_id, plan.chunks[0], scheme=rt.scheme, compiled=rt.compiled, clock=rt.clock,
                      notify=lambda ids: rt.plan_notices(session, ids))
            finish_run(session, session.get(ReflagRun, plan.run_id), scheme=rt.scheme, clock=rt.clock)
        session.rollback()
        evaluate_scope(session, chunk_scope(0, rt.settings.reflag_chunk_size), day, scheme=rt.scheme,
                       compiled=rt.compiled, stored=True)
        session.rollback()
        # The plans the server cached for that run (the foreign-key checks of the outbox's rows
        # among them) were made on the flag tables as emptied for a first evaluation: a nightly
        # worker's were made again since, when autovacuum analysed yesterday's writes. Kept, a
        # first evaluation's red notices checked each episode by scanning the history (20,000
        # projects: 1.3 s instead of 0.13 s for 2,910 notices).
        if session.get_bind().dialect.name == "postgresql":
            session.execute(text("DISCARD PLANS"))
    finally:
        session.rollback()
        session.close()


# --- floors ------------------------------------------------------------------------------------------

READ_FLOOR_SQL = """
    SELECT p.id, p.code, p.nature, s.update_id, s.as_of, s.annual_plan, s.planned_start, s.planned_completion,
           s.actual_start, s.actual_completion, s.stats_included_on, s.cumulative_completed, s.ytd_completed,
           s.needs_coordination, s.problems, mf.base_color, f.computed_color, f.effective_color, f.override_id,
           f.update_id, f.previous_base, f.as_of, f.scheme, f.scheme_version
    FROM projects p LEFT JOIN project_states s ON s.project_id = p.id
    LEFT JOIN month_flags mf ON mf.project_id = p.id AND mf.month_end = DATE '2024-11-30'
    LEFT JOIN project_flags f ON f.project_id = p.id"""


def _psycopg(url: str):  # type: ignore[no-untyped-def]
    import psycopg

    from pipeline.db import POSTGRES_SESSION_OPTIONS

    # the product's session settings, so that the floor and the figure differ only in what they do
    return psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), options=POSTGRES_SESSION_OPTIONS)


def _sqlite(url: str):  # type: ignore[no-untyped-def]
    import sqlite3

    return sqlite3.connect(url.removeprefix("sqlite:///"))


def read_floor(url: str) -> float:
    """COPY out of the rows a re-flag reads (facts, last month's base colour, stored flags); on
    SQLite, every row of the same SELECT fetched by the sqlite3 module."""
    if url.startswith("sqlite"):
        conn = _sqlite(url)
        try:
            started = time.perf_counter()
            for _ in conn.execute(READ_FLOOR_SQL.replace("DATE '", "'")):  # dates are ISO text there
                pass
            return time.perf_counter() - started
        finally:
            conn.close()
    with _psycopg(url) as conn, conn.cursor() as cur:
        started = time.perf_counter()
        with cur.copy(f"COPY ({READ_FLOOR_SQL}) TO STDOUT WITH (FORMAT csv)") as copy:
            for _ in copy:
                pass
        return time.perf_counter() - started


def write_floor(url: str) -> float:
    """COPY into tables shaped like project_flags and flag_history of the rows a first evaluation
    wrote (read out before the clock); on SQLite, one executemany per table."""
    sqlite = url.startswith("sqlite")
    conn = _sqlite(url) if sqlite else _psycopg(url)
    try:
        data = {}
        for table in ("project_flags", "flag_history"):
            data[table] = _rows_of(conn, table, sqlite=sqlite)
            conn.execute(f"DROP TABLE IF EXISTS floor_{table}")
            conn.execute(f"CREATE TABLE floor_{table} AS SELECT * FROM {table} WHERE 0" if sqlite
                         else f"CREATE TABLE floor_{table} (LIKE {table} INCLUDING ALL)")
        conn.commit()
        started = time.perf_counter()
        for table, rows in data.items():
            _write_rows(conn, f"floor_{table}", rows, sqlite=sqlite)
        conn.commit()
        took = time.perf_counter() - started
        for table in data:
            conn.execute(f"DROP TABLE floor_{table}")
        conn.commit()
        return took
    finally:
        conn.close()


def _rows_of(conn, table: str, *, sqlite: bool):  # type: ignore[no-untyped-def]
    """A table's rows as the floor writes them: tuples on SQLite, COPY text on PostgreSQL."""
    if sqlite:
        return conn.execute(f"SELECT * FROM {table}").fetchall()
    buffer = io.BytesIO()
    with conn.cursor() as cur, cur.copy(f"COPY {table} TO STDOUT") as copy:
        for block in copy:
            buffer.write(block)
    return buffer.getvalue()


def _write_rows(conn, table: str, rows, *, sqlite: bool) -> None:  # type: ignore[no-untyped-def]
    if not sqlite:
        with conn.cursor() as cur, cur.copy(f"COPY {table} FROM STDIN") as copy:
            copy.write(rows)
    elif rows:
        conn.executemany(f"INSERT INTO {table} VALUES ({', '.join('?' for _ in rows[0])})", rows)


# --- the naive baseline ----------------------------------------------------------------------------


def _naive_child(url: str, day: str) -> None:
    """One ORM object at a time, two queries per project, the per-row engine (the oracle kept in
    tests), a write per changed project: how a re-flag reads without set-based work."""
    from sqlalchemy import select

    from pipeline.clock import Clock
    from pipeline.db import make_session_factory, session_scope
    from pipeline.facts import ProjectFacts
    from pipeline.models import FlagChange, Project, ProjectFlag, StatusUpdate
    from pipeline.rules import load_scheme, previous_month_end
    from tests.rules_oracle import oracle_evaluate_many

    scheme = load_scheme("jingzhou-2024", config_dir=reserve.CONFIG)
    as_of = date.fromisoformat(day)
    engine = make_engine(url)
    now = Clock(reserve.TZ).now()
    month_end = previous_month_end(as_of)
    started = time.perf_counter()
    with session_scope(make_session_factory(engine)) as s:
        for pid in s.scalars(select(Project.id)).all():
            project = s.get(Project, pid)

            def newest(d: date, code: str = project.code) -> ProjectFacts | None:
                u = s.scalars(select(StatusUpdate).where(StatusUpdate.project_code == code, StatusUpdate.as_of <= d)
                              .order_by(StatusUpdate.as_of.desc(), StatusUpdate.id.desc()).limit(1)).first()
                if u is None:
                    return None
                return ProjectFacts(u.project_code, u.as_of, project.nature, u.annual_plan, u.planned_start,
                                    u.planned_completion, u.actual_start, u.actual_completion, u.stats_included_on,
                                    u.cumulative_completed, u.ytd_completed, u.needs_coordination, u.problems)

            flag = oracle_evaluate_many(scheme, [(newest(as_of), newest(month_end))], as_of)[0]
            reasons = [r.to_json() for r in flag.reasons]
            stored = s.get(ProjectFlag, pid)
            if stored is None:
                s.add(ProjectFlag(project_id=pid, computed_color=flag.color.value, effective_color=flag.color.value,
                                  base_color=flag.base_color.value, reasons=reasons, scheme=flag.scheme,
                                  scheme_version=flag.scheme_version, as_of=as_of, evaluated_at=now))
                s.add(FlagChange(project_id=pid, new_computed=flag.color.value, new_effective=flag.color.value,
                                 reasons=reasons, cause="reflag", scheme=flag.scheme,
                                 scheme_version=flag.scheme_version, as_of=as_of, changed_at=now))
            s.flush()
    print(json.dumps({"seconds": time.perf_counter() - started}))
    engine.dispose()


# --- the figures -------------------------------------------------------------------------------------


def bench_reflag(make: Callable[..., str], sizes: list[int], runs: int, out: dict,
                 templates: dict[int, str]) -> None:
    for n in sizes:
        template = prepared_reserve(make, n, templates)
        repeat = runs if n < 1_000_000 else max(1, runs - 1)
        first_runs, rss = [], 0.0
        copy = ""
        for _ in range(repeat):
            copy = fresh_copy(make, template, without_flags=True)
            result = child("reflag", copy, AS_OF.isoformat())
            assert result["changed"] == n, result
            first_runs.append(result["seconds"])
            rss = max(rss, result["rss_mb"])
        settle(copy)
        unchanged = [child("reflag", copy, AS_OF.isoformat()) for _ in range(repeat)]
        assert all(r["changed"] == 0 for r in unchanged)
        reads = median_of(repeat, lambda: read_floor(copy))
        writes = median_of(repeat, lambda: write_floor(copy))
        next_day = child("reflag", copy, (AS_OF + timedelta(days=1)).isoformat())
        first = statistics.median(first_runs)
        still = statistics.median(r["seconds"] for r in unchanged)
        out["reflag_s"][str(n)] = round(first, 3)
        out["reflag_floor_s"][str(n)] = round(reads + writes, 3)
        out["reflag_unchanged_s"][str(n)] = round(still, 3)
        out["reflag_unchanged_floor_s"][str(n)] = round(reads, 3)
        out["reflag_next_day_s"][str(n)] = round(next_day["seconds"], 3)
        out["reflag_rss_mb"][str(n)] = round(rss, 1)
        line = (f"re-flag {n:>9,} projects: first evaluation {first:7.3f} s (floor {reads + writes:6.3f} s = read "
                f"{reads:.3f} + write {writes:.3f}; ×{first / (reads + writes):.1f}; target ≤ {TARGETS.get(n, '-')} s, "
                f"≤ 3× floor) | nothing changed {still:6.3f} s (read floor {reads:.3f}; ×{still / reads:.1f}; "
                f"target ≤ 1.5×) | next day {next_day['seconds']:.3f} s ({next_day['changed']} flags written) | "
                f"peak RSS {rss:.0f} MB")
        if n in NAIVE_SIZES:
            told, notices = first_evaluation_telling(make, template, repeat)
            out["reflag_with_notices_s"][str(n)] = round(told, 3)
            out["red_notices"][str(n)] = notices
            line += f" | with every leader and unit addressed: {told:.3f} s ({notices:,} red notices planned)"
            naive_copy = fresh_copy(make, template, without_flags=True)
            naive = child("naive", naive_copy, AS_OF.isoformat())["seconds"]
            out["naive_reflag_s"][str(n)] = round(naive, 3)
            line += f" | naive ORM loop {naive:.2f} s → ×{naive / first:.1f} (target ≥ 20×)"
        print(line, flush=True)


def first_evaluation_telling(make: Callable[..., str], template: str, runs: int) -> tuple[float, int]:
    """The first evaluation as an installation whose leaders and units all have an address sees
    it: the same re-flag, and the red notices it plans (rendered, written to the outbox)."""
    from figures import count_of

    took = []
    for _ in range(runs):
        url = fresh_copy(make, template, without_flags=True)
        engine = make_engine(url)
        with engine.begin() as conn:
            for table in ("leaders", "units"):
                conn.execute(text(f"UPDATE {table} SET email = '{table}' || id || '@bench.example'"))
        engine.dispose()
        took.append(child("reflag", url, AS_OF.isoformat())["seconds"])
    return statistics.median(took), count_of(url, "SELECT count(*) FROM outbox WHERE kind = 'red_notice'")


def bench_engine(out: dict) -> None:
    from engine import measure_engine

    result = measure_engine(1_000_000)
    out["engine_evals_per_s"] = result.get("engine_evals_per_s")
    print(f"rules engine: {out['engine_evals_per_s']:,.0f} project evaluations per second (target ≥ 1,000,000); "
          f"per-row oracle {result.get('oracle_evals_per_s', 0):,.0f}/s", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(str(s) for s in SIZES))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--skip", default="", help="figures to skip: reflag,engine,parallel,ingest,api,xlsx,digest")
    parser.add_argument("--db", choices=("postgresql", "sqlite"), default="postgresql",
                        help="the database of the re-flag figures (sqlite: those and the engine only)")
    parser.add_argument("--json", action="store_true", help="print one JSON object at the end")
    args = parser.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    if args.db == "sqlite":  # the other figures are of workers, a broker and PostgreSQL
        skip |= {"parallel", "ingest", "api", "xlsx", "digest"}
    sizes = [int(s) for s in args.sizes.split(",") if s]
    out: dict = {k: {} for k in ("reflag_s", "reflag_floor_s", "reflag_unchanged_s", "reflag_unchanged_floor_s",
                                 "reflag_next_day_s", "reflag_rss_mb", "naive_reflag_s", "reflag_with_notices_s",
                                 "red_notices")}
    out["load_average_start"] = load_average()
    templates: dict[int, str] = {}
    out["database"] = args.db
    with reserve.scratch_databases() if args.db == "postgresql" else reserve.scratch_sqlite() as make:
        if "reflag" not in skip:
            bench_reflag(make, sizes, args.runs, out, templates)
        if "engine" not in skip:
            bench_engine(out)
        from figures import bench_api, bench_ingest, bench_parallel, bench_xlsx, ingest_reserve

        if "parallel" not in skip:
            prepared_reserve(make, max(sizes), templates)
            bench_parallel(make, max(sizes), out, templates)
        if "ingest" not in skip or "api" not in skip:
            template = ingest_reserve(make)
            if "ingest" not in skip:
                bench_ingest(make, template, out)
            if "api" not in skip:
                bench_api(make, template, out, runs=max(2, args.runs))
        if "xlsx" not in skip:
            bench_xlsx(make, out)
        if "digest" not in skip:
            from digest import bench_digest

            bench_digest(make, out)
    rss = [*out["reflag_rss_mb"].values(), *(v for k, v in out.items() if "rss_mb" in k and isinstance(v, float))]
    out["peak_rss_mb"] = round(max(rss), 1) if rss else None
    out["load_average_end"] = load_average()
    print(f"peak RSS of any process measured: {out['peak_rss_mb']} MB (target < 500 MB); load average "
          f"{out['load_average_start']:.2f} → {out['load_average_end']:.2f}", flush=True)
    if args.json:
        print(json.dumps(out, ensure_ascii=False))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1].startswith("_"):
        from digest import _digest_child
        from figures import _xlsx_child, _xlsx_floor_child

        {"_reflag": _reflag_child, "_naive": _naive_child, "_xlsx": _xlsx_child, "_xlsx_floor": _xlsx_floor_child,
         "_digest": _digest_child}[sys.argv[1]](*sys.argv[2:])
    else:
        main()
