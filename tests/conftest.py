"""Shared fixtures: runtimes on SQLite, and the real PostgreSQL and Redis of the machine.

The PostgreSQL and Redis tests skip on a machine without those servers, except under CI=true,
where a missing server is an error.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from pipeline.migrate import upgrade
from pipeline.runtime import Runtime, set_runtime
from pipeline.settings import load_settings

PG_ADMIN_URL = os.environ.get("PIPELINE_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("PIPELINE_TEST_REDIS_URL", "redis://127.0.0.1:6379")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    if not _port_open(host, port):
        if IN_CI:
            pytest.fail(f"{name} is not reachable at {host}:{port}; under CI=true it must run")
        pytest.skip(f"{name} not running at {host}:{port}")


def make_runtime(tmp_path: Path, **overrides: object) -> Runtime:
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


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A Redis database of its own for one test (flushed before and after)."""
    require_service("Redis", "127.0.0.1", 6379)
    import redis

    db = 11
    url = f"{REDIS_URL}/{db}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    try:
        yield url
    finally:
        client.flushdb()
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
