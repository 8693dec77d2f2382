"""Engine and session factory. Nothing is built at import; callers pass settings in."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial

from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

# No JIT compilation: our statements read a chunk or a page each, where compiling them costs more
# than it saves (20–90 ms a statement once the planner's estimates pass jit_above_cost).
POSTGRES_SESSION_OPTIONS = "-c jit=off"
READ_ONLY = "pipeline_read_only"  # the execution option that marks a read-only session's connection


def make_engine(url: str, *, echo: bool = False, statement_timeout: int | None = None,
                lock_timeout: int | None = None) -> Engine:
    """An engine for the URL; SQLite gets WAL, foreign keys and a busy timeout for many processes;
    PostgreSQL sessions get statement and lock timeouts (seconds), so nothing waits for ever."""
    if url.startswith("sqlite"):
        # JSON kept as UTF-8 text rather than ASCII escapes: a Chinese character takes 3 bytes, not 6.
        engine = create_engine(url, echo=echo, connect_args={"timeout": 30},
                               json_serializer=partial(json.dumps, ensure_ascii=False))

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
            dbapi_conn.isolation_level = None  # we emit BEGIN ourselves, below
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin(conn) -> None:  # type: ignore[no-untyped-def]
            # A session that writes takes the write lock at the start, so that a transaction that
            # read a batch as waiting can never be refused the upgrade to writer (SQLite's
            # stale-snapshot BUSY) half-way. A read-only session (make_read_session_factory) takes
            # no lock at all: under WAL it reads its snapshot while a writer works.
            conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get(READ_ONLY) else "BEGIN IMMEDIATE")

        return engine
    options = " ".join([*(f"-c {name}={seconds * 1000}" for name, seconds in
                          (("statement_timeout", statement_timeout), ("lock_timeout", lock_timeout)) if seconds),
                        POSTGRES_SESSION_OPTIONS])
    return create_engine(url, echo=echo, pool_pre_ping=True, connect_args={"options": options})


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


def make_read_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions for work that only reads (pages, lists, figures): on SQLite they never take the
    write lock, so they neither wait for a long import nor hold one up."""
    return sessionmaker(bind=engine.execution_options(**{READ_ONLY: True}), expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any error."""
    session = factory()
    try:
        yield session
    except BaseException:
        end_session(session, commit=False)
        raise
    end_session(session, commit=True)


def end_session(session: Session, *, commit: bool) -> None:
    """End a unit of work (``session_scope``'s, or one begun outside it): commit it (or roll it
    back), then close."""
    try:
        if commit:
            session.commit()
        else:
            session.rollback()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def dialect_insert(session: Session, table: Any) -> Any:
    """An INSERT with ON CONFLICT support for the session's database (PostgreSQL or SQLite)."""
    name = session.get_bind().dialect.name
    return (postgresql.insert if name == "postgresql" else sqlite.insert)(table)
