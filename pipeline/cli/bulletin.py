"""`pipeline bulletin`: the monthly bulletin 通报 (SPEC §10) as tables, JSON lines or an xlsx file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from pipeline.cli.app import app, console, fail, runtime
from pipeline.cli.reserve import ensure_database

if TYPE_CHECKING:
    from pipeline.bulletin import Bulletin


def ranking_table(b: Bulletin, measure: str) -> Any:
    """One ranking, best first: fits an 80-column terminal."""
    from rich.table import Table

    from pipeline.bulletin import MEASURE_NAMES, MEASURE_TERMS

    done, due = MEASURE_TERMS[measure]
    table = Table(title=f"{MEASURE_NAMES[measure]}排名（{b.month}，较上月末 {b.previous_end.isoformat()}）")
    table.add_column("名次", justify="right")
    table.add_column("县市区")
    table.add_column(MEASURE_NAMES[measure], justify="right")
    table.add_column(f"{done}/{due}", justify="right")
    table.add_column("上月名次", justify="right")
    table.add_column("上月", justify="right")
    table.add_column("较上月", justify="right")
    for line in b.ranking(measure):
        s = line[measure]
        table.add_row(str(s.rank), line.county, s.value.display(), f"{s.value.numerator}/{s.value.denominator}",
                      f"{s.previous_rank}（{s.rank_change_display()}）" if s.rank_change is not None else str(s.previous_rank), s.previous.display(), s.change_display())
    return table


@app.command("bulletin")
def bulletin_cmd(
    month: str = typer.Option(..., "--month", help="月份 YYYY-MM（通报该月末的情况）"),
    out: Path = typer.Option(None, "--out", help="另存为 xlsx 文件"),
    as_json: bool = typer.Option(False, "--json", help="每个县市区输出一行 JSON，比率为 [分子, 分母]"),
) -> None:
    """月度通报：各县市区按开工率、竣工率、入统率和红牌占比排名，并与上月末比较。"""
    from pipeline.bulletin import MEASURES, bulletin_month, gather_bulletin
    from pipeline.db import session_scope
    from pipeline.meta import evaluation_date

    if out is not None and out.suffix.lower() != ".xlsx":
        raise fail(f"导出文件应为 .xlsx：{out}", 2)
    rt = runtime()
    ensure_database(rt)
    with session_scope(rt.session_factory) as session:
        try:
            month_end = bulletin_month(month, evaluated=evaluation_date(session, rt.clock))
        except ValueError as exc:
            raise fail(str(exc), 2) from exc
        bulletin = gather_bulletin(session, month_end, scheme=rt.scheme, compiled=rt.compiled,
                                   order=rt.reference.order_for("county"), chunk_size=rt.settings.reflag_chunk_size)
    if out is not None:
        from pipeline.bulletin_workbook import bulletin_xlsx

        try:
            out.write_bytes(bulletin_xlsx(bulletin))
        except OSError as exc:
            raise fail(f"无法写入 {out}：{exc.strerror or exc}") from exc
    if as_json:
        for line in bulletin.to_json():
            print(json.dumps(line, ensure_ascii=False))
        return
    console.print(f"{bulletin.title}（截至 {month_end.isoformat()}）", highlight=False)
    for measure in MEASURES:
        console.print(ranking_table(bulletin, measure))
    console.print("较上月：百分点。比率相同者名次并列；分母为零显示“—”，排在最后；红牌占比越低名次越前。", highlight=False)
    if out is not None:
        console.print(f"已导出：{out}", highlight=False)
