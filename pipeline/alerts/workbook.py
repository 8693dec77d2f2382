"""The Excel attachment of a digest: the digest's tables, one sheet each (openpyxl).

Every string cell is neutralised against formula injection: text starting with =, +, -, @, a tab
or a carriage return gets a leading apostrophe, so a project named "=HYPERLINK(...)" stays text.
Characters that XML cannot carry are dropped rather than failing the whole digest.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from openpyxl import Workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter

from pipeline.alerts.channels.base import Attachment

if TYPE_CHECKING:
    from pipeline.alerts.content import FlaggedProject, FlagShift, LeaderDigest, OfficeDigest, RateLine

FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
_UNSAFE_FILENAME = re.compile(r'[\\/:*?"<>|\s]+')
_HEADER_FONT = Font(bold=True)
_HEADER_FILL = PatternFill("solid", fgColor="DDE4EE")
_WRAP = Alignment(wrap_text=True, vertical="top")
_FLAG_FILLS = {"red": PatternFill("solid", fgColor="F4C7C3"), "yellow": PatternFill("solid", fgColor="FCE8B2")}

FLAGGED_HEADERS = ("项目代码", "项目名称", "县市区", "责任单位", "挂牌", "原因")
RATE_HEADERS = (
    "分组", "项目数", "开工率", "开工率（全年）", "竣工率", "竣工率（全年）", "入统率",
    "本年完成投资（万元）", "年度计划投资（万元）", "投资完成率", "序时进度",
)
CHANGE_HEADERS = ("项目代码", "项目名称", "县市区", "上次述职时", "当前", "变化")
COUNT_HEADERS = ("红牌", "黄牌", "绿牌", "合计")


def safe_cell(value: Any) -> Any:
    """A cell value that Excel shows as typed: strings never start a formula."""
    if not isinstance(value, str):
        return value
    text = ILLEGAL_CHARACTERS_RE.sub("", value)
    return "'" + text if text.startswith(FORMULA_TRIGGERS) else text


def _sheet(book: Workbook, title: str, headers: Sequence[str], rows: Iterable[Sequence[Any]],
           widths: Sequence[int], *, flag_column: int | None = None, flags: Sequence[str] = ()) -> None:
    sheet = book.create_sheet(title)
    sheet.append([safe_cell(h) for h in headers])
    for cell in sheet[1]:
        cell.font, cell.fill = _HEADER_FONT, _HEADER_FILL
    for i, row in enumerate(rows):
        sheet.append([safe_cell(v) for v in row])
        for cell in sheet[sheet.max_row]:
            cell.alignment = _WRAP
        if flag_column is not None and i < len(flags) and flags[i] in _FLAG_FILLS:
            sheet.cell(row=sheet.max_row, column=flag_column).fill = _FLAG_FILLS[flags[i]]
    for n, width in enumerate(widths, start=1):
        sheet.column_dimensions[get_column_letter(n)].width = width
    sheet.freeze_panes = "A2"


def _reason_text(p: FlaggedProject) -> str:
    lines = [r.line for r in p.reasons]
    if p.override is not None:
        lines.append(p.override.line)
    return "\n".join(lines)


def _flagged_rows(projects: Sequence[FlaggedProject], *, with_leader: bool) -> list[tuple[Any, ...]]:
    rows = []
    for p in projects:
        leader = (p.leader or "",) if with_leader else ()
        rows.append((p.code, p.name, p.county, p.unit or "", *leader, p.flag_label, _reason_text(p)))
    return rows


def _rate_rows(lines: Iterable[RateLine]) -> list[tuple[Any, ...]]:
    return [
        (r.group, r.projects, r.start_rate, r.start_rate_annual, r.completion_rate, r.completion_rate_annual,
         r.stats_rate, r.ytd_completed, r.annual_plan, r.investment_rate, r.time_progress)
        for r in lines
    ]


def _change_rows(changes: Iterable[FlagShift], *, with_leader: bool) -> list[tuple[Any, ...]]:
    return [
        (s.code, s.name, s.county, *((s.leader or "",) if with_leader else ()), s.before_zh, s.after_zh, s.label)
        for s in changes
    ]


def _save(book: Workbook, filename: str) -> Attachment:
    del book[book.sheetnames[0]]  # the default empty sheet
    buffer = io.BytesIO()
    book.save(buffer)
    return Attachment(filename=filename, content=buffer.getvalue())


def attachment_name(who: str, review: Any) -> str:
    return f"双月述职-{_UNSAFE_FILENAME.sub('_', who).strip('_.') or '未命名'}-{review.isoformat()}.xlsx"


def leader_workbook(d: LeaderDigest) -> Attachment:
    """Sheets 红黄牌项目, 三率 and 变化情况 of one leader's digest."""
    book = Workbook()
    flagged = [*d.red, *d.yellow]
    _sheet(book, "红黄牌项目", FLAGGED_HEADERS, _flagged_rows(flagged, with_leader=False), (26, 36, 12, 28, 14, 80),
           flag_column=5, flags=[p.color for p in flagged])
    _sheet(book, "三率", RATE_HEADERS, _rate_rows([d.rates]), (14, 8, *(16,) * 9))
    _sheet(book, "变化情况", CHANGE_HEADERS, _change_rows(d.changes, with_leader=False), (26, 36, 12, 12, 10, 12))
    return _save(book, attachment_name(d.leader, d.review_date))


def office_workbook(d: OfficeDigest) -> Attachment:
    """Sheets 分县市区挂牌, 三率, 红牌项目, 包保领导挂牌 and 变化情况 of the office digest."""
    book = Workbook()
    counts = [*d.counties, d.city]
    _sheet(book, "分县市区挂牌", ("县市区", *COUNT_HEADERS), [(c.group, c.red, c.yellow, c.green, c.total) for c in counts],
           (16, 8, 8, 8, 8))
    _sheet(book, "三率", RATE_HEADERS, _rate_rows(d.rates), (14, 8, *(16,) * 9))
    _sheet(book, "红牌项目", (*FLAGGED_HEADERS[:4], "包保领导", *FLAGGED_HEADERS[4:]),
           _flagged_rows(d.red, with_leader=True), (26, 36, 12, 28, 12, 14, 80),
           flag_column=6, flags=[p.color for p in d.red])
    _sheet(book, "包保领导挂牌", ("包保领导", *COUNT_HEADERS),
           [(c.group, c.red, c.yellow, c.green, c.total) for c in d.leaders], (20, 8, 8, 8, 8))
    _sheet(book, "变化情况", (*CHANGE_HEADERS[:3], "包保领导", *CHANGE_HEADERS[3:]),
           _change_rows(d.changes, with_leader=True), (26, 36, 12, 12, 12, 10, 12))
    return _save(book, attachment_name("全市汇总", d.review_date))


__all__ = ["FORMULA_TRIGGERS", "attachment_name", "leader_workbook", "office_workbook", "safe_cell"]
