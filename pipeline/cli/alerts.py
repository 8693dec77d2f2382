"""Alert commands: the scheduler, the outbox (list, resend) and planning a review's digests now."""

from __future__ import annotations

import json

import typer
from rich.table import Table
from sqlalchemy import func, select

from pipeline.alerts.outbox import FAILED, resend
from pipeline.alerts.planning import plan_review
from pipeline.cli.app import app, console, fail, log_to_stderr, runtime
from pipeline.cli.reserve import ensure_database, parse_date_option
from pipeline.db import session_scope
from pipeline.meta import evaluation_date
from pipeline.models import OutboxMessage
from pipeline.runtime import Runtime
from pipeline.tasks.dispatch import deliver_now, hand_over_outbox

outbox_app = typer.Typer(help="发送队列：查看待发、已发和发送失败的消息，重发失败的消息。", no_args_is_help=False)
alerts_app = typer.Typer(help="预警：双月述职提醒。", no_args_is_help=True)
app.add_typer(outbox_app, name="outbox")
app.add_typer(alerts_app, name="alerts")

STATUS_NAMES = {"pending": "等待发送", "sending": "发送中", "sent": "已发送", "failed": "发送失败", "skipped": "已跳过"}
KIND_NAMES = {"leader_digest": "领导述职提醒", "office_digest": "投资科汇总", "red_notice": "红牌提醒"}


def print_outbox_summary(rt: Runtime) -> None:
    with session_scope(rt.session_factory) as session:
        counts = dict(session.execute(
            select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status)).tuples().all())
    if not counts:
        return
    where = f"SMTP {rt.settings.smtp_host}" if rt.settings.smtp_host else f"邮件文件目录 {rt.settings.outbox_dir}"
    parts = "，".join(f"{STATUS_NAMES.get(k, k)} {v} 条" for k, v in sorted(counts.items()))
    console.print(f"预警消息（{where}）：{parts}", highlight=False)


@outbox_app.callback(invoke_without_command=True)
def outbox_list(
    ctx: typer.Context,
    failed: bool = typer.Option(False, "--failed", help="只看发送失败的消息"),
    limit: int = typer.Option(50, help="最多显示多少条"),
    as_json: bool = typer.Option(False, "--json", help="每行输出一个 JSON 对象"),
) -> None:
    """列出发送队列中的消息（最新的在前）。"""
    if ctx.invoked_subcommand is not None:
        return
    rt = runtime()
    ensure_database(rt)
    q = select(OutboxMessage).order_by(OutboxMessage.id.desc()).limit(limit)
    if failed:
        q = q.where(OutboxMessage.status == FAILED)
    with session_scope(rt.session_factory) as session:
        rows = session.scalars(q).all()
        if as_json:
            for r in rows:
                print(json.dumps({"id": r.id, "kind": r.kind, "channel": r.channel, "recipient": r.recipient,
                                  "subject": r.subject, "status": r.status, "attempts": r.attempts,
                                  "last_error": r.last_error}, ensure_ascii=False))
            return
        table = Table(title=f"发送队列（{'发送失败' if failed else '全部'}，{len(rows)} 条）")
        for head in ("编号", "类型", "收件人", "主题", "状态", "尝试次数", "错误"):
            table.add_column(head)
        for r in rows:
            table.add_row(str(r.id), KIND_NAMES.get(r.kind, r.kind), r.recipient_name or r.recipient, r.subject,
                          STATUS_NAMES.get(r.status, r.status), str(r.attempts), r.last_error or "")
    console.print(table)


@outbox_app.command("resend")
def outbox_resend(message_id: int = typer.Argument(..., help="消息编号")) -> None:
    """重发一条发送失败（或已跳过）的消息。"""
    rt = runtime()
    ensure_database(rt)
    with session_scope(rt.session_factory) as session:
        resend(session, message_id, now=rt.clock.now())
    hand_over_outbox(rt)
    with session_scope(rt.session_factory) as session:
        row = session.get(OutboxMessage, message_id)
        status = STATUS_NAMES.get(row.status, row.status) if row else "?"
    console.print(f"消息 {message_id} 已重新排队，当前状态：{status}", highlight=False)


@alerts_app.command("digest")
def alerts_digest(review: str = typer.Option(..., "--review", help="述职日期 YYYY-MM-DD")) -> None:
    """立即生成某次双月述职的领导提醒和投资科汇总；在内置默认配置下当场发送（每人只发一次）。"""
    rt = runtime()
    ensure_database(rt)
    d = parse_date_option(review)
    assert d is not None
    with session_scope(rt.session_factory) as session:
        new = plan_review(session, review=d, previous=rt.review_calendar.previous_review(d),
                          as_of=evaluation_date(session, rt.clock), ctx=rt.alert_context())
    console.print(f"{d.isoformat()} 述职提醒：新生成 {new} 条消息。", highlight=False)
    if rt.settings.is_embedded:
        report = deliver_now(rt)
        console.print(f"已发送 {report.sent} 条，待重试 {report.retrying} 条，失败 {report.failed} 条。",
                      highlight=False)
        if report.failed or report.retrying:
            raise typer.Exit(1)
    else:
        hand_over_outbox(rt)
        console.print("已交给发送进程。", highlight=False)


@app.command("scheduler")
def scheduler_cmd(tick: float = typer.Option(30.0, help="检查间隔（秒）")) -> None:
    """启动调度进程：按述职日历生成提醒、夜间重评挂牌、补发；同一时间只有一个实例工作，其余待命。"""
    from pipeline.alerts.scheduler import ReviewScheduler

    rt = runtime()
    ensure_database(rt)
    if tick <= 0:
        raise fail("检查间隔必须大于 0", 2)
    rt.review_calendar  # noqa: B018  (reviews.yaml and holidays.yaml, validated before the first tick)
    log_to_stderr(rt)
    moved = f"（时钟从 {rt.settings.now.isoformat()} 起走）" if rt.settings.now else ""
    console.print(f"调度进程已启动{moved}，按 Ctrl+C 退出。", highlight=False)
    try:
        ReviewScheduler(rt, hand_over=lambda: hand_over_outbox(rt), tick_seconds=tick).run_forever()
    except KeyboardInterrupt:
        console.print("调度进程已退出。")
