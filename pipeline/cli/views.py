"""Commands that show the reserve: flags, rates, and the summary printed by run and demo."""

from __future__ import annotations

import json
from collections import Counter
from typing import TYPE_CHECKING, Any

import typer

from pipeline.cli.app import app, console, fail, runtime
from pipeline.cli.reserve import ensure_database, parse_date_option

if TYPE_CHECKING:
    from pipeline.runtime import Runtime


COLOR_NAMES = {"red": "红牌", "yellow": "黄牌", "green": "绿牌"}
COLOR_STYLE = {"red": "bold red", "yellow": "bold yellow", "green": "green"}
COLOR_INPUT = {"red": "red", "yellow": "yellow", "green": "green", "红": "red", "黄": "yellow", "绿": "green"}
WIDE = 120  # from this terminal width the tables give every field its own column


def print_summary(rt: Runtime) -> None:
    """Projects by colour and the city's three rates, as of the evaluation date."""
    from rich.table import Table
    from sqlalchemy import func, select

    from pipeline.db import session_scope
    from pipeline.meta import evaluation_date
    from pipeline.models import ProjectFlag
    from pipeline.rates import format_group_rates
    from pipeline.rates_as_of import rates_as_of

    with session_scope(rt.read_session_factory) as session:
        d = evaluation_date(session, rt.clock)
        counts = Counter(dict(session.execute(
            select(ProjectFlag.effective_color, func.count()).group_by(ProjectFlag.effective_color)
        ).tuples().all()))
        groups = rates_as_of(session, d, chunk_size=rt.settings.reflag_chunk_size)
    total = sum(counts.values())
    console.print(f"评估日期 {d.isoformat()}，挂牌方案 {rt.scheme.name}", highlight=False)
    table = Table(title="项目挂牌情况")
    table.add_column("挂牌")
    table.add_column("项目数", justify="right")
    table.add_column("占比", justify="right")
    for color in ("red", "yellow", "green"):
        n = counts.get(color, 0)
        share = f"{n / total * 100:.1f}%" if total else "—"
        table.add_row(f"[{COLOR_STYLE[color]}]{COLOR_NAMES[color]}[/]", str(n), share)
    table.add_row("合计", str(total), "100.0%" if total else "—")
    console.print(table)
    for group in groups:
        console.print(format_group_rates(group, d))


@app.command("flags")
def flags_cmd(
    color: str = typer.Option(None, "--color", help="只看某种颜色：red/yellow/green 或 红/黄/绿"),
    county: str = typer.Option(None, "--county", help="县市区"),
    leader: str = typer.Option(None, "--leader", help="包保领导姓名"),
    as_json: bool = typer.Option(False, "--json", help="每行输出一个 JSON 对象（全部字段）"),
    limit: int = typer.Option(0, help="最多显示多少个项目（0 为全部）"),
    as_of: str = typer.Option(None, "--as-of", help="截至日期 YYYY-MM-DD：按该日及以前的报告重新计算挂牌（仅与 --json 合用）"),
) -> None:
    """列出项目的当前挂牌（生效颜色、计算颜色与原因）。窄终端下合并列、自动换行；完整数据见 --json。
    加 --as-of 时按存储的报告计算截至该日的挂牌，输出与 pipeline evaluate 相同格式的 JSON 行。"""
    from sqlalchemy import select

    from pipeline.db import session_scope
    from pipeline.models import Leader, Project, ProjectFlag
    from pipeline.overrides import acknowledged_now

    rt = runtime()
    if as_of is not None:
        if not as_json or color or county or leader or limit:
            raise fail("--as-of 只能与 --json 合用（不能同时使用 --color、--county、--leader、--limit）", 2)
        day = parse_date_option(as_of)
        assert day is not None
        ensure_database(rt)
        _print_flags_as_of(rt, day)
        return
    ensure_database(rt)
    query = (
        select(
            Project.code, Project.name, Project.county, Leader.name.label("leader"), ProjectFlag.effective_color,
            ProjectFlag.computed_color, ProjectFlag.reasons, ProjectFlag.override_id, ProjectFlag.scheme,
            ProjectFlag.scheme_version, ProjectFlag.as_of, acknowledged_now(Project.id).label("acknowledged"),
        )
        .join(ProjectFlag, ProjectFlag.project_id == Project.id)
        .join(Leader, Leader.id == Project.leader_id, isouter=True)
        .order_by(Project.code)
    )
    if color:
        wanted = COLOR_INPUT.get(color.strip().lower())
        if wanted is None:
            raise fail(f"颜色无效：{color}（应为 red/yellow/green 或 红/黄/绿）", 2)
        query = query.where(ProjectFlag.effective_color == wanted)
    if county:
        if county not in rt.reference.county_names:
            raise fail(f"未知的县市区：{county}", 2)
        query = query.where(Project.county == county)
    if leader:
        query = query.where(Leader.name == leader)
    if limit > 0:
        query = query.limit(limit)
    with session_scope(rt.read_session_factory) as session:
        rows = session.execute(query).all()
    if as_json:
        for r in rows:
            print(json.dumps({
                "code": r.code, "name": r.name, "county": r.county, "leader": r.leader, "flag": r.effective_color,
                "computed_flag": r.computed_color, "overridden": r.override_id is not None, "reasons": r.reasons,
                "scheme": r.scheme, "scheme_version": r.scheme_version, "as_of": r.as_of.isoformat(),
            }, ensure_ascii=False))
        return
    console.print(flags_table(rows, rule_names={rule.code: rule.name for rule in rt.scheme.rules},
                              width=console.width))


def _print_flags_as_of(rt: Runtime, day: Any) -> None:
    """SPEC §9: one JSON line per project with an update on or before ``day``, sorted by code."""
    from pipeline.as_of import stage_flags_as_of, staged_flag_lines
    from pipeline.db import session_scope

    with session_scope(rt.session_factory) as session:
        stage_flags_as_of(session, day, scheme=rt.scheme, compiled=rt.compiled,
                          chunk_size=rt.settings.reflag_chunk_size)
        for line in staged_flag_lines(session, day):
            print(json.dumps(line, ensure_ascii=False))


def _flag_text(r: Any) -> str:
    shown = f"[{COLOR_STYLE[r.effective_color]}]{COLOR_NAMES[r.effective_color]}[/]"
    if r.acknowledged:
        shown += "（已确认）"
    if r.override_id is not None:
        shown += f"（人工调整，计算为{COLOR_NAMES[r.computed_color]}）"
    return shown


def flags_table(rows: list[Any], *, rule_names: dict[str, str], width: int) -> Any:
    """The flags as a table that fits the terminal: below 120 columns a project is one cell
    (code, name, county and leader on their own lines) beside its flag and its reasons, all wrapped."""
    from rich.markup import escape
    from rich.table import Table

    def reasons(r: Any) -> str:
        lines = [f"{rule_names[x['code']]}：{x['message']}" if x.get("code") in rule_names else x["message"]
                 for x in r.reasons]
        return escape("\n".join(lines)) or "—"

    table = Table(title=f"项目挂牌（{len(rows)} 个）", show_lines=width < WIDE, expand=False)
    if width >= WIDE:
        table.add_column("项目代码", no_wrap=True)
        table.add_column("项目名称", ratio=2, overflow="fold")
        table.add_column("县市区", no_wrap=True)
        table.add_column("包保领导", no_wrap=True)
        table.add_column("挂牌")
        table.add_column("原因", ratio=3, overflow="fold")
        for r in rows:
            table.add_row(r.code, escape(r.name), r.county, escape(r.leader or "—"), _flag_text(r), reasons(r))
        return table
    table.add_column("项目", min_width=24, ratio=2, overflow="fold")  # a code is 24 characters: one line
    table.add_column("挂牌", min_width=4, max_width=12, overflow="fold")
    table.add_column("原因", ratio=3, overflow="fold")
    for r in rows:
        project = f"{r.code}\n{escape(r.name)}\n[dim]{r.county} · {escape(r.leader or '未指定包保领导')}[/]"
        table.add_row(project, _flag_text(r), reasons(r))
    return table


@app.command("rates")
def rates_cmd(
    as_of: str = typer.Option(..., "--as-of", help="统计日期 YYYY-MM-DD"),
    by: str = typer.Option("city", "--by", help="分组：city|county|list|leader|industry"),
    as_json: bool = typer.Option(False, "--json", help="每组输出一行 JSON，比率为 [分子, 分母]"),
) -> None:
    """开工率、竣工率、入统率与投资完成率，按全市、县市区、清单、包保领导或行业分组。"""
    from pipeline.db import session_scope
    from pipeline.rates import GROUPINGS, format_rates_table
    from pipeline.rates_as_of import rates_as_of

    rt = runtime()
    d = parse_date_option(as_of)
    assert d is not None
    if by not in GROUPINGS:
        raise fail(f"分组方式无效：{by}（应为 {'|'.join(GROUPINGS)}）", 2)
    ensure_database(rt)
    with session_scope(rt.read_session_factory) as session:
        groups = rates_as_of(session, d, by=by, order=rt.reference.order_for(by), chunk_size=rt.settings.reflag_chunk_size)
    if as_json:
        for g in groups:
            print(json.dumps(g.to_json(), ensure_ascii=False))
        return
    console.print(format_rates_table(groups, d, narrow=console.width < WIDE))
