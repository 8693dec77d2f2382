"""Shared fixtures: runtimes on SQLite, the machine's real PostgreSQL, and a real Redis.

Every PostgreSQL database a test uses is created for it and dropped after; Redis is a
redis-server of this run's own, so two runs on one machine never disturb each other. These
tests skip on a machine without the servers, except under CI=true, where that is an error.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import settings as hypothesis_settings
from sqlalchemy import create_engine, text

from pipeline.migrate import upgrade
from pipeline.runtime import Runtime, set_runtime
from pipeline.settings import load_settings

# No test depends on speed: an example is never failed for taking long (hypothesis's default
# deadline is 200 ms of wall-clock time per example).
hypothesis_settings.register_profile("pipeline", deadline=None)
hypothesis_settings.load_profile("pipeline")

# Every test runtime's wall clock starts here (PIPELINE_NOW), so that no test depends on today's
# date; a test that travels in time itself (time-machine) passes now=None.
PINNED_NOW = datetime(2024, 12, 31, 10, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
PG_ADMIN_URL = os.environ.get("PIPELINE_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def require_service(name: str, host: str, port: int) -> None:
    if not _port_open(host, port):
        if IN_CI:
            pytest.fail(f"{name} is not reachable at {host}:{port}; under CI=true it must run")
        pytest.skip(f"{name} not running at {host}:{port}")


def make_runtime(tmp_path: Path, **overrides: object) -> Runtime:
    overrides.setdefault("now", PINNED_NOW)
    settings = load_settings(data_dir=tmp_path / "data", **overrides)
    rt = Runtime(settings)
    upgrade(rt.engine)
    set_runtime(rt)
    return rt


@pytest.fixture
def sqlite_runtime(tmp_path: Path) -> Iterator[Runtime]:
    rt = make_runtime(tmp_path)
    yield rt
    rt.dispose()
    set_runtime(None)


@pytest.fixture
def pg_factory() -> Iterator[Callable[[], str]]:
    """Creates fresh PostgreSQL databases for one test; all are dropped afterwards."""
    require_service("PostgreSQL", "127.0.0.1", 5432)
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    created: list[str] = []

    def create() -> str:
        name = f"pipeline_test_{uuid.uuid4().hex[:10]}"
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        created.append(name)
        return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"

    try:
        yield create
    finally:
        with admin.connect() as conn:
            for name in created:
                conn.execute(text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n AND pid <> pg_backend_pid()"
                ), {"n": name})
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


@pytest.fixture
def pg_url(pg_factory: Callable[[], str]) -> str:
    """A fresh PostgreSQL database for one test."""
    return pg_factory()


def service_env() -> dict[str, str]:
    """The environment of a program the tests start that does not run well under libfaketime:
    redis-server (built with jemalloc) does not start at all, and Chromium's zygote fails (a page's
    navigation then never finishes). In a `.ci/at-date` run they keep the real clock, as the
    machine's PostgreSQL does; every process of ours runs on the moved one."""
    env = dict(os.environ)
    if "faketime" in env.get("LD_PRELOAD", ""):
        del env["LD_PRELOAD"]
    return env


class PrivateRedis:
    """A redis-server of this test run's own, on a free port: no other run can flush or restart it.

    Each test takes the next of its 16 databases and flushes it before and after; a fault test may
    stop and start the server (``restart``) without disturbing anything outside this run.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._next_db = 0

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise FileNotFoundError("redis-server")
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.folder), "--logfile", str(self.folder / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=service_env(),
        )
        deadline = time.monotonic() + 15
        while not _port_open("127.0.0.1", self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def restart(self) -> None:
        """Kill the server (everything in memory is lost, as a Redis without AOF) and start it again."""
        self.stop()
        self.start()

    def url(self, db: int) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def next_url(self) -> str:
        db = self._next_db % 16
        self._next_db += 1
        return self.url(db)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path_factory.mktemp("redis"))
    try:
        server.start()
    except FileNotFoundError:
        if IN_CI:
            pytest.fail("redis-server is not installed; under CI=true the Redis tests must run")
        pytest.skip("redis-server not installed")
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: PrivateRedis) -> Iterator[str]:
    """A Redis database of this test's own, on this run's private server (flushed before and after)."""
    import redis

    url = redis_server.next_url()
    client = redis.Redis.from_url(url)
    client.flushdb()
    try:
        yield url
    finally:
        try:
            client.flushdb()
        except redis.ConnectionError:
            pass  # a fault test left the server down
        client.close()


@pytest.fixture(params=["sqlite", "postgres"])
def any_runtime(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Runtime]:
    """The same test on the embedded SQLite and on the real PostgreSQL."""
    from datetime import date

    if request.param == "sqlite":
        rt = make_runtime(tmp_path, as_of=date(2024, 12, 31))
    else:
        url = request.getfixturevalue("pg_url")
        rt = make_runtime(tmp_path, database_url=url, as_of=date(2024, 12, 31))
    yield rt
    rt.dispose()
    set_runtime(None)
