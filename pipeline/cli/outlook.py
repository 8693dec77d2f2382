"""`pipeline forecast` and `pipeline backtest` (SPEC §10): the outlook to the next review and a
candidate scheme tried on the stored history. Both read only."""

from __future__ import annotations

import json
from typing import Any

import typer

from pipeline.cli.app import app, console, fail, runtime
from pipeline.cli.reserve import ensure_database, parse_date_option
from pipeline.cli.views import COLOR_NAMES, COLOR_STYLE, WIDE


@app.command("forecast")
def forecast_cmd(
    as_of: str = typer.Option(None, "--as-of", help="截至日期 YYYY-MM-DD（默认为系统评估日期）"),
    review: str = typer.Option(None, "--review", help="述职日期 YYYY-MM-DD（默认为截至日期之后的下一次双月述职）"),
    leader: str = typer.Option(None, "--leader", help="只看某位包保领导的项目"),
    as_json: bool = typer.Option(False, "--json", help="每个项目输出一行 JSON（按项目代码排序）"),
) -> None:
    """预警：如情况不变（只有时间推移），到下次述职时挂牌会变差（转黄、转红）的项目。"""
    from sqlalchemy import select

    from pipeline.db import session_scope
    from pipeline.errors import ActionRefused
    from pipeline.forecast import forecast
    from pipeline.meta import evaluation_date
    from pipeline.models import Leader

    rt = runtime()
    d, r = parse_date_option(as_of), parse_date_option(review)
    ensure_database(rt)
    with session_scope(rt.session_factory) as session:
        d = d or evaluation_date(session, rt.clock)
        leader_id = None
        if leader:
            leader_id = session.scalar(select(Leader.id).where(Leader.name == leader))
            if leader_id is None:
                raise fail(f"包保领导不存在：{leader}", 2)
        try:
            items = forecast(session, scheme=rt.scheme, compiled=rt.compiled, calendar=rt.review_calendar, as_of=d,
                             review=r, leader_id=leader_id, chunk_size=rt.settings.reflag_chunk_size)
        except ActionRefused as exc:
            raise fail(str(exc), 2) from exc
        session.rollback()  # nothing of it is kept
    if as_json:
        for item in items:
            print(json.dumps(item.to_json(), ensure_ascii=False))
        return
    r = r or rt.review_calendar.next_review(d)
    console.print(f"截至 {d.isoformat()}，如情况不变，{r.isoformat()} 述职时将转黄或转红的项目：{len(items)} 个"
                  f"（挂牌方案 {rt.scheme.name}）", highlight=False)
    if items:
        console.print(forecast_table(items, rule_names={x.code: x.name for x in rt.scheme.rules}, width=console.width))


def forecast_table(items: list[Any], *, rule_names: dict[str, str], width: int) -> Any:
    """The forecast as a table that fits the terminal (a project is one cell below 120 columns)."""
    from rich.markup import escape
    from rich.table import Table

    def change(item: Any) -> str:
        return (f"[{COLOR_STYLE[item.flag_now]}]{COLOR_NAMES[item.flag_now]}[/] → "
                f"[{COLOR_STYLE[item.flag_at_review]}]{COLOR_NAMES[item.flag_at_review]}[/]")

    def reasons(item: Any) -> str:
        return escape("\n".join(f"{rule_names.get(x['code'], x['code'])}：{x['message']}" for x in item.reasons)) or "—"

    table = Table(show_lines=width < WIDE)
    if width >= WIDE:
        for title in ("项目代码", "项目名称", "包保领导", "现在 → 述职时", "述职时的原因"):
            table.add_column(title, overflow="fold")
        for item in items:
            table.add_row(item.code, escape(item.name), escape(item.leader or "—"), change(item), reasons(item))
        return table
    table.add_column("项目", min_width=24, ratio=2, overflow="fold")
    table.add_column("挂牌", min_width=4, max_width=12, overflow="fold")
    table.add_column("述职时的原因", ratio=3, overflow="fold")
    for item in items:
        table.add_row(f"{item.code}\n{escape(item.name)}\n[dim]{escape(item.leader or '未指定包保领导')}[/]",
                      change(item), reasons(item))
    return table


@app.command("backtest")
def backtest_cmd(
    scheme: str = typer.Option(..., "--scheme", help="试算方案：方案名称（jingzhou-2024、yinchuan-2025）或方案文件路径"),
    first: str = typer.Option(None, "--from", help="起始月份 YYYY-MM（默认为截止月份之前 11 个月）"),
    last: str = typer.Option(None, "--to", help="截止月份 YYYY-MM（默认为评估日期所在月之前最近的月末）"),
    as_json: bool = typer.Option(False, "--json", help="每月输出一行 JSON"),
    projects: bool = typer.Option(False, "--projects", help="同时列出挂牌颜色会变化的项目（两种方案的挂牌与原因）"),
) -> None:
    """方案试算：按月末用已入库的月报，分别按现行方案与试算方案评估，比较红黄绿数量与变化的项目。不写入任何数据。"""
    from pipeline.backtest import backtest, month_range, parse_month
    from pipeline.db import session_scope
    from pipeline.errors import ActionRefused
    from pipeline.meta import evaluation_date
    from pipeline.rules import SchemeError, load_scheme

    rt = runtime()
    try:
        start, end = parse_month(first, "--from "), parse_month(last, "--to ")
        candidate = load_scheme(scheme, config_dir=rt.settings.config_dir)
    except (ActionRefused, SchemeError) as exc:
        raise fail(str(exc), 2) from exc
    ensure_database(rt)
    with session_scope(rt.session_factory) as session:
        try:
            ends = month_range(start, end, today=evaluation_date(session, rt.clock))
        except ActionRefused as exc:
            raise fail(str(exc), 2) from exc
        months = backtest(session, current=rt.scheme, candidate=candidate, months=ends, with_projects=projects,
                          chunk_size=rt.settings.reflag_chunk_size)
        session.rollback()  # nothing of it is kept
    if as_json:
        for month in months:
            print(json.dumps(month.to_json(with_projects=projects), ensure_ascii=False))
        return
    console.print(f"现行方案 {rt.scheme.name}（{rt.scheme.title}）与试算方案 {candidate.name}（{candidate.title}），"
                  f"{ends[0]:%Y-%m} 至 {ends[-1]:%Y-%m} 各月末：", highlight=False)
    console.print(backtest_table(months))
    if projects:
        names = {x.code: x.name for x in (*rt.scheme.rules, *candidate.rules)}
        for month in months:
            for p in month.projects:
                console.print(f"{month.month} {p.code} {p.name}：现行{COLOR_NAMES[p.current_flag]} → 试算"
                              f"{COLOR_NAMES[p.candidate_flag]}", highlight=False)
                for label, reasons in (("现行", p.current_reasons), ("试算", p.candidate_reasons)):
                    for x in reasons:
                        console.print(f"    {label}：{names.get(x['code'], x['code'])}：{x['message']}",
                                      highlight=False, markup=False)


def backtest_table(months: list[Any]) -> Any:
    from rich.table import Table

    table = Table()
    table.add_column("月份", no_wrap=True)
    table.add_column("现行 红/黄/绿", justify="right")
    table.add_column("试算 红/黄/绿", justify="right")
    table.add_column("变化", justify="right")
    for m in months:
        table.add_row(m.month, "/".join(str(m.current[c]) for c in ("red", "yellow", "green")),
                      "/".join(str(m.candidate[c]) for c in ("red", "yellow", "green")), str(m.changed))
    return table
