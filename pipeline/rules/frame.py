"""The facts frame: one row per project, the columns the columnar engine reads (SPEC §4).

``FACT_DTYPES`` is the one schema of a facts frame; ``facts_frame`` builds one from
``ProjectFacts``; ``prepare`` checks a caller's frame and turns it into the engine's working
columns (dates as dates, money as exact integer cents).

Money columns are ``Decimal(38, 2)``; other types are accepted and cast:
- ``Decimal`` of another precision or scale: cast to ``Decimal(38, 2)`` (a finer scale is
  rounded half to even by polars: pass whole cents for exact results);
- integers: whole 万元, exact;
- ``Float64``: polars' cast to ``Decimal(38, 2)``, i.e. the float's shortest decimal text rounded
  half to even to cents (2.675 → 2.68, 1.005 → 1.00); pass Decimal where cents matter.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

import polars as pl

from pipeline.facts import ProjectFacts

MONEY = pl.Decimal(38, 2)

FACT_DTYPES: dict[str, pl.DataType] = {
    "as_of": pl.Date(),  # null: no report on or before D (green, no reasons)
    "nature": pl.String(),
    "annual_plan": MONEY,
    "cumulative_completed": MONEY,
    "ytd_completed": MONEY,
    "planned_start": pl.Date(),
    "planned_completion": pl.Date(),
    "actual_start": pl.Date(),
    "actual_completion": pl.Date(),
    "stats_included_on": pl.Date(),
    "needs_coordination": pl.Boolean(),
    "problems": pl.String(),
    "prev_base": pl.UInt8(),  # base colour rank at the previous month's end: 0 green, 1 yellow, 2 red
}
MONEY_COLUMNS = ("annual_plan", "cumulative_completed", "ytd_completed")
DATE_COLUMNS = ("as_of", "planned_start", "planned_completion", "actual_start", "actual_completion", "stats_included_on")
PREV_BASE = "prev_base"

# The engine's working columns beside the facts (never seen by callers).
YTD_CENTS = "__ytd_cents"  # ytd_completed in cents, Int128, null counted as 0
PLAN_CENTS = "__plan_cents"  # annual_plan in cents, Int128 (null stays null)


def facts_frame(
    rows: Sequence[ProjectFacts | None],
    *,
    prev_base: Sequence[int | None] | None = None,
    extra: Mapping[str, Sequence[Any]] | None = None,
) -> pl.DataFrame:
    """A facts frame from ``ProjectFacts`` (None: the project has no row, null ``as_of``).

    The first column is ``code`` (null for a missing row); ``extra`` columns follow it, then the
    fact columns in ``FACT_DTYPES`` order; ``prev_base`` defaults to null (green).
    """
    columns: dict[str, pl.Series] = {"code": pl.Series("code", [r.code if r else None for r in rows], pl.String)}
    for name, values in (extra or {}).items():
        columns[name] = pl.Series(name, values)
    for name, dtype in FACT_DTYPES.items():
        if name == PREV_BASE:
            values = list(prev_base) if prev_base is not None else [None] * len(rows)
        elif name == "needs_coordination":
            values = [r.needs_coordination if r else None for r in rows]
        else:
            values = [getattr(r, name) if r else None for r in rows]
        columns[name] = pl.Series(name, values, dtype=dtype)
    return pl.DataFrame(columns)


def _money_cents(name: str, dtype: pl.DataType) -> pl.Expr:
    column = pl.col(name)
    if dtype == pl.Null:
        return pl.lit(None, dtype=pl.Int128)
    if not (isinstance(dtype, pl.Decimal) and dtype.scale == 2 and dtype.precision is not None and dtype.precision <= 38):
        column = column.cast(MONEY)
    return column.to_physical().cast(pl.Int128)


def prepare(facts: pl.DataFrame, as_of: date, *, with_previous: bool) -> pl.DataFrame:
    """The engine's working frame: the fact columns in their dtypes, money as Int128 cents.

    Raises ``ValueError`` for a missing column, an unusable dtype or a row dated after D.
    """
    needed = [n for n in FACT_DTYPES if n != PREV_BASE or with_previous]
    missing = [n for n in needed if n not in facts.columns]
    if missing:
        raise ValueError(f"事实表缺少列：{'、'.join(missing)}")
    check_not_after(facts, as_of, "的报告期 {as_of} 晚于评价日期 {day}")
    schema = facts.schema
    exprs: list[pl.Expr] = [pl.col(name).cast(pl.Date) for name in DATE_COLUMNS]
    exprs.append(pl.col("needs_coordination").cast(pl.Boolean).fill_null(False))
    exprs.append(pl.col("problems").cast(pl.String))
    exprs.append(_money_cents("ytd_completed", schema["ytd_completed"]).fill_null(0).alias(YTD_CENTS))
    exprs.append(_money_cents("annual_plan", schema["annual_plan"]).alias(PLAN_CENTS))
    if with_previous:
        exprs.append(pl.col(PREV_BASE).cast(pl.UInt8).fill_null(0))
    try:
        return facts.select(exprs)
    except (pl.exceptions.InvalidOperationError, pl.exceptions.ComputeError) as exc:
        raise ValueError(f"事实表的列类型无法转换：{exc}") from exc


def project_label(facts: pl.DataFrame, index: int) -> str:
    """How an error names one row: its ``code`` (or ``project_id``) when the frame has one."""
    for name in ("code", "project_id"):
        if name in facts.columns and facts[name][index] is not None:
            return str(facts[name][index])
    return f"第{index + 1}行"


def check_not_after(facts: pl.DataFrame, day: date, template: str) -> None:
    """Refuse a frame with a row dated after ``day``: ``项目 <code>`` + ``template``."""
    if "as_of" not in facts.columns:
        return
    late = facts.select((pl.col("as_of").cast(pl.Date) > day).arg_true().first()).item()
    if late is not None:
        raise ValueError(f"项目 {project_label(facts, late)} " + template.format(as_of=facts["as_of"][late], day=day))


__all__ = ["FACT_DTYPES", "MONEY", "check_not_after", "facts_frame", "prepare"]
