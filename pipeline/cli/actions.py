"""Office actions on flags: override (set by hand) and acknowledge a red flag."""

from __future__ import annotations

import typer

from pipeline.cli.app import app, cli_actor, console, fail, runtime
from pipeline.cli.reserve import ensure_database, parse_date_option
from pipeline.cli.views import COLOR_NAMES


@app.command("override")
def override_cmd(
    code: str = typer.Argument(..., help="项目代码"),
    color: str = typer.Option(None, "--color", help="人工设定的颜色：red/yellow/green 或 红/黄/绿"),
    reason: str = typer.Option(None, "--reason", help="理由（必填）"),
    by: str = typer.Option(None, "--by", help="操作人（必填）"),
    until: str = typer.Option(None, "--until", help="有效期至 YYYY-MM-DD（含当日）"),
    revoke: bool = typer.Option(False, "--revoke", help="撤销该项目生效中的人工调整"),
) -> None:
    """人工调整项目挂牌（需理由、操作人和到期日），或用 --revoke 撤销。计算结果仍保留并显示。"""
    from pipeline.db import session_scope
    from pipeline.overrides import COLORS, revoke_override, set_override

    rt = runtime()
    ensure_database(rt)
    with session_scope(rt.session_factory) as session:
        if revoke:
            revoke_override(session, code=code, reflag=rt.reflag_projects, clock=rt.clock, actor=cli_actor())
            console.print(f"已撤销项目 {code} 的人工调整，恢复按方案计算的挂牌。", highlight=False)
            return
        missing = [name for name, v in (("--color", color), ("--reason", reason), ("--by", by), ("--until", until)) if not v]
        if missing:
            raise fail(f"缺少参数：{'、'.join(missing)}", 2)
        expires = parse_date_option(until)
        assert expires is not None
        result = set_override(
            session, code=code, color=color, reason=reason, set_by=by, expires_on=expires, reflag=rt.reflag_projects,
            clock=rt.clock, actor=cli_actor(),
        )
    console.print(
        f"已将项目 {code} 人工调整为{COLOR_NAMES[COLORS[color.strip().lower()]]}"
        f"，有效期至 {expires.isoformat()}（调整编号 {result.override_id}）。",
        highlight=False,
    )


@app.command("ack")
def ack_cmd(
    code: str = typer.Argument(..., help="项目代码"),
    note: str = typer.Option(..., "--note", help="确认说明"),
    by: str = typer.Option(..., "--by", help="确认人"),
) -> None:
    """确认项目的红牌并附说明：本次红牌不再重复提醒，挂牌本身不变。"""
    from pipeline.db import session_scope
    from pipeline.overrides import acknowledge

    rt = runtime()
    ensure_database(rt)
    with session_scope(rt.session_factory) as session:
        ack = acknowledge(session, code=code, note=note, by=by, clock=rt.clock, actor=cli_actor())
    console.print(f"已确认项目 {code} 的红牌（确认编号 {ack.id}）。", highlight=False)
