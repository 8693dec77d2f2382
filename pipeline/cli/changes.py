"""`pipeline changes`: the units' change requests to master data (SPEC §3), approved or rejected by the office."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import typer

from pipeline.cli.app import app, cli_actor, console, fail, runtime
from pipeline.cli.reserve import ensure_database
from pipeline.cli.views import WIDE

if TYPE_CHECKING:
    from pipeline.change_requests import ChangeRow

STATUS_INPUT = {"pending": "pending", "approved": "approved", "rejected": "rejected",
                "待审核": "pending", "已批准": "approved", "已驳回": "rejected"}

changes_app = typer.Typer(help="变更申请：责任单位报送的基础信息变更，由投资科批准或驳回。", no_args_is_help=False)
app.add_typer(changes_app, name="changes")


@changes_app.callback(invoke_without_command=True)
def changes_list(
    ctx: typer.Context,
    status: str = typer.Option(None, "--status", help="只看某种状态：pending（待审核）|approved（已批准）|rejected（已驳回）"),
    code: str = typer.Option(None, "--code", help="只看某个项目（项目代码）"),
    unit: str = typer.Option(None, "--unit", help="只看某个责任单位报送的申请（单位名称）"),
    limit: int = typer.Option(100, help="最多显示多少条"),
    as_json: bool = typer.Option(False, "--json", help="每行输出一个 JSON 对象"),
) -> None:
    """列出变更申请（最新的在前）；待审核申请中与当前库内数据不一致的标注为已过期。"""
    if ctx.invoked_subcommand is not None:
        return
    from pipeline.change_requests import ChangeFilter, list_requests
    from pipeline.db import session_scope

    wanted = None
    if status:
        wanted = STATUS_INPUT.get(status.strip().lower())
        if wanted is None:
            raise fail(f"状态无效：{status}（应为 pending、approved 或 rejected）", 2)
    rt = runtime()
    ensure_database(rt)
    with session_scope(rt.session_factory) as session:
        unit_id = None
        if unit:
            from sqlalchemy import select

            from pipeline.models import Unit

            unit_id = session.scalar(select(Unit.id).where(Unit.name == unit.strip()))
            if unit_id is None:
                raise fail(f"未知的责任单位：{unit}", 2)
        page = list_requests(session, ChangeFilter(status=wanted, project_code=code, unit_id=unit_id), tz=rt.clock.tz,
                             per_page=max(1, limit))
    if as_json:
        for r in page.rows:
            print(json.dumps(_as_json(r), ensure_ascii=False))
        return
    console.print(changes_table(page.rows, total=page.total, width=console.width))


def _as_json(r: ChangeRow) -> dict[str, Any]:
    return {
        "id": r.id, "code": r.code, "name": r.project_name, "field": r.field, "field_name": r.field_name,
        "current": r.current_value, "proposed": r.proposed_value, "unit": r.unit, "status": r.status,
        "stale": r.stale, "created_at": r.created_at.isoformat(), "decided_by": r.decided_by,
        "decided_at": r.decided_at.isoformat() if r.decided_at else None, "note": r.note,
    }


def _status_text(r: ChangeRow) -> str:
    text = r.status_name
    if r.stale:
        text += "（已过期）"
    if r.decided_by:
        text += f"\n{r.decided_by}"
    return text


def changes_table(rows: list[ChangeRow], *, total: int, width: int) -> Any:
    """The requests as a table that fits the terminal: below 120 columns the project and the
    change are one cell each, wrapped."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"变更申请（{len(rows)} / {total} 条）", show_lines=width < WIDE, expand=False)
    if width >= WIDE:
        for head in ("编号", "项目代码", "项目名称", "字段", "原值", "申请值", "报送单位", "日期", "状态"):
            table.add_column(head, overflow="fold")
        for r in rows:
            table.add_row(str(r.id), r.code, escape(r.project_name), r.field_name, escape(r.current_shown),
                          escape(r.proposed_shown), escape(r.unit or "—"), r.created_at.date().isoformat(),
                          _status_text(r))
        return table
    table.add_column("编号", no_wrap=True)
    table.add_column("项目", min_width=24, ratio=2, overflow="fold")
    table.add_column("变更", ratio=2, overflow="fold")
    table.add_column("状态", min_width=6, overflow="fold")
    for r in rows:
        project = f"{r.code}\n{escape(r.project_name)}\n[dim]{escape(r.unit or '—')} · {r.created_at.date().isoformat()}[/]"
        change = f"{r.field_name}：\n{escape(r.current_shown)} → {escape(r.proposed_shown)}"
        table.add_row(str(r.id), project, change, _status_text(r))
    return table


@changes_app.command("approve")
def changes_approve(
    ids: list[int] = typer.Argument(..., help="变更申请编号（可多个）"),
    note: str = typer.Option(None, "--note", help="说明（可选）"),
) -> None:
    """批准变更申请：申请值写入项目库（已批准的不会重复写入；与当前库内数据不一致的申请不能批准）。"""
    from pipeline.change_requests import approve
    from pipeline.db import session_scope

    rt = runtime()
    ensure_database(rt)
    with session_scope(rt.session_factory) as session:
        decision = approve(session, ids, actor=cli_actor(), clock=rt.clock, reflag=rt.reflag_projects, note=note)
    _report(decision.decided, decision.unchanged, "批准")


@changes_app.command("reject")
def changes_reject(
    ids: list[int] = typer.Argument(..., help="变更申请编号（可多个）"),
    note: str = typer.Option(..., "--note", help="驳回理由（必填）"),
) -> None:
    """驳回变更申请：项目库保持原值，理由记入审计日志并向报送单位显示。"""
    from pipeline.change_requests import reject
    from pipeline.db import session_scope

    rt = runtime()
    ensure_database(rt)
    with session_scope(rt.session_factory) as session:
        decision = reject(session, ids, actor=cli_actor(), clock=rt.clock, note=note)
    _report(decision.decided, decision.unchanged, "驳回")


def _report(decided: tuple[int, ...], unchanged: tuple[int, ...], verb: str) -> None:
    if decided:
        console.print(f"已{verb}变更申请：{'、'.join(map(str, decided))}。", highlight=False)
    if unchanged:
        console.print(f"此前已{verb}，未重复处理：{'、'.join(map(str, unchanged))}。", highlight=False)
