"""Validation (SPEC §2, §3) over whole columns: raw cells → the accepted updates and every reason a row is refused.

A row with any error is refused whole; each error names the row, the Chinese header, the raw value
and what is wrong. Every check is a boolean column computed for all rows at once; the Chinese
messages are written only for the rows that failed. A later row with the same 项目代码 and 报告期
(or 来源编号) as an accepted one is refused as a duplicate.

The raw frame has ``ROW`` (the row number a user sees), ``SHEET`` (an index into the sheet names),
one text column per template alias present in the source, and for JSON a ``<alias>#kind`` column.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache
from typing import Any

import polars as pl

from pipeline.ingest.template import (
    FIELDS_BY_ALIAS,
    NATURE_NEW,
    SOURCE_ID_ALIAS,
    SOURCE_ID_HEADER,
    TEMPLATE_FIELDS,
    FieldType,
    RowError,
)
from pipeline.ingest.values import (
    FORMULA_MESSAGE,
    INVALID_TEXT_MESSAGE,
    LIST_ITEM_SEPARATOR,
    MAX_YEAR,
    MIN_YEAR,
    NUL_SHOWN_AS,
    Cell,
    Kind,
    Parsed,
    is_empty,
    looks_like_formula,
    money_text,
    normalised,
    parse_date,
    parse_lists,
    parse_nature,
    parse_number,
    parse_text,
    parse_yes_no,
    unescape_text,
)
from pipeline.reference import Reference

ROW = "__row"
SHEET = "__sheet"
KIND = "#kind"
CODE_PATTERN = r"^([0-9]{4})-[0-9]{6}-[0-9]{2}-[0-9]{2}-[0-9]{6}$"
CODE_HINT = "格式应为 YYYY-RRRRRR-II-TT-NNNNNN（24位，如 2024-421003-44-01-000123）"

# Longest accepted text per field (the database columns' sizes).
MAX_TEXT_LENGTH: dict[str, int] = {
    "code": 100, "name": 200, "county": 50, "industry": 50, "leader": 50, "unit": 200, "problems": 2000,
    SOURCE_ID_ALIAS: 120,
}
CHUNK_ROWS = 25_000  # rows validated at a time (bounds the intermediate columns)
DISTINCT_FROM_ROWS = 2_000  # from this many rows on, a repeating field's distinct values are read once
FIELDS: tuple[tuple[str, FieldType], ...] = (
    *((f.alias, f.type) for f in TEMPLATE_FIELDS), (SOURCE_ID_ALIAS, FieldType.TEXT),
)
_COLUMN_ORDER = {alias: i for i, (alias, _) in enumerate(FIELDS)}


def header_of(alias: str) -> str:
    return SOURCE_ID_HEADER if alias == SOURCE_ID_ALIAS else FIELDS_BY_ALIAS[alias].header


@dataclass(frozen=True)
class Rules:
    """What a row is checked against: the configured reference, today (from the clock), who sends it."""

    reference: Reference
    today: date
    max_future_days: int = 31
    # A unit's progress-only rows (SPEC §3): master-data fields may be left out.
    progress_only: bool = False

    def required(self, alias: str) -> bool:
        field = FIELDS_BY_ALIAS.get(alias)
        return field is not None and field.required and not (self.progress_only and field.master)


@dataclass(frozen=True)
class _Check:
    alias: str  # the column the error names
    failed: pl.Expr
    message: pl.Expr


def v(alias: str) -> pl.Expr:
    """The typed value of a field (null when empty or unreadable)."""
    return pl.col(f"v:{alias}")


def _bad(alias: str) -> pl.Expr:
    return pl.col(f"b:{alias}")


def _text(alias: str) -> pl.Expr:
    return pl.col(f"t:{alias}")


def _kind(alias: str, columns: Sequence[str]) -> pl.Expr:
    return pl.col(alias + KIND) if alias + KIND in columns else pl.lit(int(Kind.TEXT), pl.UInt8)


def _parse(alias: str, kind: FieldType, cell: Cell) -> Parsed:
    if kind is FieldType.NUMBER:
        return parse_number(cell)
    if kind is FieldType.DATE:
        return parse_date(cell)
    if kind is FieldType.NATURE:
        return parse_nature(cell)
    if kind is FieldType.YES_NO:
        return parse_yes_no(cell)
    if kind is FieldType.LISTS:
        return parse_lists(cell)
    return parse_text(cell, max_length=MAX_TEXT_LENGTH.get(alias, 200))


# ---------------------------------------------------------------- the checks


# Fields whose values repeat across rows (dates, choices, names of leaders and units): each distinct
# value is parsed once and the result joined back. Free text, codes and amounts are parsed row by row.
_DISTINCT_FIELDS = frozenset(
    {alias for alias, kind in FIELDS if kind in (FieldType.DATE, FieldType.NATURE, FieldType.YES_NO, FieldType.LISTS)}
    | {"county", "industry", "leader", "unit"}
)


@dataclass(frozen=True)
class _FieldPlan:
    """How one field's cells are read: its input columns, the stages of columns computed from them."""

    alias: str
    inputs: tuple[pl.Expr, ...]
    stages: tuple[tuple[pl.Expr, ...], ...]
    distinct: bool  # parse each distinct (text, kind) once

    def run(self, chunk: pl.DataFrame) -> pl.DataFrame:
        cells = chunk.select(self.inputs)
        keys = cells.columns
        todo = cells.unique() if self.distinct else cells
        lf = todo.lazy()
        for stage in self.stages:
            lf = lf.with_columns(stage)
        done = lf.collect()
        if self.distinct:
            done = cells.join(done, on=keys, how="left", nulls_equal=True, maintain_order="left")
        return done.drop(self.alias)


class _Plan:
    """The columns to compute, field by field then across fields, and the checks in the order a row's
    errors are listed."""

    def __init__(self, columns: Sequence[str], rules: Rules, *, spreadsheet: bool) -> None:
        self.rules = rules
        self.fields: list[_FieldPlan] = []
        self.stages: list[list[pl.Expr]] = []
        self.checks: list[_Check] = []
        self._cells(columns, spreadsheet)
        self._required()
        self._code_and_choices()
        self._money()
        self._dates()

    def check(self, alias: str, failed: pl.Expr, message: pl.Expr | str) -> None:
        self.checks.append(_Check(alias, failed, pl.lit(message) if isinstance(message, str) else message))

    def stage(self, exprs: list[pl.Expr]) -> None:
        if exprs:
            self.stages.append(exprs)

    def _cells(self, columns: Sequence[str], spreadsheet: bool) -> None:
        for alias, field_type in FIELDS:
            raw = pl.col(alias)
            inputs = [raw if alias in columns else pl.repeat(None, pl.len(), dtype=pl.Utf8).alias(alias)]
            if alias + KIND in columns:
                inputs.append(pl.col(alias + KIND))
            kind = _kind(alias, columns)
            formula = ((kind == int(Kind.TEXT)) & looks_like_formula(raw)).fill_null(False)
            text = pl.when(~formula & (kind == int(Kind.TEXT))).then(unescape_text(raw)).otherwise(raw) \
                if spreadsheet else raw
            steps: list[list[pl.Expr]] = []
            cell = Cell(alias, _text(alias), kind, pl.col(f"e:{alias}"), steps)
            result = _parse(alias, field_type, cell)
            invalid = kind == int(Kind.INVALID)
            bad = (pl.col(f"f:{alias}") | invalid | result.bad).fill_null(False)
            stages = [
                (text.alias(f"t:{alias}"), formula.alias(f"f:{alias}")),
                (is_empty(_text(alias), kind).alias(f"e:{alias}"),),
                *(tuple(step) for step in steps if step),
                (bad.alias(f"b:{alias}"),),
                (pl.when(_bad(alias)).then(None).otherwise(result.value).alias(f"v:{alias}"),),
            ]
            self.fields.append(_FieldPlan(alias, tuple(inputs), tuple(stages), alias in _DISTINCT_FIELDS))
            message = (pl.when(pl.col(f"f:{alias}")).then(pl.lit(FORMULA_MESSAGE))
                       .when(invalid).then(pl.lit(INVALID_TEXT_MESSAGE)).otherwise(result.message))
            self.check(alias, _bad(alias), message)

    def _required(self) -> None:
        for f in TEMPLATE_FIELDS:
            if self.rules.required(f.alias):
                self.check(f.alias, v(f.alias).is_null() & ~_bad(f.alias), "必填项为空")
        if not self.rules.progress_only:
            self.check("planned_start", (v("nature") == NATURE_NEW) & v("planned_start").is_null() & ~_bad("planned_start"),
                       "建设性质为新开工的项目必须填写计划开工日期")

    def _code_and_choices(self) -> None:
        ref = self.rules.reference
        # Codes and counties are compared (and kept) in their normalised form.
        self.stage([normalised(v("code")).alias("v:code"), normalised(v("county")).alias("v:county")])
        well_formed = v("code").str.contains(CODE_PATTERN)
        year = v("code").str.slice(0, 4).cast(pl.Int32, strict=False)
        self.check("code", v("code").is_not_null() & ~well_formed, f"项目代码{CODE_HINT}")
        self.check("code", well_formed & ~year.is_between(MIN_YEAR, MAX_YEAR),
                   pl.format(f"项目代码中的年份 {{}} 不合理（应在{MIN_YEAR}—{MAX_YEAR}年之间）", year))
        counties = "、".join(c.name for c in ref.counties)
        self.check("county", v("county").is_not_null() & ~v("county").is_in(sorted(ref.county_names)),
                   pl.format(f"县市区“{{}}”不在配置的县市区中（{counties}）", v("county")))
        unknown = v("lists").list.eval(pl.element().filter(~pl.element().is_in(list(ref.lists))))
        self.check("lists", unknown.list.len() > 0,
                   pl.format(f"清单“{{}}”不在配置的清单中（{'、'.join(ref.lists)}）", unknown.list.join("、")))

    def _money(self) -> None:
        self.check("total_investment", v("total_investment") <= 0, "总投资必须大于0")
        for alias in ("annual_plan", "cumulative_completed", "ytd_completed"):
            self.check(alias, v(alias) < 0, f"{header_of(alias)}不能为负数")
        cumulative, ytd = v("cumulative_completed"), v("ytd_completed")
        self.check("cumulative_completed", (cumulative >= 0) & (ytd >= 0) & (cumulative < ytd),
                   pl.format("累计完成投资（{}）不能小于本年完成投资（{}）", money_text(cumulative), money_text(ytd)))

    def _dates(self) -> None:
        ps, pc, start, as_of = v("planned_start"), v("planned_completion"), v("actual_start"), v("as_of")
        self.check("planned_completion", pc < ps, pl.format("计划竣工日期（{}）早于计划开工日期（{}）", pc, ps))
        self.check("actual_start", start > as_of, pl.format("实际开工日期（{}）晚于报告期（{}）", start, as_of))
        for alias, label in (("actual_completion", "实际竣工日期"), ("stats_included_on", "入统日期")):
            value = v(alias)
            self.check(alias, value.is_not_null() & start.is_null() & ~_bad("actual_start"), f"已填{label}但未填实际开工日期")
            self.check(alias, value < start, pl.format(f"{label}（{{}}）早于实际开工日期（{{}}）", value, start))
            self.check(alias, value > as_of, pl.format(f"{label}（{{}}）晚于报告期（{{}}）", value, as_of))
        days = self.rules.max_future_days
        latest = self.rules.today + timedelta(days=days)
        self.check("as_of", as_of > latest, pl.format(
            f"报告期（{{}}）晚于今天（{self.rules.today.isoformat()}）超过{days}天：不能填报将来的报告期，请检查年份和月份",
            as_of))


# ---------------------------------------------------------------- running them


def _shown(alias: str, columns: Sequence[str]) -> pl.Expr:
    """The raw cell as the user would recognise it (at most 200 characters, storable)."""
    text = _text(alias)
    if alias + KIND in columns:
        text = pl.when(pl.col(alias + KIND) == int(Kind.LIST)) \
            .then(text.str.replace_all(LIST_ITEM_SEPARATOR, ";", literal=True)).otherwise(text)
    text = text.str.replace_all("\x00", NUL_SHOWN_AS, literal=True)
    return pl.when(text.str.len_chars() > 200).then(pl.concat_str([text.str.slice(0, 200), pl.lit("…")])) \
        .otherwise(text)


def _errors_of(failing: pl.DataFrame, plan: _Plan) -> pl.DataFrame:
    """One row per failed check of the failing rows: where, which column, the raw value and the message."""
    parts = []
    hit = failing.select(pl.col(f"c{seq}").any() for seq in range(len(plan.checks))).row(0)
    for seq, check in enumerate(plan.checks):
        if not hit[seq]:
            continue
        parts.append(
            failing.lazy().filter(pl.col(f"c{seq}")).select(
                pl.col(ROW).cast(pl.Int64), pl.col(SHEET).cast(pl.Int32),
                pl.lit(_COLUMN_ORDER[check.alias] * 1000 + seq, pl.Int64).alias("order"),
                pl.lit(header_of(check.alias)).alias("header"), _shown(check.alias, failing.columns).alias("raw"),
                check.message.cast(pl.Utf8).str.replace_all("\x00", NUL_SHOWN_AS, literal=True).alias("message"),
            )
        )
    return pl.concat(parts).collect()


def _read_cells(chunk: pl.DataFrame, plan: _Plan) -> pl.LazyFrame:
    """Every field's cells read. A few rows go through one query; many go field by field, each
    distinct value of a repeating field read once (the same expressions either way)."""
    where = chunk.select(pl.col(ROW).cast(pl.Int64), pl.col(SHEET).cast(pl.Int32))
    if chunk.height <= DISTINCT_FROM_ROWS:
        lf = chunk.lazy().select(pl.col(ROW).cast(pl.Int64), pl.col(SHEET).cast(pl.Int32),
                                 *(e for field in plan.fields for e in field.inputs))
        depth = max(len(field.stages) for field in plan.fields)
        for k in range(depth):
            lf = lf.with_columns([e for field in plan.fields if k < len(field.stages) for e in field.stages[k]])
        return lf.drop([alias for alias, _ in FIELDS])
    return pl.concat([where, *(field.run(chunk) for field in plan.fields)], how="horizontal").lazy()


def _check_chunk(chunk: pl.DataFrame, plan: _Plan) -> tuple[pl.DataFrame, pl.DataFrame]:
    lf = _read_cells(chunk, plan)
    for stage in plan.stages:
        lf = lf.with_columns(stage)
    flags = [check.failed.fill_null(False).alias(f"c{seq}") for seq, check in enumerate(plan.checks)]
    checked = lf.with_columns(flags).with_columns(pl.any_horizontal(pl.col(r"^c\d+$")).alias("__failed")).collect()
    failing = checked.filter(pl.col("__failed"))
    errors = _errors_of(failing, plan) if failing.height else _EMPTY_ERRORS
    accepted = checked.filter(~pl.col("__failed")).select(
        pl.col(ROW), pl.col(SHEET), *(v(alias).alias(alias) for alias, _ in FIELDS)
    )
    return accepted, errors


_EMPTY_ERRORS = pl.DataFrame(schema={ROW: pl.Int64, SHEET: pl.Int32, "order": pl.Int64, "header": pl.Utf8,
                                     "raw": pl.Utf8, "message": pl.Utf8})


def _place(row: int, sheet: int | None, sheets: Sequence[str | None]) -> str:
    name = sheets[sheet] if sheet is not None else None
    return RowError(row, None, None, "", sheet=name).place


def _refuse_duplicates(accepted: pl.DataFrame, sheets: Sequence[str | None]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """A later row with the 项目代码 and 报告期, or the 来源编号, of an earlier accepted row is refused.

    Only rows that share a key with another row can be refused; they are walked in file order.
    """
    accepted = accepted.with_row_index("__pos")
    shares_key = pl.struct("code", "as_of").is_duplicated()
    shares_source = pl.col(SOURCE_ID_ALIAS).is_not_null() & pl.col(SOURCE_ID_ALIAS).is_duplicated()
    involved = accepted.filter(shares_key | shares_source)
    if not involved.height:
        return accepted.drop("__pos"), _EMPTY_ERRORS
    first_by_key: dict[tuple[str, date], tuple[int, int | None]] = {}
    first_by_source: dict[str, tuple[int, int | None]] = {}
    refused: list[int] = []
    errors: list[dict[str, Any]] = []
    for pos, row, sheet, code, as_of, source in involved.select(
        "__pos", ROW, SHEET, "code", "as_of", SOURCE_ID_ALIAS
    ).iter_rows():
        earlier = first_by_key.get((code, as_of))
        earlier_source = first_by_source.get(source) if source else None
        where = {ROW: row, SHEET: sheet}
        if earlier is not None:
            errors.append({**where, "order": _COLUMN_ORDER["code"] * 1000 + 999, "header": header_of("code"), "raw": code,
                           "message": f"与{_place(*earlier, sheets)}重复（项目代码和报告期（{as_of.isoformat()}）都相同），本行未导入"})
        elif earlier_source is not None:
            errors.append({**where, "order": _COLUMN_ORDER[SOURCE_ID_ALIAS] * 1000 + 999, "header": SOURCE_ID_HEADER,
                           "raw": source, "message": f"来源编号与{_place(*earlier_source, sheets)}重复，本行未导入"})
        else:
            first_by_key[(code, as_of)] = (row, sheet)
            if source:
                first_by_source[source] = (row, sheet)
            continue
        refused.append(pos)
    kept = accepted.filter(~pl.col("__pos").is_in(refused)).drop("__pos")
    return kept, pl.DataFrame(errors, schema=_EMPTY_ERRORS.schema)


def row_errors(errors: pl.DataFrame, sheets: Sequence[str | None]) -> list[RowError]:
    """The error frame, in file order (sheet, row, column), as RowErrors."""
    ordered = errors.sort([SHEET, ROW, "order"], nulls_last=False, maintain_order=True)
    named = len([s for s in sheets if s]) > 1
    return [
        RowError(row, header, raw, message, sheet=sheets[sheet] if named and sheet is not None else None)
        for row, sheet, _, header, raw, message in ordered.iter_rows()
    ]


@lru_cache(maxsize=32)
def _plan(columns: tuple[str, ...], rules: Rules, spreadsheet: bool) -> _Plan:
    return _Plan(columns, rules, spreadsheet=spreadsheet)


def validate(
    raw: pl.DataFrame,
    rules: Rules,
    *,
    sheets: Sequence[str | None] = (None,),
    spreadsheet: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The accepted rows (typed, one column per alias, ``ROW`` and ``SHEET``) and the error frame."""
    plan = _plan(tuple(raw.columns), rules, spreadsheet)
    total = raw.height
    accepted_parts, error_parts = [], []
    if progress is not None:
        progress(0, total)
    for offset in range(0, total, CHUNK_ROWS):
        accepted, errors = _check_chunk(raw.slice(offset, CHUNK_ROWS), plan)
        accepted_parts.append(accepted)
        error_parts.append(errors)
        if progress is not None:
            progress(min(offset + CHUNK_ROWS, total), total)
    if progress is not None:
        progress(total, total)
    if not accepted_parts:
        accepted, _ = _check_chunk(raw.clear(), plan)
        accepted_parts.append(accepted)
    accepted, duplicates = _refuse_duplicates(pl.concat(accepted_parts), sheets)
    return accepted, pl.concat([*error_parts, duplicates])
