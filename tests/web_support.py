"""Helpers for the web tests: runtimes with accounts, a real uvicorn server on a free local port."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI

from pipeline.accounts import add_user, create_token
from pipeline.db import session_scope
from pipeline.demo.seed import seed_demo
from pipeline.runtime import Runtime, set_runtime
from pipeline.tasks.dispatch import apply_inline
from pipeline.web import create_app
from tests.conftest import make_runtime
from tests.factories import ACTOR

AS_OF = date(2024, 12, 31)
PASSWORD = "correct-horse-battery"


def demo_runtime(tmp_path: Path, **overrides: Any) -> Runtime:
    """A SQLite runtime holding the demo reserve, applied and flagged, as of 2024-12-31."""
    rt = make_runtime(tmp_path, as_of=AS_OF, **overrides)
    _load_demo(rt)
    return rt


def _load_demo(rt: Runtime) -> None:
    with session_scope(rt.session_factory) as session:
        ids = seed_demo(session, seed=2024, reference=rt.reference, clock=rt.clock)
    apply_inline(rt, ids)


@contextmanager
def demo_loaded(folder: Path, **overrides: Any) -> Iterator[Runtime]:
    """``demo_runtime`` for the length of a block (a module's fixture), disposed of after."""
    with running(folder, as_of=AS_OF, **overrides) as rt:
        _load_demo(rt)
        yield rt


def user(rt: Runtime, username: str, role: str, *, leader: str | None = None, unit: str | None = None,
         password: str = PASSWORD) -> str:
    """Create a user and return a fresh API token of theirs."""
    with session_scope(rt.session_factory) as session:
        add_user(session, username=username, role=role, password=password, clock=rt.clock, actor=ACTOR,
                 leader=leader, unit=unit)
        return create_token(session, username=username, clock=rt.clock, actor=ACTOR)


def login(client: Any, username: str, password: str = PASSWORD) -> str:
    """Sign in through the form; returns the session's CSRF token."""
    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    answer = client.post("/login", data={"username": username, "password": password, "csrf_token": token},
                         follow_redirects=False)
    assert answer.status_code == 303, answer.text
    home = client.get("/")
    return re.search(r'name="csrf_token" value="([^"]+)"', home.text).group(1)  # type: ignore[union-attr]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """Run the app under uvicorn on 127.0.0.1 in a thread; yields its base URL; stops it after."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def web_app(rt: Runtime) -> FastAPI:
    return create_app(rt)


UNIT_A = "荆州区人民政府"
UNIT_B = "沙市区人民政府"
LEADER_A = "王建国"
LEADER_B = "李明"


def small_reserve(rt: Runtime, *names: str) -> None:
    """Projects 1–4 as of 2024-12-31: 1 and 2 of unit A / leader A, 3 and 4 of unit B / leader B.

    Project 1 has not started on time (red); ``names`` replace the names of projects 1, 2, … in order.
    """
    from dataclasses import replace as _replace

    from pipeline.ingest.record import record_batch
    from tests.factories import row

    rows = [
        row(1, as_of=date(2024, 12, 31), nature="新开工", planned_start=date(2024, 3, 1), actual_start=None,
            stats_included_on=None, ytd_completed=None, cumulative_completed=None, unit=UNIT_A, leader=LEADER_A),
        row(2, as_of=date(2024, 12, 31), ytd_completed=Decimal("12000"), unit=UNIT_A, leader=LEADER_A),
        row(3, as_of=date(2024, 12, 31), county="沙市区", nature="新开工", planned_start=date(2024, 2, 1),
            actual_start=None, stats_included_on=None, ytd_completed=None, cumulative_completed=None,
            unit=UNIT_B, leader=LEADER_B),
        row(4, as_of=date(2024, 12, 31), county="沙市区", ytd_completed=Decimal("12000"), unit=UNIT_B, leader=LEADER_B),
    ]
    rows = [_replace(r, name=names[i]) if i < len(names) else r for i, r in enumerate(rows)]
    with session_scope(rt.session_factory) as session:
        batch = record_batch(session, source="file", filename="t.xlsx", content_sha256=None, total_rows=len(rows),
                             rows=rows, errors=[], clock=rt.clock).batch_id
    apply_inline(rt, [batch])


CSRF_IN_PAGE = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_in(html: str) -> str:
    found = CSRF_IN_PAGE.search(html)
    assert found, html[:500]
    return found.group(1)


def login(client: Any, username: str, password: str = PASSWORD) -> str:
    """Sign in through the form (a TestClient or an httpx.Client); returns the session's CSRF token."""
    token = csrf_in(client.get("/login").text)
    answer = client.post("/login", data={"username": username, "password": password, "csrf_token": token},
                         follow_redirects=False)
    assert answer.status_code == 303, answer.text
    return csrf_in(client.get("/").text)


def try_login(client: Any, username: str, password: str, **kwargs: Any) -> Any:
    """One attempt at the login form; returns the answer (303 signed in, 401 wrong, 429 locked)."""
    token = csrf_in(client.get("/login", **kwargs).text)
    return client.post("/login", data={"username": username, "password": password, "csrf_token": token},
                       follow_redirects=False, **kwargs)


@contextmanager
def serve_process(env: dict[str, str]) -> Iterator[str]:
    """`pipeline serve` as a real process on a free port; yields its base URL; stops it after."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "serve", "--host", "127.0.0.1", "--port", str(port)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    out = proc.stdout.read().decode("utf-8", "replace") if proc.stdout else ""
                    raise RuntimeError(f"pipeline serve did not start: {out}") from None
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def running(tmp_path: Path, **overrides: Any) -> Iterator[Runtime]:
    """A runtime on SQLite under tmp_path with these settings, disposed of afterwards."""
    rt = make_runtime(tmp_path, **overrides)
    try:
        yield rt
    finally:
        rt.dispose()
        set_runtime(None)
