"""Per-row validation (SPEC §2): raw cells → an ``UpdateRow``, or every reason the row is refused.

A row with any error is refused whole; each error names the row, the Chinese header, the raw value
and what is wrong. ``validate_rows`` adds what needs the whole file: duplicates and progress.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from pipeline.ingest.template import (
    FIELDS_BY_ALIAS,
    NATURE_NEW,
    SOURCE_ID_ALIAS,
    SOURCE_ID_HEADER,
    TEMPLATE_FIELDS,
    FieldType,
    RowError,
    UpdateRow,
)
from pipeline.ingest.values import (
    MAX_YEAR,
    MIN_YEAR,
    BadValue,
    display,
    normalise_text,
    parse_date,
    parse_nature,
    parse_number,
    parse_text,
    parse_yes_no,
    split_lists,
)
from pipeline.reference import Reference

CODE_PATTERN = re.compile(r"(\d{4})-(\d{6})-(\d{2})-(\d{2})-(\d{6})")
CODE_HINT = "格式应为 YYYY-RRRRRR-II-TT-NNNNNN（24位，如 2024-421003-44-01-000123）"
FORMULA_MESSAGE = "单元格是公式，请复制后用“选择性粘贴→数值”粘贴为数值再导入"

# Longest accepted text per field (the database columns' sizes).
MAX_TEXT_LENGTH: dict[str, int] = {
    "code": 100, "name": 200, "county": 50, "industry": 50, "leader": 50, "unit": 200, "problems": 2000,
    SOURCE_ID_ALIAS: 120,
}
PROGRESS_EVERY = 200
_COLUMN_ORDER = {f.header: i for i, f in enumerate(TEMPLATE_FIELDS)} | {SOURCE_ID_HEADER: len(TEMPLATE_FIELDS)}


@dataclass(frozen=True)
class RawRow:
    """One row as read: cells keyed by alias (``source_id`` for the source's id), before any parsing."""

    row_number: int
    cells: Mapping[str, Any]
    # Cells holding a formula: a real xlsx formula cell, or text starting with "=".
    formula_aliases: frozenset[str] = field(default_factory=frozenset)


def header_of(alias: str) -> str:
    return SOURCE_ID_HEADER if alias == SOURCE_ID_ALIAS else FIELDS_BY_ALIAS[alias].header


class _RowChecker:
    """Collects the typed values and the errors of one row."""

    def __init__(self, raw: RawRow) -> None:
        self.raw = raw
        self.values: dict[str, Any] = {}
        self.errors: list[RowError] = []
        self.failed: set[str] = set()  # aliases whose cell could not be read

    def fail(self, alias: str, message: str) -> None:
        self.failed.add(alias)
        self.errors.append(
            RowError(self.raw.row_number, header_of(alias), display(self.raw.cells.get(alias)), message)
        )

    def has(self, *aliases: str) -> bool:
        return all(self.values.get(a) is not None for a in aliases)


def _parse_cell(alias: str, kind: FieldType, raw: Any) -> Any:
    if kind is FieldType.NUMBER:
        return parse_number(raw)
    if kind is FieldType.DATE:
        return parse_date(raw)
    if kind is FieldType.NATURE:
        return parse_nature(raw)
    if kind is FieldType.YES_NO:
        return parse_yes_no(raw)
    if kind is FieldType.LISTS:
        return split_lists(raw)
    return parse_text(raw, max_length=MAX_TEXT_LENGTH.get(alias, 200))


def _read_cells(check: _RowChecker) -> None:
    cells = check.raw.cells
    kinds = [(f.alias, f.type) for f in TEMPLATE_FIELDS] + [(SOURCE_ID_ALIAS, FieldType.TEXT)]
    for alias, kind in kinds:
        raw = cells.get(alias)
        if alias in check.raw.formula_aliases:
            check.fail(alias, FORMULA_MESSAGE)
            continue
        try:
            check.values[alias] = _parse_cell(alias, kind, raw)
        except BadValue as exc:
            check.fail(alias, str(exc))


def _check_required(check: _RowChecker) -> None:
    for f in TEMPLATE_FIELDS:
        if f.required and f.alias not in check.failed and check.values.get(f.alias) is None:
            check.fail(f.alias, "必填项为空")
    if (
        check.values.get("nature") == NATURE_NEW
        and check.values.get("planned_start") is None
        and "planned_start" not in check.failed
    ):
        check.fail("planned_start", "建设性质为新开工的项目必须填写计划开工日期")


def _check_code(check: _RowChecker) -> None:
    code = check.values.get("code")
    if code is None:
        return
    code = normalise_text(code)
    match = CODE_PATTERN.fullmatch(code)
    if not match:
        check.fail("code", f"项目代码{CODE_HINT}")
        return
    year = int(match[1])
    if not MIN_YEAR <= year <= MAX_YEAR:
        check.fail("code", f"项目代码中的年份 {year} 不合理（应在{MIN_YEAR}—{MAX_YEAR}年之间）")
        return
    check.values["code"] = code


def _check_choices(check: _RowChecker, reference: Reference) -> None:
    county = check.values.get("county")
    if county is not None:
        county = normalise_text(county)
        if county not in reference.county_names:
            check.fail("county", f"县市区“{county}”不在配置的县市区中（{'、'.join(c.name for c in reference.counties)}）")
        check.values["county"] = county
    unknown = [name for name in check.values.get("lists") or () if name not in reference.lists]
    if unknown:
        check.fail("lists", f"清单“{'、'.join(unknown)}”不在配置的清单中（{'、'.join(reference.lists)}）")


def _check_money(check: _RowChecker) -> None:
    total = check.values.get("total_investment")
    if total is not None and total <= 0:
        check.fail("total_investment", "总投资必须大于0")
    for alias in ("annual_plan", "cumulative_completed", "ytd_completed"):
        value = check.values.get(alias)
        if value is not None and value < 0:
            check.fail(alias, f"{FIELDS_BY_ALIAS[alias].header}不能为负数")
    cumulative, ytd = check.values.get("cumulative_completed"), check.values.get("ytd_completed")
    if cumulative is not None and ytd is not None and cumulative >= 0 and ytd >= 0 and cumulative < ytd:
        check.fail("cumulative_completed", f"累计完成投资（{cumulative}）不能小于本年完成投资（{ytd}）")


def _fmt(d: date) -> str:
    return d.isoformat()


def _check_dates(check: _RowChecker) -> None:
    v = check.values
    if check.has("planned_start", "planned_completion") and v["planned_completion"] < v["planned_start"]:
        check.fail(
            "planned_completion",
            f"计划竣工日期（{_fmt(v['planned_completion'])}）早于计划开工日期（{_fmt(v['planned_start'])}）",
        )
    if check.has("actual_start", "as_of") and v["actual_start"] > v["as_of"]:
        check.fail("actual_start", f"实际开工日期（{_fmt(v['actual_start'])}）晚于报告期（{_fmt(v['as_of'])}）")
    for alias, label in (("actual_completion", "实际竣工日期"), ("stats_included_on", "入统日期")):
        value = v.get(alias)
        if value is None:
            continue
        if v.get("actual_start") is None:
            if "actual_start" not in check.failed:
                check.fail(alias, f"已填{label}但未填实际开工日期")
        elif value < v["actual_start"]:
            check.fail(alias, f"{label}（{_fmt(value)}）早于实际开工日期（{_fmt(v['actual_start'])}）")
        if v.get("as_of") is not None and value > v["as_of"]:
            check.fail(alias, f"{label}（{_fmt(value)}）晚于报告期（{_fmt(v['as_of'])}）")


def validate_row(raw: RawRow, *, reference: Reference) -> UpdateRow | list[RowError]:
    """The validated row, or the list of everything wrong with it (never both)."""
    check = _RowChecker(raw)
    _read_cells(check)
    _check_required(check)
    _check_code(check)
    _check_choices(check, reference)
    _check_money(check)
    _check_dates(check)
    if check.errors:
        return sorted(check.errors, key=lambda e: _COLUMN_ORDER.get(e.header or "", 0))
    v = check.values
    return UpdateRow(
        code=v["code"], name=v["name"], county=v["county"], nature=v["nature"],
        total_investment=v["total_investment"], as_of=v["as_of"], industry=v["industry"],
        lists=v["lists"], annual_plan=v["annual_plan"], planned_start=v["planned_start"],
        planned_completion=v["planned_completion"], actual_start=v["actual_start"],
        actual_completion=v["actual_completion"], stats_included_on=v["stats_included_on"],
        cumulative_completed=v["cumulative_completed"], ytd_completed=v["ytd_completed"],
        leader=v["leader"], unit=v["unit"], problems=v["problems"],
        needs_coordination=v["needs_coordination"], source_id=v[SOURCE_ID_ALIAS], row_number=raw.row_number,
    )


def validate_rows(
    raws: Iterable[RawRow],
    *,
    reference: Reference,
    total: int,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[list[UpdateRow], list[RowError]]:
    """Validate every row; a later row with the same 项目代码 and 报告期 (or 来源编号) as an accepted one is refused."""
    rows: list[UpdateRow] = []
    errors: list[RowError] = []
    first_by_key: dict[tuple[str, date], int] = {}
    first_by_source: dict[str, int] = {}
    done = 0
    for raw in raws:
        result = validate_row(raw, reference=reference)
        if isinstance(result, list):
            errors.extend(result)
        else:
            earlier = first_by_key.get((result.code, result.as_of))
            earlier_source = first_by_source.get(result.source_id) if result.source_id else None
            if earlier is not None:
                errors.append(RowError(
                    raw.row_number, header_of("code"), result.code,
                    f"与第{earlier}行重复（项目代码和报告期（{result.as_of.isoformat()}）都相同），本行未导入",
                ))
            elif earlier_source is not None:
                errors.append(RowError(
                    raw.row_number, SOURCE_ID_HEADER, result.source_id,
                    f"来源编号与第{earlier_source}行重复，本行未导入",
                ))
            else:
                first_by_key[(result.code, result.as_of)] = raw.row_number
                if result.source_id:
                    first_by_source[result.source_id] = raw.row_number
                rows.append(result)
        done += 1
        if progress is not None and done % PROGRESS_EVERY == 0:
            progress(done, total)
    if progress is not None:
        progress(done, max(total, done))
    return rows, errors
