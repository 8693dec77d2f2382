"""Commands that change the reserve: init, demo, import, reflag."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from pipeline.cli.app import app, cli_actor, console, err_console, fail, runtime

if TYPE_CHECKING:
    from pipeline.ingest.submit import Submission
    from pipeline.runtime import Runtime


def ensure_database(rt: Runtime) -> None:
    from pipeline.migrate import upgrade

    upgrade(rt.engine)


def wait_applied(rt: Runtime, batch_ids: list[int], *, timeout: float, label: str = "等待处理") -> list[int]:
    """Wait until the workers have applied the batches; returns those still waiting at the timeout."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from pipeline.tasks.dispatch import pending_batches

    deadline = time.monotonic() + timeout
    waiting = pending_batches(rt, batch_ids)
    with Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console,
                  transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task(label, total=len(batch_ids))
        while waiting and time.monotonic() < deadline:
            progress.update(task, completed=len(batch_ids) - len(waiting))
            time.sleep(0.3)
            waiting = pending_batches(rt, batch_ids)
        progress.update(task, completed=len(batch_ids) - len(waiting))
    return waiting


def hand_on(rt: Runtime, batch_ids: list[int]) -> None:
    """Queue the batches for the workers now (on embedded defaults, apply them here, a spinner on a
    terminal while it works)."""
    from pipeline.tasks.dispatch import dispatch_batches

    if not batch_ids:
        return
    if rt.settings.is_embedded:
        with applying(len(batch_ids)):
            dispatch_batches(rt, batch_ids)
        return
    if dispatch_batches(rt, batch_ids) < len(batch_ids):
        err_console.print("消息队列暂不可用，已入库的数据将由补发程序稍后处理。")


def wait_for_workers(rt: Runtime, batch_ids: list[int], *, timeout: float) -> None:
    if batch_ids and not rt.settings.is_embedded:
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
    if sub.hidden_rows:
        console.print(f"  注意：其中 {sub.hidden_rows} 行在 Excel 中是隐藏行，已同其他行一并校验导入，请核对。", highlight=False)
    for err in sub.errors:
        err_console.print(f"  {err.describe()}（原值：{err.raw_value if err.raw_value is not None else ''}）", highlight=False)


@app.command("init")
def init_cmd() -> None:
    """创建数据库或升级到最新结构。"""
    rt = runtime()
    ensure_database(rt)
    console.print(f"数据库已就绪：{rt.engine.url.render_as_string(hide_password=True)}", highlight=False)


def landed_nothing(sub: Submission) -> bool:
    """The file was refused, or not one of its rows was accepted (nor had been before)."""
    return sub.file_error is not None or not (sub.accepted or sub.duplicates)


@app.command("import")
def import_cmd(
    files: list[Path] = typer.Argument(..., help="导入模板文件（xlsx、csv 或 jsonl）", exists=False),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="等待处理进程完成（生产环境）"),
    timeout: float = typer.Option(300.0, help="等待的最长秒数"),
) -> None:
    """导入项目月报文件：校验、入库、排队处理；有问题的行逐行报告且不入库。

    退出状态：0 表示各文件均已接收（部分行被拒时也为 0，被拒的行逐行列出）；
    有文件不存在或被整体拒收，或没有任何一行被接收时为 2。
    """
    from pipeline.db import session_scope
    from pipeline.ingest.parse import ImportLimits
    from pipeline.ingest.submit import receive_file
    from pipeline.tasks.dispatch import pending_batches

    rt = runtime()
    ensure_database(rt)
    limits = ImportLimits.from_settings(rt.settings)
    to_apply: list[int] = []
    refused = 0
    accepted_any = False
    for path in files:
        if not path.is_file():
            err_console.print(f"[red]文件不存在：[/red]{path}", highlight=False)
            refused += 1
            continue
        with import_progress(path.name) as report:
            with session_scope(rt.session_factory) as session:
                sub = receive_file(
                    session, path, reference=rt.reference, max_bytes=rt.settings.max_upload_bytes,
                    clock=rt.clock, actor=cli_actor(), limits=limits, progress=report,
                )
        print_submission(sub)
        if sub.file_error:
            refused += 1
        elif sub.needs_applying and pending_batches(rt, [sub.batch_id]):  # type: ignore[list-item]
            # Handed on as soon as it is recorded: the workers apply it while the next file is read.
            hand_on(rt, [sub.batch_id])  # type: ignore[list-item]
            to_apply.append(sub.batch_id)  # type: ignore[arg-type]
        accepted_any = accepted_any or not landed_nothing(sub)
    if wait:
        wait_for_workers(rt, to_apply, timeout=timeout)
    if refused or not accepted_any:
        if not accepted_any:
            err_console.print("没有任何一行被接收。", highlight=False)
        raise typer.Exit(2)


@contextmanager
def import_progress(name: str) -> Iterator[Callable[[int, int], None]]:
    """A bar of rows read and validated, on a terminal only (a pipe or a log gets just the summary)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn(f"读取并校验 {name}"), BarColumn(), MofNCompleteColumn(), TextColumn("行"),
                  TimeElapsedColumn(), console=console, transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task("validate", total=None)

        def report(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        yield report


@contextmanager
def applying(batches: int) -> Iterator[None]:
    """A spinner while the embedded worker applies the batches and re-flags (a terminal only)."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(SpinnerColumn(), TextColumn(f"入库并重新挂牌（{batches} 个批次）"), TimeElapsedColumn(),
                  console=console, transient=True, disable=not console.is_terminal) as progress:
        progress.add_task("apply", total=None)
        yield


@app.command("template")
def template_cmd(path: Path = typer.Argument(..., help="要写出的模板文件（.xlsx）")) -> None:
    """写出月报导入模板（表头、填表说明和示例行、县市区等下拉选项、日期和金额格式），供各单位填报。"""
    from pipeline.ingest.template_book import write_import_template
    from pipeline.reference import load_reference

    if path.suffix.lower() != ".xlsx":
        raise fail(f"模板文件应以 .xlsx 结尾：{path}", 2)
    if not path.parent.is_dir():
        raise fail(f"目录不存在：{path.parent}", 2)
    rt = runtime()
    write_import_template(path, load_reference(rt.settings.config_dir))
    console.print(f"已写出导入模板：{path}（在“导入模板”表填写，“填表说明”表有各列要求和示例）", highlight=False)


@app.command("demo")
def demo_cmd(seed: int = typer.Option(2024, help="随机种子；同一种子生成同样的数据")) -> None:
    """载入荆州市2024年演示项目储备（1463个项目及12期月报）并完成挂牌。"""
    from pipeline.db import session_scope
    from pipeline.demo.seed import DemoRefused, seed_demo
    from pipeline.tasks.dispatch import pending_batches

    rt = runtime()
    ensure_database(rt)
    try:
        with session_scope(rt.session_factory) as session:
            batch_ids = seed_demo(session, seed=seed, reference=rt.reference, clock=rt.clock)
    except DemoRefused as exc:
        raise fail(str(exc)) from exc
    waiting = pending_batches(rt, batch_ids)
    hand_on(rt, waiting)
    wait_for_workers(rt, waiting, timeout=600)
    from pipeline.cli.views import print_summary

    print_summary(rt)


@app.command("reflag")
def reflag_cmd(
    as_of: str = typer.Option(None, "--as-of", help="评估日期 YYYY-MM-DD，默认为系统评估日期"),
    parallel: bool = typer.Option(False, "--parallel", help="分块交给全部处理进程并行评估（需配置消息队列）"),
) -> None:
    """按当前方案重新评估全部项目的挂牌（每晚由调度程序自动执行）。"""
    from pipeline.reflag import ReflagOutcome
    from pipeline.tasks.dispatch import start_reflag

    rt = runtime()
    ensure_database(rt)
    if parallel and rt.settings.is_embedded:
        raise fail("--parallel 需要消息队列（PIPELINE_BROKER_URL）和处理进程（pipeline worker）", 2)
    outcome = start_reflag(rt, as_of=parse_date_option(as_of), parallel=parallel or None)
    if isinstance(outcome, ReflagOutcome):
        console.print(
            f"评估日期 {outcome.as_of.isoformat()}：评估 {outcome.evaluated} 个项目，"
            f"{outcome.changed} 个挂牌有变化，其中 {outcome.recoloured} 个颜色改变。",
            highlight=False,
        )
    else:
        console.print(f"评估日期 {outcome.as_of.isoformat()}：已分为 {len(outcome.chunks)} 块交给处理进程并行评估"
                      f"（第 {outcome.run_id} 次全量重评）。", highlight=False)


def parse_date_option(value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise fail(f"日期格式应为 YYYY-MM-DD：{value}", 2) from exc


def count_batches(rt: Runtime) -> int:
    from sqlalchemy import func, select

    from pipeline.db import session_scope
    from pipeline.models import ImportBatch

    with session_scope(rt.session_factory) as session:
        return session.scalar(select(func.count()).select_from(ImportBatch)) or 0
