"""Commands that change the reserve: init, demo, import, reflag."""

from __future__ import annotations

import time
from datetime import date
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import func, select

from pipeline.cli.app import app, console, err_console, fail, runtime
from pipeline.db import session_scope
from pipeline.ingest.submit import Submission, receive_file
from pipeline.migrate import upgrade
from pipeline.models import ImportBatch
from pipeline.runtime import Runtime
from pipeline.tasks.dispatch import dispatch_batches, pending_batches


def ensure_database(rt: Runtime) -> None:
    upgrade(rt.engine)


def wait_applied(rt: Runtime, batch_ids: list[int], *, timeout: float, label: str = "等待处理") -> list[int]:
    """Wait until the workers have applied the batches; returns those still waiting at the timeout."""
    deadline = time.monotonic() + timeout
    waiting = pending_batches(rt, batch_ids)
    with Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console,
                  transient=True) as progress:
        task = progress.add_task(label, total=len(batch_ids))
        while waiting and time.monotonic() < deadline:
            progress.update(task, completed=len(batch_ids) - len(waiting))
            time.sleep(0.3)
            waiting = pending_batches(rt, batch_ids)
        progress.update(task, completed=len(batch_ids) - len(waiting))
    return waiting


def deliver(rt: Runtime, batch_ids: list[int], *, wait: bool, timeout: float) -> None:
    """Queue the batches for the workers; on embedded defaults, apply them here."""
    if not batch_ids:
        return
    sent = dispatch_batches(rt, batch_ids)
    if rt.settings.is_embedded:
        return
    if sent < len(batch_ids):
        err_console.print("消息队列暂不可用，已入库的数据将由补发程序稍后处理。")
    if wait:
        left = wait_applied(rt, batch_ids, timeout=timeout)
        if left:
            err_console.print(f"仍有 {len(left)} 个批次等待处理进程（pipeline worker）处理。")


def print_submission(sub: Submission) -> None:
    if sub.file_error:
        err_console.print(f"[red]文件被拒收：[/red]{sub.file_error}", highlight=False)
        return
    head = f"{sub.filename}：共 {sub.total_rows} 行，接收 {sub.accepted} 行"
    if sub.duplicates:
        head += f"，重复 {sub.duplicates} 行（已接收过，不再重复入库）"
    if sub.rejected:
        head += f"，拒收 {sub.rejected} 行"
    if not sub.created:
        head += "（该文件此前已导入，本次未重复处理）"
    console.print(head, highlight=False)
    for err in sub.errors:
        err_console.print(f"  {err.describe()}（原值：{err.raw_value if err.raw_value is not None else ''}）", highlight=False)


@app.command("init")
def init_cmd() -> None:
    """创建数据库或升级到最新结构。"""
    rt = runtime()
    ensure_database(rt)
    console.print(f"数据库已就绪：{rt.engine.url.render_as_string(hide_password=True)}", highlight=False)


@app.command("import")
def import_cmd(
    files: list[Path] = typer.Argument(..., help="导入模板文件（xlsx、csv 或 jsonl）", exists=False),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="等待处理进程完成（生产环境）"),
    timeout: float = typer.Option(300.0, help="等待的最长秒数"),
) -> None:
    """导入项目月报文件：校验、入库、排队处理；有问题的行逐行报告且不入库。"""
    rt = runtime()
    ensure_database(rt)
    to_apply: list[int] = []
    refused = 0
    for path in files:
        if not path.is_file():
            err_console.print(f"[red]文件不存在：[/red]{path}", highlight=False)
            refused += 1
            continue
        with Progress(TextColumn(f"读取 {path.name}"), BarColumn(), MofNCompleteColumn(), console=console,
                      transient=True) as progress:
            task = progress.add_task("read", total=None)

            def report(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total)

            with session_scope(rt.session_factory) as session:
                sub = receive_file(
                    session, path, reference=rt.reference, max_bytes=rt.settings.max_upload_bytes,
                    clock=rt.clock, progress=report,
                )
        print_submission(sub)
        if sub.file_error:
            refused += 1
        elif sub.needs_applying:
            to_apply.append(sub.batch_id)  # type: ignore[arg-type]
    deliver(rt, pending_batches(rt, to_apply) if to_apply else [], wait=wait, timeout=timeout)
    if refused == len(files):
        raise typer.Exit(2)


@app.command("demo")
def demo_cmd(seed: int = typer.Option(2024, help="随机种子；同一种子生成同样的数据")) -> None:
    """载入荆州市2024年演示项目储备（1463个项目及12期月报）并完成挂牌。"""
    from pipeline.demo.seed import DemoRefused, seed_demo

    rt = runtime()
    ensure_database(rt)
    try:
        with session_scope(rt.session_factory) as session:
            batch_ids = seed_demo(session, seed=seed, reference=rt.reference, clock=rt.clock)
    except DemoRefused as exc:
        raise fail(str(exc)) from exc
    deliver(rt, pending_batches(rt, batch_ids), wait=True, timeout=600)
    from pipeline.cli.views import print_summary

    print_summary(rt)


@app.command("reflag")
def reflag_cmd(as_of: str = typer.Option(None, "--as-of", help="评估日期 YYYY-MM-DD，默认为系统评估日期")) -> None:
    """按当前方案重新评估全部项目的挂牌（每晚自动执行）。"""
    rt = runtime()
    ensure_database(rt)
    d = parse_date_option(as_of)
    with session_scope(rt.session_factory) as session:
        outcome = rt.reflag(session, as_of=d)
    console.print(
        f"评估日期 {outcome.as_of.isoformat()}：评估 {outcome.evaluated} 个项目，"
        f"{outcome.changed} 个挂牌有变化，其中 {outcome.recoloured} 个颜色改变。",
        highlight=False,
    )


def parse_date_option(value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise fail(f"日期格式应为 YYYY-MM-DD：{value}", 2) from exc


def count_batches(rt: Runtime) -> int:
    with session_scope(rt.session_factory) as session:
        return session.scalar(select(func.count()).select_from(ImportBatch)) or 0
