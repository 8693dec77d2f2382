"""Alert commands: the scheduler, the outbox (list, resend) and planning a review's digests now."""

from __future__ import annotations

import json

from typing import TYPE_CHECKING, Any

import typer

from pipeline.alerts.promise import DELIVERY_PROMISE
from pipeline.cli.app import app, cli_actor, console, fail, log_to_stderr, runtime
from pipeline.cli.reserve import ensure_database, parse_date_option
from pipeline.cli.views import WIDE

if TYPE_CHECKING:
    from pipeline.runtime import Runtime

outbox_app = typer.Typer(
    help="发送队列：查看待发、已发和发送失败的消息，重发失败的消息。" + DELIVERY_PROMISE, no_args_is_help=False,
)
alerts_app = typer.Typer(help="预警：双月述职提醒。", no_args_is_help=True)
app.add_typer(outbox_app, name="outbox")
app.add_typer(alerts_app, name="alerts")

STATUS_NAMES = {"pending": "等待发送", "sending": "发送中", "sent": "已发送", "failed": "发送失败", "skipped": "已跳过"}
KIND_NAMES = {"leader_digest": "领导述职提醒", "office_digest": "投资科汇总", "red_notice": "红牌提醒"}


def print_outbox_summary(rt: Runtime) -> None:
    from sqlalchemy import func, select

    from pipeline.db import session_scope
    from pipeline.models import OutboxMessage

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
    from sqlalchemy import select

    from pipeline.alerts.outbox import FAILED
    from pipeline.alerts.redact import shown
    from pipeline.db import session_scope
    from pipeline.models import OutboxMessage

    rt = runtime()
    ensure_database(rt)
    q = select(OutboxMessage).order_by(OutboxMessage.id.desc()).limit(limit)
    if failed:
        q = q.where(OutboxMessage.status == FAILED)
    with session_scope(rt.session_factory) as session:
        rows = [shown(r) for r in session.scalars(q)]  # webhook credentials masked
        if as_json:
            for r in rows:
                print(json.dumps({"id": r.id, "kind": r.kind, "channel": r.channel, "recipient": r.recipient,
                                  "subject": r.subject, "status": r.status, "attempts": r.attempts,
                                  "last_error": r.last_error, "created_at": r.created_at.isoformat(),
                                  "sent_at": r.sent_at.isoformat() if r.sent_at else None}, ensure_ascii=False))
            return
        table = outbox_table(rows, title=f"发送队列（{'发送失败' if failed else '全部'}，{len(rows)} 条）",
                             narrow=console.width < WIDE)
    console.print(table)


def outbox_table(rows: list[Any], *, title: str, narrow: bool) -> Any:
    """The outbox as a table; on a narrow terminal the message is one cell (kind, recipient, subject)."""
    from rich.markup import escape
    from rich.table import Table

    def sent(r: Any) -> str:
        return r.sent_at.strftime("%m-%d %H:%M") if r.sent_at else "—"

    table = Table(title=title, show_lines=narrow)
    if not narrow:
        for head in ("编号", "类型", "收件人", "主题", "状态", "发送时间", "尝试次数", "错误"):
            table.add_column(head, overflow="fold")
        for r in rows:
            table.add_row(str(r.id), KIND_NAMES.get(r.kind, r.kind), escape(r.recipient_name or r.recipient),
                          escape(r.subject), STATUS_NAMES.get(r.status, r.status), sent(r), str(r.attempts),
                          escape(r.last_error or ""))
        return table
    table.add_column("编号", justify="right", no_wrap=True)
    table.add_column("消息", ratio=3, overflow="fold")
    table.add_column("状态", min_width=8, overflow="fold")
    for r in rows:
        message = (f"{KIND_NAMES.get(r.kind, r.kind)} → {escape(r.recipient_name or '')} [dim]{escape(r.recipient)}[/]"
                   f"\n{escape(r.subject)}" + (f"\n[red]{escape(r.last_error)}[/]" if r.last_error else ""))
        table.add_row(str(r.id), message, f"{STATUS_NAMES.get(r.status, r.status)}\n{sent(r)}\n尝试 {r.attempts} 次")
    return table


@outbox_app.command("resend")
def outbox_resend(message_id: int = typer.Argument(..., help="消息编号")) -> None:
    """重发一条发送失败（或已跳过）的消息：内容和 Message-ID / Idempotency-Key 不变，重试时限重新计算。"""
    from pipeline.alerts.outbox import resend
    from pipeline.db import session_scope
    from pipeline.models import OutboxMessage
    from pipeline.tasks.dispatch import hand_over_outbox

    rt = runtime()
    ensure_database(rt)
    with session_scope(rt.session_factory) as session:
        resend(session, message_id, now=rt.clock.now(), actor=cli_actor())
    hand_over_outbox(rt)
    with session_scope(rt.session_factory) as session:
        row = session.get(OutboxMessage, message_id)
        status = STATUS_NAMES.get(row.status, row.status) if row else "?"
    console.print(f"消息 {message_id} 已重新排队，当前状态：{status}", highlight=False)


@alerts_app.command("digest")
def alerts_digest(
    review: str = typer.Option(..., "--review", help="述职日期 YYYY-MM-DD（须为述职日历中的日期）"),
    force: bool = typer.Option(False, "--force", help="日期不在述职日历中也生成"),
) -> None:
    """立即生成某次双月述职的领导提醒和投资科汇总（每人只生成一次，重复执行不会再生成）；在内置默认配置下当场发送。

    提醒按该次述职的提醒日（述职前第 5 个工作日）统计挂牌和三率，并与上次述职的提醒日相比。"""
    from pipeline.alerts.planning import plan_review
    from pipeline.db import session_scope
    from pipeline.meta import evaluation_date
    from pipeline.tasks.dispatch import deliver_now, hand_over_outbox

    rt = runtime()
    d = parse_date_option(review)
    assert d is not None
    calendar = rt.review_calendar
    if not force and not calendar.is_review(d):
        before, after = calendar.nearest_reviews(d)
        raise fail(f"{d.isoformat()} 不是述职日历中的双月述职日期。\n最近的述职日期：之前 {before.isoformat()}，"
                   f"之后 {after.isoformat()}。\n如确需为该日期生成提醒，请加 --force。", 2)
    ensure_database(rt)
    with session_scope(rt.session_factory) as session:
        new = plan_review(session, review=d, calendar=calendar, current=evaluation_date(session, rt.clock),
                          ctx=rt.alert_context())
    console.print(f"{d.isoformat()} 述职提醒（挂牌截至 {calendar.digest_day(d).isoformat()}，与上次述职 "
                  f"{calendar.previous_review(d).isoformat()} 的提醒日 {calendar.digest_day(calendar.previous_review(d))} "
                  f"相比）：新生成 {new} 条消息。", highlight=False)
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
    from pipeline.cli.processes import wait_for_database
    from pipeline.tasks.dispatch import hand_over_outbox

    rt = runtime()
    if tick <= 0:
        raise fail("检查间隔必须大于 0", 2)
    rt.check_config()
    log_to_stderr(rt)
    wait_for_database(rt)
    moved = f"（时钟从 {rt.settings.now.isoformat()} 起走）" if rt.settings.now else ""
    console.print(f"调度进程已启动{moved}，按 Ctrl+C 退出。", highlight=False)
    try:
        ReviewScheduler(rt, hand_over=lambda: hand_over_outbox(rt), tick_seconds=tick).run_forever()
    except KeyboardInterrupt:
        console.print("调度进程已退出。")
