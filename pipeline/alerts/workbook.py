"""The Excel attachment of a digest: the digest's tables, one sheet each (written by pipeline.xlsx_tables).

Numbers stay numbers: counts as integers, rates as fractions shown as percentages (0.934 → 93.4%)
beside their numerators and denominators, money in 万元 with two decimals, dates as dates; an
empty denominator leaves the rate blank. Every sheet has column widths, a frozen header and an
autofilter. A workbook is a list of sheets (``Sheet``: title, columns, rows), so another table
(the 预警 sheet of a forecast) is one more entry.

Every string cell is neutralised against formula injection: text starting with =, +, -, @, a tab
or a carriage return gets a leading apostrophe, so a project named "=HYPERLINK(...)" stays text.
Characters that XML cannot carry are dropped rather than failing the whole digest.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

from pipeline.alerts.channels.base import Attachment
from pipeline.alerts.mapped import Mapped
from pipeline.ingest.sheet_format import COUNT_FORMAT, DATE_FORMAT, MONEY_FORMAT, PERCENT_FORMAT
from pipeline.xlsx_tables import Table, TableColumn, write_tables

if TYPE_CHECKING:
    from pipeline.alerts.content import FlaggedProject, FlagShift, LeaderDigest, OfficeDigest, OutlookLine, RateLine
    from pipeline.rates import Ratio

FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
_UNSAFE_FILENAME = re.compile(r'[\\/:*?"<>|\s]+')
_FLAG_FILLS = {"red": "F4C7C3", "yellow": "FCE8B2"}


def safe_cell(value: Any) -> Any:
    """A cell value that Excel shows as typed: strings never start a formula."""
    if not isinstance(value, str):
        return value
    text = ILLEGAL_CHARACTERS_RE.sub("", value)
    return "'" + text if text.startswith(FORMULA_TRIGGERS) else text


@dataclass(frozen=True)
class Column:
    header: str
    width: float
    format: str | None = None  # a number format for numbers and dates
    wrap: bool = False
    flag: bool = False  # filled red or yellow after the row's colour


@dataclass(frozen=True)
class Sheet:
    title: str
    columns: tuple[Column, ...]
    rows: Sequence[Sequence[Any]]  # a flag column (Column.flag) is filled after the colour its label names


def _text(header: str, width: float, *, wrap: bool = False, flag: bool = False) -> Column:
    return Column(header, width, wrap=wrap, flag=flag)


def _count(header: str) -> Column:
    return Column(header, 8, COUNT_FORMAT)


def _percent(header: str) -> Column:
    return Column(header, 11, PERCENT_FORMAT)


def _money(header: str) -> Column:
    return Column(header, 16, MONEY_FORMAT)


COUNT_COLUMNS = (_count("红牌"), _count("黄牌"), _count("绿牌"), _count("合计"))
RATE_COLUMNS = (
    _text("分组", 14), _count("项目数"),
    _percent("开工率"), _count("已开工"), _count("应开工"),
    _percent("开工率（全年）"), _count("全年已开工"), _count("全年计划开工"),
    _percent("竣工率"), _count("已竣工"), _count("应竣工"),
    _percent("竣工率（全年）"), _count("全年已竣工"), _count("全年计划竣工"),
    _percent("入统率"), _count("已入统"), _count("应入统"),
    _money("本年完成投资（万元）"), _money("年度计划投资（万元）"), _percent("投资完成率"), _percent("序时进度"),
)


def flagged_columns(*, with_leader: bool) -> tuple[Column, ...]:
    leader = (_text("包保领导", 10),) if with_leader else ()
    return (_text("项目代码", 26), _text("项目名称", 36, wrap=True), _text("县市区", 12), _text("责任单位", 26, wrap=True),
            *leader, _text("挂牌", 14, flag=True), Column("评估日期", 12, DATE_FORMAT), _text("原因", 80, wrap=True))


def change_columns(*, with_leader: bool) -> tuple[Column, ...]:
    leader = (_text("包保领导", 10),) if with_leader else ()
    return (_text("项目代码", 26), _text("项目名称", 36, wrap=True), _text("县市区", 12), *leader,
            _text("上次述职时", 10), _text("当前", 10), _text("变化", 10))


def _reason_text(p: FlaggedProject) -> str:
    lines = [r.line for r in p.reasons]
    if p.override is not None:
        lines.append(p.override.line)
    return "\n".join(lines)


def flagged_sheet(title: str, projects: Sequence[FlaggedProject], *, with_leader: bool) -> Sheet:
    def row(p: FlaggedProject) -> tuple:
        leader = (p.leader or "",) if with_leader else ()
        return (p.code, p.name, p.county, p.unit or "", *leader, p.flag_label, p.flag_as_of, _reason_text(p))

    return Sheet(title, flagged_columns(with_leader=with_leader), Mapped(projects, row))


def _ratio(r: Ratio) -> tuple[float | None, int, int]:
    return (r.numerator / r.denominator if r.denominator else None, r.numerator, r.denominator)


def rates_sheet(lines: Iterable[RateLine]) -> Sheet:
    rows = []
    for line in lines:
        f = line.figures
        money = f.investment
        rows.append((
            line.group, f.projects, *_ratio(f.start_rate), *_ratio(f.start_rate_annual), *_ratio(f.completion_rate),
            *_ratio(f.completion_rate_annual), *_ratio(f.stats_rate), float(money.ytd_sum), float(money.plan_sum),
            float(money.ytd_sum / money.plan_sum) if money.plan_sum else None, float(line.progress),
        ))
    return Sheet("三率", RATE_COLUMNS, rows)


def changes_sheet(changes: Sequence[FlagShift], *, with_leader: bool) -> Sheet:
    return Sheet("变化情况", change_columns(with_leader=with_leader), Mapped(changes, lambda s: (
        s.code, s.name, s.county, *((s.leader or "",) if with_leader else ()), s.before_zh, s.after_zh, s.label)))


def outlook_sheet(items: Sequence[OutlookLine], *, with_leader: bool) -> Sheet:
    """预警: the projects that will be worse at the review if nothing changes but time."""
    leader = (_text("包保领导", 10),) if with_leader else ()
    columns = (_text("项目代码", 26), _text("项目名称", 36, wrap=True), _text("县市区", 12), *leader,
               _text("预警", 10), _text("现在", 10), _text("述职时", 10, flag=True), _text("述职时的原因", 80, wrap=True))
    rows = Mapped(items, lambda o: (o.code, o.name, o.county, *((o.leader or "",) if with_leader else ()), o.label,
                                    o.now_zh, o.at_review_zh, "\n".join(r.line for r in o.reasons)))
    return Sheet("预警", columns, rows)


def counts_sheet(title: str, group: str, counts: Iterable[Any]) -> Sheet:
    return Sheet(title, (_text(group, 20), *COUNT_COLUMNS), [(c.group, c.red, c.yellow, c.green, c.total) for c in counts])


def _table(sheet: Sheet) -> Table:
    columns = [TableColumn(c.header, c.width, c.format, c.wrap, c.flag) for c in sheet.columns]
    from pipeline.alerts.content import COLOR_ZH  # (content renders through this module)

    rows = Mapped(sheet.rows, lambda row: [safe_cell(value) for value in row])
    flag = next((i for i, c in enumerate(sheet.columns) if c.flag), None)
    # the fill of the colour the flag cell names first: 红牌, 红牌（已确认）, 红牌（人工调整，计算为黄牌）
    fills = {COLOR_ZH[colour]: rgb for colour, rgb in _FLAG_FILLS.items()}
    return Table(sheet.title, columns, rows,
                 None if flag is None else lambda row: fills.get(str(row[flag])[:len(COLOR_ZH["red"])]))


def workbook_attachment(sheets: Iterable[Sheet], filename: str) -> Attachment:
    return Attachment(filename=filename, content=write_tables([_table(sheet) for sheet in sheets]))


def attachment_name(who: str, review: Any) -> str:
    return f"双月述职-{_UNSAFE_FILENAME.sub('_', who).strip('_.') or '未命名'}-{review.isoformat()}.xlsx"


def leader_workbook(d: LeaderDigest) -> Attachment:
    """Sheets 红黄牌项目, 三率, 变化情况 and (with a forecast) 预警 of one leader's digest."""
    sheets = [
        flagged_sheet("红黄牌项目", [*d.red, *d.yellow], with_leader=False),
        rates_sheet([d.rates]),
        changes_sheet(d.changes, with_leader=False),
    ]
    if d.outlook is not None:
        sheets.append(outlook_sheet(d.outlook, with_leader=False))
    return workbook_attachment(sheets, attachment_name(d.leader, d.review_date))


def office_sheets(d: OfficeDigest) -> list[Sheet]:
    """分县市区挂牌, 三率, 红牌, 黄牌, (预警, with a forecast), 包保领导挂牌 and 变化情况."""
    outlook = [] if d.outlook is None else [outlook_sheet(d.outlook, with_leader=True)]
    return [
        counts_sheet("分县市区挂牌", "县市区", [*d.counties, d.city]),
        rates_sheet(d.rates),
        flagged_sheet("红牌", d.red, with_leader=True),
        flagged_sheet("黄牌", d.yellow, with_leader=True),
        *outlook,
        counts_sheet("包保领导挂牌", "包保领导", d.leaders),
        changes_sheet(d.changes, with_leader=True),
    ]


def office_workbook(d: OfficeDigest) -> Attachment:
    return workbook_attachment(office_sheets(d), attachment_name("全市汇总", d.review_date))


__all__ = [
    "FORMULA_TRIGGERS", "Column", "Sheet", "attachment_name", "leader_workbook", "office_sheets", "office_workbook",
    "outlook_sheet",
    "safe_cell", "workbook_attachment",
]
