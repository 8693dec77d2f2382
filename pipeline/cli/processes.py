"""Long-running commands: the Celery worker, the sweeper, and `run`, the main job."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from typing import TYPE_CHECKING

import typer

from pipeline.cli.app import app, cli_actor, console, err_console, fail, log_to_stderr, runtime
from pipeline.cli.reserve import ensure_database, wait_applied
from pipeline.cli.parent import end_with_parent, parent_marker

if TYPE_CHECKING:
    from pipeline.runtime import Runtime

PUBLIC_URL_VARIABLE = "PIPELINE_PUBLIC_URL"


@app.command("worker")
def worker_cmd(
    concurrency: int = typer.Option(1, help="并发处理进程数"),
    pool: str = typer.Option("prefork", help="进程池类型：prefork 或 solo"),
    loglevel: str = typer.Option("INFO", help="日志级别"),
    hostname: str = typer.Option(None, help="处理进程名称（默认自动生成）"),
    queues: str = typer.Option("pipeline.ingest,pipeline.alerts",
                               help="处理的队列，逗号分隔：pipeline.ingest（入库、重评）、pipeline.alerts（发送提醒）"),
) -> None:
    """启动一个 Celery 处理进程，从消息队列取任务入库并重新挂牌。"""
    from workers.celery_app import celery_for

    end_with_parent()
    rt = runtime()
    rt.check_config()
    wait_for_database(rt)
    app_ = celery_for(rt.settings)
    argv = ["worker", "-Q", queues, "-l", loglevel, "-c", str(concurrency), "-P", pool, "--without-gossip",
            "--without-mingle", "--without-heartbeat"]
    if hostname:
        argv += ["-n", hostname]
    app_.worker_main(argv)


@app.command("sweep")
def sweep_cmd(
    loop: float = typer.Option(0.0, help="每隔多少秒检查一次（0 表示只检查一次）"),
) -> None:
    """补发：把已入库但超时未处理的批次、未完成的全量重评分块重新排队（夜间重评由调度程序执行）。

    持续运行（--loop）时，数据库或消息队列暂时不可用只记录日志，恢复后继续，进程不退出。"""
    from pipeline.alerts.channels.base import short
    from pipeline.tasks.dispatch import sweep_once

    rt = runtime()
    if loop <= 0:
        ensure_database(rt)
        report_swept(sweep_once(rt))
        return
    log_to_stderr(rt)
    wait_for_database(rt)
    while True:
        try:
            report_swept(sweep_once(rt))
        except Exception as exc:  # an outage (database, broker) or a fault: logged, tried again next round
            logging.getLogger("pipeline.sweep").warning("补发检查失败，%g 秒后重试：%s", loop, short(str(exc), 200))
        time.sleep(loop)


def report_swept(ids: list[int]) -> None:
    if ids:
        console.print(f"已重新排队 {len(ids)} 个批次：{ids}", highlight=False)


def wait_for_database(rt: Runtime) -> None:
    """Upgrade the database, waiting for it while it is down or starting up (a long-running
    process outlives the database's restart instead of ending)."""
    from pipeline.outage import DatabaseWait

    DatabaseWait(longest=10).run("启动检查数据库", lambda: ensure_database(rt))


def child_env(rt: Runtime) -> dict[str, str]:
    """A child process's environment: the same settings, and a moved clock (PIPELINE_NOW) where
    this process's clock is now, so that the child's clock runs with this one."""
    env = {**os.environ, **parent_marker()}  # the child ends with this process (pipeline/cli/parent.py)
    if rt.settings.now is not None:
        env["PIPELINE_NOW"] = rt.clock.now().isoformat()
    return env


def start_worker_process(rt: Runtime) -> subprocess.Popen[bytes]:
    """A worker as a child process, on the same settings (its own interpreter, its own connections)."""
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline", "worker", "--pool", "solo", "--loglevel", "WARNING"],
        env=child_env(rt),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def start_web_process(rt: Runtime, host: str, port: int) -> subprocess.Popen[bytes]:
    """The web workspace as a child process (uvicorn), on the same settings."""
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline", "serve", "--host", host, "--port", str(port)],
        env=child_env(rt),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def ensure_first_office_account(rt: Runtime) -> tuple[str, str, Path] | None:
    """With no account yet, create the office account ``office`` with a generated password, kept in
    data_dir/office-password.txt (mode 600) so the newcomer can sign in. Returns the user name,
    the password and that file; None when accounts exist."""
    from sqlalchemy import func, select

    from pipeline.accounts import add_user
    from pipeline.db import session_scope
    from pipeline.passwords import generate_password
    from pipeline.models import User

    with session_scope(rt.session_factory) as session:
        if session.scalar(select(func.count()).select_from(User)):
            return None
        password = generate_password()
        add_user(session, username="office", role="office", password=password, clock=rt.clock, actor=cli_actor(),
                 display_name="市发改委投资科")
    path = rt.settings.data_dir / "office-password.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(password + "\n", encoding="utf-8")
    path.chmod(0o600)
    return "office", password, path


def public_url_from(host: str, port: int) -> None:
    """Unless PIPELINE_PUBLIC_URL is set, links in messages point where this run serves the workspace
    (the machine's name when it listens on every address); the children inherit it."""
    from pipeline.runtime import set_runtime

    if os.environ.get(PUBLIC_URL_VARIABLE):
        return
    shown = socket.getfqdn() if host in ("0.0.0.0", "::", "") else host
    if ":" in shown:
        shown = f"[{shown}]"
    os.environ[PUBLIC_URL_VARIABLE] = f"http://{shown}:{port}"
    set_runtime(None)  # built again, from the environment as it is now


def stop_on_sigterm() -> None:
    """SIGTERM (`kill`, a service manager) stops `pipeline run` as Ctrl+C does: its children with it."""

    def interrupt(signum: int, _frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not cut the stopping short
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)


def stop_process(*procs: subprocess.Popen[bytes] | None) -> None:
    """Stop the child processes: SIGTERM to all at once, then SIGKILL to any still there after 20 s."""
    running = [p for p in procs if p is not None and p.poll() is None]
    for proc in running:
        proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 20
    for proc in running:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@app.command("run")
def run_cmd(
    once: bool = typer.Option(False, "--once", help="处理完积压任务、打印汇总后退出"),
    seed: int = typer.Option(2024, help="数据库为空时载入演示数据所用的随机种子"),
    demo: bool = typer.Option(True, "--demo/--no-demo", help="数据库为空时载入演示数据"),
    sweep_every: float = typer.Option(30.0, help="调度检查（述职提醒、补发、夜间重评）的间隔秒数"),
    web: bool = typer.Option(True, "--web/--no-web", help="同时启动网页工作台（--once 时不启动）"),
    host: str = typer.Option("127.0.0.1", "--host", help="网页工作台监听地址"),
    port: int = typer.Option(8000, "--port", help="网页工作台监听端口"),
) -> None:
    """主程序：升级数据库、启动处理进程、（空库时）载入演示数据、完成挂牌并显示汇总，然后持续运行调度、发送与网页工作台。"""
    from pipeline.cli.views import print_summary
    from pipeline.demo.seed import seed_demo
    from pipeline.alerts.scheduler import ReviewScheduler
    from pipeline.cli.alerts import print_outbox_summary
    from sqlalchemy import func, select

    from pipeline.db import session_scope
    from pipeline.models import Project
    from pipeline.tasks.dispatch import deliver_now, enqueue_batches, pending_batches, start_embedded_sender

    from pipeline.cli.web import port_taken, refuse_taken_port

    serving = web and not once
    if serving:
        refuse_taken_port(host, port)  # said plainly at once, not found out by a child that keeps failing
    public_url_from(host, port)
    rt = runtime()
    ensure_database(rt)
    rt.check_config()
    stop_on_sigterm()
    console.print("正在启动处理进程…", highlight=False)
    worker = start_worker_process(rt)
    server: subprocess.Popen[bytes] | None = None
    try:
        with session_scope(rt.session_factory) as session:
            empty = (session.scalar(select(func.count()).select_from(Project)) or 0) == 0
            batch_ids = seed_demo(session, seed=seed, reference=rt.reference, clock=rt.clock) if (empty and demo) else []
        if batch_ids:
            console.print(f"数据库为空，已载入演示数据：{len(batch_ids)} 期月报，交由处理进程入库。", highlight=False)
        waiting = pending_batches(rt)
        if waiting:
            enqueue_batches(rt, waiting)
            left = wait_applied(rt, waiting, timeout=900, label="处理进程入库中")
            if left:
                err_console.print(f"[red]仍有 {len(left)} 个批次未处理完，请检查处理进程日志。[/red]")
                raise typer.Exit(1)
        rt.reflag_reserve()
        print_summary(rt)
        if once:
            stop_process(worker)  # let it finish what it is sending, so the outbox summary is final
        deliver_now(rt)
        print_outbox_summary(rt)
        if once:
            return
        log_to_stderr(rt)
        sender = start_embedded_sender(rt)  # red notices leave within seconds; database outages are waited out
        scheduler = ReviewScheduler(rt, hand_over=sender.wake, tick_seconds=sweep_every).start_background()
        if serving:
            server = start_web_process(rt, host, port)
            console.print(f"网页工作台：http://{host}:{port}/", highlight=False)
            first = ensure_first_office_account(rt)
            if first:
                username, password, kept_in = first
                console.print(f"已创建投资科账号 {username}，初始密码 {password}（另存于 {kept_in}，"
                              "登录后请在“修改密码”页面或用 pipeline user passwd 修改）", highlight=False)
        console.print("系统运行中（处理进程、调度与发送" + ("、网页工作台" if web else "") + "），按 Ctrl+C 退出。",
                      highlight=False)
        try:
            while True:
                time.sleep(2)
                if worker.poll() is not None:
                    err_console.print("处理进程已退出，正在重新启动。")
                    worker = start_worker_process(rt)
                if server is not None and server.poll() is not None:
                    taken = port_taken(host, port)
                    if taken:  # another program took the port meanwhile: restarting would only loop
                        raise fail(taken, 1)
                    err_console.print("网页工作台已退出，正在重新启动。")
                    server = start_web_process(rt, host, port)
        finally:
            scheduler.shutdown(wait=False)
            sender.stop(timeout=30)  # lets a send in flight finish and be recorded
    except KeyboardInterrupt:
        console.print("正在退出…")
    finally:
        stop_process(worker, server)
