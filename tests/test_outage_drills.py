"""Long-running processes outlive their database: a private PostgreSQL cluster (never the shared
server) is stopped and started under a real `pipeline sweep --loop` and a real `pipeline scheduler`;
both keep running, wait the outage out, and do their work once the database is back."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

from sqlalchemy import text

from pipeline.db import make_engine
from pipeline.ingest.export import write_template
from tests.cli_helpers import MovedClock, clean_env, pipeline
from tests.factories import row
from tests.private_postgres import PrivatePostgres, private_pg  # noqa: F401  (pytest fixture)
from tests.receivers import free_port
from tests.test_alert_faults import LEADERS, START, config_with_review_ahead


def wait_until(check: Callable[[], bool], what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except Exception:  # noqa: BLE001  (the database may be down while we look)
            pass
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.3)


def log_has(path: Path, words: str) -> bool:
    return words in path.read_text(encoding="utf-8", errors="replace")


def record_unqueued_batch(env: dict[str, str], folder: Path, n: int) -> None:
    """A batch recorded while the broker is unreachable: nothing queued it, the sweep must."""
    rows = [row(k, as_of=date(2025, 6, 1), ytd_completed=0) for k in range(n, n + 3)]
    down = {**env, "PIPELINE_BROKER_URL": f"redis://127.0.0.1:{free_port()}/0"}
    done = pipeline(down, "import", "--no-wait", str(write_template(rows, folder / f"batch-{n}.csv")))
    assert done.returncode == 0, done.stderr


def unqueued(db_url: str) -> int:
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            return int(conn.scalar(text("SELECT count(*) FROM import_batches WHERE enqueued_at IS NULL")))
    finally:
        engine.dispose()


def outage(server: PrivatePostgres, proc: subprocess.Popen[bytes], log: Path, words: str) -> None:
    """Stop the database until the process has noticed (``words`` in its log), then start it again."""
    server.stop()
    wait_until(lambda: log_has(log, words), f"the process logs the outage ({words})")
    assert proc.poll() is None, log.read_text(encoding="utf-8", errors="replace")
    server.start()


def start_while_down(server: PrivatePostgres, env: dict[str, str], log: Path, *args: str) -> subprocess.Popen[bytes]:
    """Start `pipeline ARGS` while the database is down, see it wait (not end), then start the database."""
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "pipeline", *args], env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: log_has(log, "数据库不可用"), f"`pipeline {args[0]}` waits for the database at start-up")
        assert proc.poll() is None
    except BaseException:
        proc.kill()
        proc.wait(timeout=30)
        raise
    server.start()
    return proc


def test_the_sweeper_outlives_a_database_outage(tmp_path: Path, private_pg: PrivatePostgres, redis_url: str) -> None:
    env = clean_env(tmp_path / "data", PIPELINE_DATABASE_URL=private_pg.url, PIPELINE_BROKER_URL=redis_url,
                    PIPELINE_SWEEP_AFTER_SECONDS="1", PIPELINE_AS_OF="2025-06-30")
    assert pipeline(env, "init").returncode == 0
    private_pg.stop()  # down before the sweeper starts: it waits, it does not end
    log = tmp_path / "sweeper.log"
    sweeper = start_while_down(private_pg, env, log, "sweep", "--loop", "1")
    try:
        record_unqueued_batch(env, tmp_path, 1)
        wait_until(lambda: unqueued(private_pg.url) == 0, "the sweeper queues the first batch")
        outage(private_pg, sweeper, log, "补发检查失败")  # down in the middle of its loop
        record_unqueued_batch(env, tmp_path, 10)
        wait_until(lambda: unqueued(private_pg.url) == 0, "the sweeper queues a batch after the outage")
        assert sweeper.poll() is None
    finally:
        sweeper.terminate()
        sweeper.wait(timeout=30)
    assert log.read_text(encoding="utf-8").count("已重新排队 1 个批次") >= 2


def test_the_scheduler_outlives_a_database_outage(tmp_path: Path, private_pg: PrivatePostgres, redis_url: str) -> None:
    config, review = config_with_review_ahead(tmp_path)
    env = clean_env(tmp_path / "data", PIPELINE_DATABASE_URL=private_pg.url, PIPELINE_BROKER_URL=redis_url,
                    PIPELINE_CONFIG_DIR=str(config), PIPELINE_SWEEP_AFTER_SECONDS="1",
                    PIPELINE_SCHEDULER_LEASE_SECONDS="3", PIPELINE_SECRET_KEY="x" * 40)
    clock = MovedClock(START)
    rows = [row(n, leader=name, as_of=START.date().replace(day=1), ytd_completed=0)
            for n, name in enumerate(LEADERS, start=1)]
    imported = pipeline(clock.env(env), "import", "--no-wait", str(write_template(rows, tmp_path / "reserve.csv")))
    assert imported.returncode == 0, imported.stderr
    private_pg.stop()
    log = tmp_path / "scheduler.log"
    scheduler = start_while_down(private_pg, clock.env(env), log, "scheduler", "--tick", "1")

    def planned() -> bool:
        engine = make_engine(private_pg.url)
        try:
            with engine.connect() as conn:
                return conn.scalar(text("SELECT count(*) FROM review_runs WHERE review_date = :d"), {"d": review}) == 1
        finally:
            engine.dispose()

    try:
        wait_until(planned, "the review's digests planned once the database is back")
        outage(private_pg, scheduler, log, "调度检查失败")  # down between ticks and in the middle of one
        record_unqueued_batch(clock.env(env), tmp_path, 10)
        wait_until(lambda: unqueued(private_pg.url) == 0, "the scheduler's sweep queues a batch after the outage")
        assert scheduler.poll() is None
    finally:
        scheduler.terminate()
        scheduler.wait(timeout=30)


def test_a_worker_started_while_the_database_is_down_waits_for_it(
    tmp_path: Path, private_pg: PrivatePostgres, redis_url: str,
) -> None:
    env = clean_env(tmp_path / "data", PIPELINE_DATABASE_URL=private_pg.url, PIPELINE_BROKER_URL=redis_url,
                    PIPELINE_AS_OF="2025-06-30")
    assert pipeline(env, "init").returncode == 0
    private_pg.stop()
    worker = start_while_down(private_pg, env, tmp_path / "worker.log", "worker", "--pool", "solo")
    try:
        rows = [row(k, as_of=date(2025, 6, 1), ytd_completed=0) for k in range(1, 4)]
        done = pipeline(env, "import", str(write_template(rows, tmp_path / "june.csv")), timeout=180)
        assert done.returncode == 0, done.stdout + done.stderr  # waited for the worker to apply it
    finally:
        worker.terminate()
        worker.wait(timeout=30)
