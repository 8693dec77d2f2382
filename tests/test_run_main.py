"""The README's first command: `pipeline run --once` on embedded defaults, from an empty folder."""

from __future__ import annotations

import email
import email.policy
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from tests.cli_helpers import clean_env, pipeline
from tests.receivers import free_port


def test_run_once_loads_flags_and_summarises_the_demo_reserve(tmp_path: Path) -> None:
    env = clean_env(tmp_path / "data")
    done = pipeline(env, "run", "--once", timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    for words in ("红牌", "黄牌", "绿牌", "开工率", "竣工率", "入统率", "全市", "2024-12-31"):
        assert words in out
    engine = create_engine(f"sqlite:///{tmp_path / 'data' / 'pipeline.sqlite3'}")
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM projects")) == 1463
        assert conn.scalar(text("SELECT count(*) FROM project_flags")) == 1463
        assert conn.scalar(text("SELECT count(*) FROM import_batches WHERE status = 'applied'")) == 12
        colours = dict(conn.execute(text("SELECT effective_color, count(*) FROM project_flags GROUP BY 1")).all())
    engine.dispose()
    assert set(colours) == {"red", "yellow", "green"}
    # A second run finds everything in place and adds nothing.
    again = pipeline(env, "run", "--once", timeout=300)
    assert again.returncode == 0, again.stderr
    engine = create_engine(f"sqlite:///{tmp_path / 'data' / 'pipeline.sqlite3'}")
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM import_batches")) == 12
        updates = conn.scalar(text("SELECT count(*) FROM status_updates"))
        assert updates == conn.scalar(text("SELECT sum(accepted_rows) FROM import_batches"))
    engine.dispose()


def test_run_keeps_serving_the_workspace_until_interrupted(tmp_path: Path) -> None:
    """`pipeline run` without --once: the worker, scheduler, sender and the web workspace, with a
    first office account to sign in with; Ctrl+C stops every child process."""
    port = free_port()
    env = clean_env(tmp_path / "data")
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "run", "--port", str(port), "--sweep-every", "5"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 600
        password_file = tmp_path / "data" / "office-password.txt"
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            try:
                if password_file.exists() and httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(1)
        else:
            raise AssertionError("the workspace never answered")
        password = password_file.read_text(encoding="utf-8").strip()
        with httpx.Client(base_url=base, timeout=10) as client:
            assert client.get("/api/projects").status_code == 401
            login = client.get("/login")
            csrf = re.search(r'name="csrf_token" value="([^"]+)"', login.text)
            assert csrf, login.text
            signed_in = client.post("/login", data={"username": "office", "password": password,
                                                     "csrf_token": csrf.group(1), "next": "/"})
            assert signed_in.status_code == 303
            overview = client.get("/")
            assert overview.status_code == 200 and "红牌" in overview.text
            assert client.get("/api/projects", params={"color": "red"}).json()["total"] > 0
        kept = list((tmp_path / "data" / "outbox").glob("*.eml"))  # no SMTP: red notices kept as .eml files
        assert kept
        # PIPELINE_PUBLIC_URL unset: the links in the messages point where this run serves the workspace
        message = email.message_from_bytes(kept[0].read_bytes(), policy=email.policy.default)
        body = message.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
        assert f"http://127.0.0.1:{port}/projects/" in body, body
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "网页工作台" in out and "初始密码" in out
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{base}/health", timeout=2)


def start_run(env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "pipeline", "run", "--no-demo", "--port", str(port),
                                 "--sweep-every", "5"], env=env, stdout=out, stderr=subprocess.STDOUT)


def wait_serving(proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + 300
    while True:
        assert proc.poll() is None, log.read_text(encoding="utf-8")
        assert time.monotonic() < deadline, "the workspace never answered"
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)


def serving_run(tmp_path: Path) -> tuple[subprocess.Popen[bytes], Path, list]:
    """`pipeline run` serving the workspace, with the processes it started."""
    import psutil

    port = free_port()
    log = tmp_path / "run.log"
    proc = start_run(clean_env(tmp_path / "data"), port, log)
    try:
        wait_serving(proc, port, log)
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= 2  # the worker and the web server at least
    except BaseException:
        proc.kill()
        raise
    return proc, log, children


def assert_all_ended(children: list, timeout: float) -> None:
    import psutil

    _, alive = psutil.wait_procs(children, timeout=timeout)
    survivors = [f"{p.pid} {p.cmdline()}" for p in alive]
    for p in alive:
        p.kill()
    assert not survivors, survivors


def test_sigterm_stops_run_and_every_child_it_started(tmp_path: Path) -> None:
    proc, log, children = serving_run(tmp_path)
    try:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=90) == 0, log.read_text(encoding="utf-8")
    finally:
        if proc.poll() is None:
            proc.kill()
    assert_all_ended(children, timeout=30)


def test_children_end_when_run_is_killed_outright(tmp_path: Path) -> None:
    """SIGKILL gives `run` no chance to stop its children: they end by themselves (Linux's
    parent-death signal) instead of serving and working on as orphans."""
    proc, _, children = serving_run(tmp_path)
    proc.kill()
    proc.wait(timeout=30)
    assert_all_ended(children, timeout=60)


def test_run_on_a_taken_port_says_so_and_exits(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = pipeline(clean_env(tmp_path / "data"), "run", "--no-demo", "--port", str(port), timeout=120)
        served = pipeline(clean_env(tmp_path / "data"), "serve", "--port", str(port), timeout=120)
    for result in (done, served):
        assert result.returncode == 1, result.stdout + result.stderr
        assert f"端口 {port} 已被占用" in result.stderr and "--port" in result.stderr, result.stderr
        assert "Traceback" not in result.stdout + result.stderr
