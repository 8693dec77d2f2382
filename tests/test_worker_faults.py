"""Exactly once with real worker processes on the real Redis and PostgreSQL.

Each scenario (imports repeated, tasks delivered twice, a worker SIGKILLed half-way through a
batch) must leave the database as one clean, in-process run leaves it.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from sqlalchemy import create_engine, func, select, text

from pipeline.db import make_engine
from pipeline.ingest.export import write_template
from pipeline.models import ImportBatch
from tests.conftest import PrivateRedis, make_runtime
from tests.db_dump import dump
from tests.factories import ACTOR, code, row
from tests.receivers import free_port

AS_OF = "2024-12-31"
COMPOSE = Path(__file__).resolve().parent.parent / "docker-compose.yml"
PROJECTS = 150


QUARTER = ((10, 31), (11, 30), (12, 31))
HALF_YEAR = ((7, 31), (8, 31), (9, 30), *QUARTER)
YEAR = ((1, 31), (2, 29), (3, 31), (4, 30), (5, 31), (6, 30), *HALF_YEAR)


def monthly_files(folder: Path, months: tuple[tuple[int, int], ...] = QUARTER, projects: int = PROJECTS) -> list[Path]:
    """Monthly reports of the same projects; some slip, some stop reporting, one row is bad."""
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for month, day in months:
        rows = []
        for n in range(1, projects + 1):
            if n % 10 == 0 and month == 12:
                continue  # stopped reporting
            pace = Decimal(n % 7 + 3) / 10  # 0.3 .. 0.9 of the time-proportional target
            rows.append(row(
                n, as_of=date(2024, month, day), annual_plan=Decimal("12000"),
                ytd_completed=(Decimal(1000 * month) * pace).quantize(Decimal("1")),
                cumulative_completed=Decimal("30000"), needs_coordination=(n % 13 == 0),
            ))
        path = folder / f"2024-{month:02d}.csv"
        write_template(rows, path)
        with path.open("a", encoding="utf-8") as fh:  # one bad row per file: unknown county
            fh.write(f"{code(999)},坏行项目,火星区,,,续建,100,,,,,,,,,,,,,2024-{month:02d}-{day}\n")
        files.append(path)
    return files


def pipeline_env(db_url: str, broker_url: str, data_dir: Path, *, shipped_sweep: bool = False) -> dict[str, str]:
    """The processes' environment; fast sweeps unless ``shipped_sweep`` (the defaults a user gets)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")}
    env.update(PIPELINE_DATABASE_URL=db_url, PIPELINE_BROKER_URL=broker_url, PIPELINE_DATA_DIR=str(data_dir),
               PIPELINE_AS_OF=AS_OF)
    if not shipped_sweep:
        env.update(PIPELINE_SWEEP_AFTER_SECONDS="2", PIPELINE_VISIBILITY_TIMEOUT="5")
    return env


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pipeline", *args], env=env, capture_output=True, text=True,
                          timeout=120)


class Workers:
    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env, self.log_dir, self.procs = env, log_dir, []

    def start(self, name: str, pool: str = "solo") -> subprocess.Popen[bytes]:
        log = (self.log_dir / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline", "worker", "--pool", pool, "--hostname", f"{name}@test",
             "--loglevel", "INFO"],
            env=self.env, stdout=log, stderr=subprocess.STDOUT,
        )
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Callable[[dict[str, str]], Workers]]:
    made: list[Workers] = []

    def make(env: dict[str, str]) -> Workers:
        w = Workers(env, tmp_path)
        made.append(w)
        return w

    yield make
    for w in made:
        w.stop_all()


def wait_all_applied(db_url: str, timeout: float = 90) -> None:
    engine = make_engine(db_url)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                waiting = conn.scalar(select(func.count()).select_from(ImportBatch).where(ImportBatch.status == "received"))
                total = conn.scalar(select(func.count()).select_from(ImportBatch))
            if total and not waiting:
                return
            time.sleep(0.3)
        raise AssertionError(f"batches still waiting after {timeout}s")
    finally:
        engine.dispose()


def clean_run(files: list[Path], db_url: str, tmp_path: Path, *, any_arrival_order: bool = False) -> dict:
    """The reference: the same files imported once, applied in-process, in order."""
    from pipeline.tasks.dispatch import apply_inline, pending_batches
    from pipeline.db import session_scope
    from pipeline.ingest.submit import receive_file

    rt = make_runtime(tmp_path / "clean", database_url=db_url, as_of=date.fromisoformat(AS_OF))
    for path in files:
        with session_scope(rt.session_factory) as s:
            receive_file(s, path, reference=rt.reference, max_bytes=10**8, clock=rt.clock, actor=ACTOR)
    apply_inline(rt, pending_batches(rt))
    picture = dump(rt.engine, any_arrival_order=any_arrival_order)
    rt.dispose()
    return picture


@pytest.mark.usefixtures("redis_url")
def test_imports_repeated_and_tasks_delivered_twice_land_once(
    tmp_path: Path, pg_factory, redis_url: str, workers
) -> None:
    files = monthly_files(tmp_path / "files")
    expected = clean_run(files, pg_factory(), tmp_path)

    db_url = pg_factory()
    env = pipeline_env(db_url, redis_url, tmp_path / "data")
    assert cli(env, "init").returncode == 0
    for _ in range(2):  # the same import, twice, before any worker runs
        done = cli(env, "import", "--no-wait", *map(str, files))
        assert done.returncode == 0, done.stderr
    # Every batch's task delivered once more, on top of what the imports queued.
    from pipeline.runtime import Runtime
    from pipeline.settings import load_settings
    from pipeline.tasks.dispatch import enqueue_batches

    rt = Runtime(load_settings(database_url=db_url, broker_url=redis_url, data_dir=tmp_path / "data"))
    with rt.engine.connect() as conn:
        ids = list(conn.scalars(select(ImportBatch.id)))
    assert enqueue_batches(rt, ids) == len(ids) == 3
    rt.dispose()

    pool = workers(env)
    pool.start("w1")
    pool.start("w2")
    wait_all_applied(db_url)
    time.sleep(2)  # let the duplicate deliveries run too: they must change nothing
    engine = make_engine(db_url)
    assert order_free(dump(engine)) == order_free(expected)  # the workers may apply the batches together
    engine.dispose()


def test_worker_killed_half_way_through_a_batch(tmp_path: Path, pg_factory, redis_url: str, workers) -> None:
    files = monthly_files(tmp_path / "files")
    # The lost batch may be applied after the next month's (a merge: the newest 报告期 wins), so
    # the picture compared is the one that must not depend on the order of arrival.
    expected = clean_run(files, pg_factory(), tmp_path, any_arrival_order=True)

    db_url = pg_factory()
    env = pipeline_env(db_url, redis_url, tmp_path / "data")
    assert cli(env, "init").returncode == 0
    pool = workers(env)
    first = pool.start("w1")
    assert cli(env, "import", "--no-wait", str(files[0])).returncode == 0
    wait_all_applied(db_url)

    # Hold a lock on one project's current state (the next batch's report for it wins the merge and
    # must write it) so the next batch's task stops half-way, inside its transaction.
    blocker = create_engine(db_url)
    conn = blocker.connect()
    tx = conn.begin()
    conn.execute(text("SELECT s.project_id FROM project_states s JOIN projects p ON p.id = s.project_id "
                      "WHERE p.code = :c FOR UPDATE OF s"), {"c": code(1)})
    assert cli(env, "import", "--no-wait", str(files[1])).returncode == 0
    watcher = make_engine(db_url)
    deadline = time.monotonic() + 30
    while True:
        with watcher.connect() as w:
            blocked = w.scalar(text(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
            ))
        if blocked:
            break
        assert time.monotonic() < deadline, "the worker never reached the locked project"
        time.sleep(0.2)
    with watcher.connect() as w:
        assert w.scalar(text("SELECT status FROM import_batches WHERE id = 2")) == "received"
        assert w.scalar(text("SELECT count(*) FROM status_updates WHERE batch_id = 2 AND status <> 'pending'")) == 0

    first.send_signal(signal.SIGKILL)  # the worker dies with the batch half-applied
    first.wait(timeout=10)
    tx.rollback()
    conn.close()
    blocker.dispose()

    assert cli(env, "import", "--no-wait", str(files[2])).returncode == 0
    pool.start("w2")
    # The lost task comes back from Redis after its visibility timeout, or from the sweeper.
    sweeper = subprocess.Popen([sys.executable, "-m", "pipeline", "sweep", "--loop", "1"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_all_applied(db_url)
    finally:
        sweeper.terminate()
        sweeper.wait(timeout=10)
    time.sleep(1)
    assert dump(watcher, any_arrival_order=True) == expected
    with watcher.connect() as w:
        assert w.scalar(text("SELECT attempts FROM import_batches WHERE id = 2")) >= 2
    watcher.dispose()


def test_a_batch_recorded_while_the_broker_is_down_is_queued_by_the_sweeper(
    tmp_path: Path, pg_factory, redis_url: str, workers,
) -> None:
    files = monthly_files(tmp_path / "files")[:1]
    expected = clean_run(files, pg_factory(), tmp_path)
    db_url = pg_factory()
    down = pipeline_env(db_url, f"redis://127.0.0.1:{free_port()}/0", tmp_path / "data")
    assert cli(down, "init").returncode == 0
    recorded = cli(down, "import", "--no-wait", str(files[0]))
    assert recorded.returncode == 0, recorded.stderr
    assert "消息队列暂不可用" in recorded.stderr
    engine = make_engine(db_url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT status, enqueued_at FROM import_batches")).all() == [("received", None)]
    env = pipeline_env(db_url, redis_url, tmp_path / "data")
    workers(env).start("w1")
    swept = cli(env, "sweep")  # one round: the batch was never queued, so it goes now
    assert swept.returncode == 0 and "已重新排队 1 个批次" in swept.stdout
    wait_all_applied(db_url)
    time.sleep(1)
    assert dump(engine) == expected
    engine.dispose()


def order_free(picture: dict) -> dict:
    """A dump without what depends on the order batches were applied in: the flag history (each
    apply re-judges from what has arrived so far) and how many of a batch's applied rows were
    superseded on arrival (a later month applied first supersedes an earlier one)."""
    batches = [b[:7] for b in picture["batches"]]
    return {**{k: v for k, v in picture.items() if k != "history"}, "batches": batches}


def wait_for_a_delivery_held_mid_apply(db_url: str, timeout: float = 60) -> None:
    """Until a session of the database waits for a lock (a delivery stopped inside its transaction)."""
    engine = make_engine(db_url)
    deadline = time.monotonic() + timeout
    try:
        while True:
            with engine.connect() as conn:
                if conn.scalar(text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                    "AND datname = current_database()")):
                    return
            assert time.monotonic() < deadline, "no delivery reached the held lock"
            time.sleep(0.1)
    finally:
        engine.dispose()


def batch_states(db_url: str) -> list[tuple[int, str, int]]:
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text("SELECT id, status, attempts FROM import_batches ORDER BY id"))]
    finally:
        engine.dispose()


def start_sweeper(env: dict[str, str], log: Path, every: str = "1") -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "pipeline", "sweep", "--loop", every], env=env,
                                stdout=out, stderr=subprocess.STDOUT)


def test_a_sigkill_storm_through_a_multi_batch_import(tmp_path: Path, pg_factory, redis_url: str, workers) -> None:
    """Workers SIGKILLed again and again while twelve monthly batches apply: in the end every batch is
    applied once, exactly as a clean run leaves the database, and none is failed; only deliveries
    that began applying count: a kill ends one delivery, which counted each of its batches once
    (a delivery applies the batches queued beside its own with it), so a batch counts at most one
    delivery per kill on top of its own."""
    from pipeline.reflag import LOCK_CLASS

    files = monthly_files(tmp_path / "files", YEAR, projects=600)
    expected = clean_run(files, pg_factory(), tmp_path)
    db_url = pg_factory()
    env = pipeline_env(db_url, redis_url, tmp_path / "data")
    assert cli(env, "init").returncode == 0
    # The first kills land while a delivery is inside its transaction, whatever the machine's speed:
    # until then this connection holds the re-flag lock of the projects' ids (1-600), which every
    # apply takes after its merge.
    holder = make_engine(db_url)
    hold = holder.connect().execution_options(isolation_level="AUTOCOMMIT")
    hold.execute(text("SELECT pg_advisory_lock(:cls, 0)"), {"cls": LOCK_CLASS})
    held_kills = 3
    pool = workers(env)
    live = [pool.start("w0"), pool.start("w1")]
    sweeper = start_sweeper(env, tmp_path / "sweeper.log")
    kills = 0
    try:
        done = cli(env, "import", "--no-wait", *map(str, files))
        assert done.returncode == 0, done.stderr
        rng = random.Random(10)
        while kills < 10 and any(status == "received" for _, status, _ in batch_states(db_url)):
            if kills < held_kills:
                wait_for_a_delivery_held_mid_apply(db_url)
            else:
                time.sleep(rng.uniform(0.2, 1.0))
            victim = live.pop(rng.randrange(len(live)))
            victim.send_signal(signal.SIGKILL)
            victim.wait(timeout=10)
            kills += 1
            live.append(pool.start(f"w{kills + 1}"))
            if kills == held_kills:
                hold.execute(text("SELECT pg_advisory_unlock(:cls, 0)"), {"cls": LOCK_CLASS})
        wait_all_applied(db_url, timeout=180)
    finally:
        hold.close()
        holder.dispose()
        sweeper.terminate()
        sweeper.wait(timeout=30)
    time.sleep(1)
    print(f"SIGKILLs: {kills}, attempts: {sum(a for _, _, a in batch_states(db_url))}")
    assert kills >= 3, "the batches were applied before the storm got going"
    states = batch_states(db_url)
    assert [status for _, status, _ in states] == ["applied"] * len(files), states
    assert all(attempts <= 1 + kills for _, _, attempts in states), states
    engine = make_engine(db_url)
    got, want = order_free(dump(engine)), order_free(expected)
    engine.dispose()
    assert got["batches"] == want["batches"]
    assert got == want


def test_redis_restarted_empty_mid_import_everything_applied_within_a_minute(
    tmp_path: Path, pg_factory, workers,
) -> None:
    """The broker loses every message (a Redis without AOF restarted) while deliveries are stalled
    and the other batches wait in its queue. With the shipped sweep settings and the compose file's
    sweeper interval, every batch is applied within a minute of the restart, once (the lost ones
    queued again by the sweeper, or taken on by a delivery beside its own)."""
    files = monthly_files(tmp_path / "files", HALF_YEAR)
    expected = clean_run(files, pg_factory(), tmp_path)
    redis = PrivateRedis(tmp_path)  # this test's own server: restarting it disturbs nothing else
    redis.start()
    db_url = pg_factory()
    env = pipeline_env(db_url, redis.url(0), tmp_path / "data", shipped_sweep=True)
    compose = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))["services"]["sweeper"]["command"]
    sweeper = None
    try:
        assert cli(env, "init").returncode == 0
        # Hold the batches' rows so the first deliveries stop before they apply; the rest wait in the queue.
        done = cli(env, "import", "--no-wait", *map(str, files))
        assert done.returncode == 0, done.stderr
        blocker = make_engine(db_url).connect()
        tx = blocker.begin()
        blocker.execute(text("SELECT id FROM import_batches FOR UPDATE"))
        pool = workers(env)
        pool.start("w1")
        pool.start("w2")
        sweeper = start_sweeper(env, tmp_path / "sweeper.log", every=compose[2])
        watcher = make_engine(db_url)

        def applying() -> int:
            with watcher.connect() as w:
                return int(w.scalar(text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                         "AND datname = current_database()")))

        deadline = time.monotonic() + 60
        while not applying():
            assert time.monotonic() < deadline, "no worker reached the locked project"
            time.sleep(0.2)
        redis.restart()  # every queued and unacknowledged message is gone
        tx.rollback()
        blocker.close()
        waiting = [b for b, status, _ in batch_states(db_url) if status == "received"]
        assert waiting, "every batch was applied before the restart: nothing was lost"
        wait_all_applied(db_url, timeout=60)
        time.sleep(1)
        assert [status for _, status, _ in batch_states(db_url)] == ["applied"] * len(files)
        assert order_free(dump(watcher)) == order_free(expected)
        watcher.dispose()
    finally:
        if sweeper is not None:
            sweeper.terminate()
            sweeper.wait(timeout=30)
        for made in pool.procs if "pool" in locals() else []:
            made.terminate()
        redis.stop()
