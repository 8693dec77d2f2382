"""The benchmarks with worker processes and files: the parallel re-flag, ingest through the
workers, the JSON API and xlsx imports end to end (see run.py for how they are reported)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import polars as pl
from sqlalchemy import text

import reserve
from pipeline.db import make_engine

ROOT = Path(__file__).resolve().parent.parent
AS_OF = date(2024, 12, 31)
NOVEMBER = date(2024, 11, 30)
PY = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def private_redis() -> Iterator[str]:
    """A redis-server of the benchmark's own (never the machine's), on a free port."""
    port, folder = free_port(), reserve.scratch_dir("redis-")
    proc = subprocess.Popen([shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind",
                             "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", folder],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.kill()
        proc.wait()


def pipeline_env(db_url: str, broker: str | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")}
    env.update(PIPELINE_DATABASE_URL=db_url, PIPELINE_DATA_DIR=reserve.scratch_dir("data-"),
               PIPELINE_AS_OF=AS_OF.isoformat(), **extra)
    if broker:
        env["PIPELINE_BROKER_URL"] = broker
    return env


@contextmanager
def workers(env: dict[str, str], count: int) -> Iterator[list[subprocess.Popen[bytes]]]:
    procs = [subprocess.Popen([PY, "-m", "pipeline", "worker", "--pool", "solo", "--queues", "pipeline.ingest",
                               "--hostname", f"bench{i}@%h", "--loglevel", "WARNING"], env=env, cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for i in range(count)]
    try:
        time.sleep(4)  # the workers connect to the broker before anything is timed
        yield procs
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()


def peak_rss_mb(pid: int | str = "self") -> float:
    """A process's peak RSS (VmHWM; this process's by default). Not ``ru_maxrss``: Linux keeps it
    across exec, so a child started by a process that held a large reserve reports the parent's peak."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def count_of(db_url: str, sql: str) -> int:
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text(sql)).scalar() or 0)
    finally:
        engine.dispose()


def wait_until(db_url: str, sql: str, *, timeout: float = 3600) -> None:
    engine = make_engine(db_url)
    deadline = time.monotonic() + timeout
    try:
        while True:
            with engine.connect() as conn:
                if conn.execute(text(sql)).scalar():
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(sql)
            time.sleep(0.1)
    finally:
        engine.dispose()


def november_reserve(make: Callable[..., str], n: int) -> str:
    """N projects with their November report, November closed and the flags as of its end: the
    reserve a December import lands in."""
    url = make()
    engine = make_engine(url)
    reserve.load(engine, reserve.reports(n, (11,)))
    engine.dispose()
    subprocess.run([PY, str(ROOT / "bench" / "run.py"), "_reflag", url, NOVEMBER.isoformat()], check=True,
                   capture_output=True, env={**os.environ, "PIPELINE_DATA_DIR": reserve.scratch_dir("child-")})
    return url


# --- the parallel re-flag ------------------------------------------------------------------------------


def bench_parallel(make: Callable[..., str], n: int, out: dict, templates: dict[int, str]) -> None:
    from run import clear_flags, fresh_copy

    template = templates[n]
    results = {}

    def parallel_run(copy: str, env: dict[str, str]) -> float:
        """Start a run and wait for it (not for the template's own set-up run, done already)."""
        before = count_of(copy, "SELECT COALESCE(MAX(id), 0) FROM reflag_runs")
        started = time.perf_counter()
        subprocess.run([PY, "-m", "pipeline", "reflag", "--parallel", "--as-of", AS_OF.isoformat()],
                       env=env, cwd=ROOT, check=True, capture_output=True)
        wait_until(copy, f"SELECT count(*) FROM reflag_runs WHERE id > {before} AND status = 'done'")
        took = time.perf_counter() - started
        written = count_of(copy, "SELECT count(*) FROM project_flags")
        assert written == n, (written, n)
        return took

    with private_redis() as broker:
        for count in (1, 2):
            copy = fresh_copy(make, template, without_flags=True)
            env = pipeline_env(copy, broker)
            with workers(env, count) as procs:
                parallel_run(copy, env)  # the workers' first run: what a long-lived worker has behind it
                clear_flags(copy)
                results[count] = parallel_run(copy, env)
                rss = max(peak_rss_mb(p.pid) for p in procs)
            out[f"reflag_parallel_{count}w_s"] = round(results[count], 3)
            out[f"worker_rss_mb_{count}w"] = round(rss, 1)
    print(f"re-flag {n:,} projects as chunk tasks, workers warmed up (start to done, CLI start-up included): 1 worker "
          f"{results[1]:.2f} s, 2 workers {results[2]:.2f} s (×{results[1] / results[2]:.2f}); worker peak RSS "
          f"{out['worker_rss_mb_2w']:.0f} MB", flush=True)


# --- ingest through the workers and the API ------------------------------------------------------------


def ingest_reserve(make: Callable[..., str], n: int = 100_000) -> str:
    """The reserve the ingest and API figures import December into (made once, copied per run)."""
    return november_reserve(make, n)


def bench_ingest(make: Callable[..., str], template: str, out: dict, n: int = 100_000, files: int = 10) -> None:
    folder = Path(reserve.scratch_dir("files-"))
    paths = reserve.write_reports_csv(reserve.reports(n, (12,)), folder, files)
    from run import fresh_copy

    with private_redis() as broker:
        runs = []
        for _ in range(2):
            copy = fresh_copy(make, template, without_flags=False)
            env = pipeline_env(copy, broker)
            with workers(env, 2) as procs:
                started = time.perf_counter()
                done = subprocess.run([PY, "-m", "pipeline", "import", "--timeout", "3600", *map(str, paths)],
                                      env=env, cwd=ROOT, capture_output=True, text=True)
                runs.append(time.perf_counter() - started)
                assert done.returncode == 0, done.stderr[-2000:]
                rss = max(peak_rss_mb(p.pid) for p in procs)
            engine = make_engine(copy)
            with engine.connect() as conn:
                applied = conn.scalar(text("SELECT count(*) FROM status_updates WHERE as_of = DATE '2024-12-31' "
                                           "AND status = 'applied'"))
                flagged = conn.scalar(text("SELECT count(*) FROM project_flags WHERE as_of = DATE '2024-12-31'"))
            engine.dispose()
            assert applied == n, applied
        took = statistics.median(runs)
        out["ingest_updates_per_s"] = round(n / took)
        out["ingest_worker_rss_mb"] = round(rss, 1)
        print(f"ingest end to end ({n:,} rows in {files} CSV files, pipeline import → 2 workers, recorded, applied, "
              f"re-flagged; {flagged:,} flags as of 2024-12-31): {took:.2f} s = {n / took:,.0f} updates/s "
              f"(target ≥ 5,000/s); worker peak RSS {rss:.0f} MB", flush=True)


def api_records(n: int) -> list[dict]:
    """December's reports as the JSON a county's system sends: aliases as keys, text values, 是/否."""
    as_text = ("as_of", "annual_plan", "planned_start", "planned_completion", "actual_start", "actual_completion",
               "stats_included_on", "cumulative_completed", "ytd_completed", "total_investment")
    records = (reserve.reports(n, (12,)).with_columns(*(pl.col(c).cast(pl.Utf8) for c in as_text),
                                                      pl.col("lists").list.join(";"))
               .drop("month", "row_number", "idempotency_key", "source_id").to_dicts())
    for r in records:
        r["needs_coordination"] = "是" if r["needs_coordination"] else "否"
        for k in [k for k, v in r.items() if v is None]:
            del r[k]
    return records


def bench_api(make: Callable[..., str], template: str, out: dict, n: int = 100_000, batch: int = 1000,
              runs: int = 2) -> None:
    records = api_records(n)
    with private_redis() as broker:
        took = statistics.median(_api_run(make, template, broker, records, batch) for _ in range(runs))
    out["api_updates_per_s"] = round(n / took)
    print(f"JSON API ({n:,} updates in batches of {batch:,}, to applied and re-flagged; median of {runs}): "
          f"{took:.2f} s = {n / took:,.0f} updates/s (target ≥ 3,000/s)", flush=True)


def _api_run(make: Callable[..., str], template: str, broker: str, records: list[dict], batch: int) -> float:
    import httpx

    from run import fresh_copy

    n = len(records)
    copy = fresh_copy(make, template, without_flags=False)
    env = pipeline_env(copy, broker, PIPELINE_SECRET_KEY="bench-" + "k" * 40)  # the web server needs one
    subprocess.run([PY, "-m", "pipeline", "user", "add", "bench", "--role", "office", "--password",
                    "Reserve-Api-9271"], env=env, cwd=ROOT, check=True, capture_output=True)
    token = subprocess.run([PY, "-m", "pipeline", "token", "create", "bench"], env=env, cwd=ROOT, check=True,
                           capture_output=True, text=True).stdout.strip().split()[-1]
    port = free_port()
    server = subprocess.Popen([PY, "-m", "pipeline", "serve", "--host", "127.0.0.1", "--port", str(port)], env=env,
                              cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with workers(env, 2):
            client = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token}"},
                                  timeout=600)
            deadline = time.monotonic() + 60
            while True:
                try:
                    client.get("/health")
                    break
                except httpx.HTTPError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
            started = time.perf_counter()
            for i in range(0, n, batch):
                answer = client.post("/api/updates", json=records[i : i + batch])
                assert answer.status_code < 300, answer.text[:500]
            posted = time.perf_counter() - started
            wait_until(copy, f"SELECT count(*) = {n} FROM status_updates WHERE as_of = DATE '2024-12-31' "
                             "AND status = 'applied'")
            took = time.perf_counter() - started
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"  API run: posted in {posted:.2f} s, applied after {took:.2f} s = {n / took:,.0f} updates/s", flush=True)
    return took


# --- xlsx end to end ----------------------------------------------------------------------------------------


def _xlsx_floor_child(path: str) -> None:
    """python-calamine reading every sheet of the file into Python values, in a process of its own
    (its peak memory is the floor's, not the import's)."""
    from python_calamine import CalamineWorkbook

    started = time.perf_counter()
    workbook = CalamineWorkbook.from_path(path)
    for name in workbook.sheet_names:
        workbook.get_sheet_by_name(name).to_python()
    print(json.dumps({"seconds": time.perf_counter() - started, "rss_mb": peak_rss_mb()}))


def _xlsx_child(url: str, path: str) -> None:
    from pipeline.audit import Actor
    from pipeline.db import session_scope
    from pipeline.ingest.submit import receive_file
    from pipeline.runtime import Runtime
    from pipeline.settings import load_settings
    from pipeline.tasks.dispatch import apply_inline

    rt = Runtime(load_settings(database_url=url, as_of=AS_OF))
    rt.compiled  # noqa: B018
    rt.reference  # noqa: B018
    started = time.perf_counter()
    with session_scope(rt.session_factory) as session:
        sub = receive_file(session, Path(path), reference=rt.reference, max_bytes=10**9, clock=rt.clock,
                           actor=Actor("bench", "cli"))
    apply_inline(rt, [sub.batch_id])
    took = time.perf_counter() - started
    print(json.dumps({"seconds": took, "accepted": sub.accepted, "rss_mb": peak_rss_mb()}))


def bench_xlsx(make: Callable[..., str], out: dict) -> None:
    import parse
    from run import child, fresh_copy

    for n, key in ((1_463, "xlsx_1463"), (100_000, "xlsx_100k")):
        template = november_reserve(make, n)
        path = parse.workbook(n)
        repeat = 3 if n < 100_000 else 2
        floors = [child("xlsx_floor", str(path))["seconds"] for _ in range(repeat)]
        parses = [parse.measure(parse._PARSE, str(path), str(ROOT), AS_OF.isoformat()) for _ in range(repeat)]
        runs = [child("xlsx", fresh_copy(make, template, without_flags=False), str(path)) for _ in range(repeat)]
        took = statistics.median(r["seconds"] for r in runs)
        floor = statistics.median(floors)
        assert all(r["accepted"] == n for r in runs), runs
        out[f"{key}_s"], out[f"{key}_floor_s"] = round(took, 3), round(floor, 3)
        out[f"{key}_rss_mb"] = round(max(r["rss_mb"] for r in runs), 1)
        read = statistics.median(p["seconds"] for p in parses)
        out[f"{key}_parse_s"] = round(read, 3)
        target = "≤ 1 s" if n < 100_000 else "≤ 20 s"
        print(f"xlsx import end to end, {n:,} rows (parse, validate, record, apply, re-flag): {took:.2f} s (target "
              f"{target}); of which reading and validating the file {read:.2f} s = ×{read / floor:.2f} the "
              f"python-calamine read floor {floor:.2f} s{' (target ≤ 2×)' if n >= 100_000 else ''}; peak RSS {out[f'{key}_rss_mb']:.0f} MB "
              f"(parse alone {max(p['rss_mb'] for p in parses):.0f} MB)", flush=True)
