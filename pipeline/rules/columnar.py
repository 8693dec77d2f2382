"""The scheme compiled into polars expressions, evaluated over a whole chunk of projects (SPEC §4).

``compile_scheme(scheme)`` reads the YAML-born ``Scheme`` once: per rule, its metric's measure,
its bands, whether it still judges completed projects, and its message split into literal text
and placeholders. ``CompiledScheme.evaluate(facts, D)`` then:

1. turns each rule that applies in D's month into a colour-rank column (2 red, 1 yellow, 0 when
   the rule does not fire): its bands, worst first, as boolean expressions over the chunk;
2. takes the base rank (the worst of the non-derived rules), then the derived rules (ESCALATED
   reads the base rank now and ``prev_base``), then the flag;
3. builds each reason's JSON text only over the rows where that rule fires, and puts a
   project's reasons together worst colour first, then in scheme order (``reason_text``).

The ``reasons`` text is exactly ``json.dumps([reason.to_json(), ...], ensure_ascii=False,
separators=(",", ":"))`` of the reasons ``pipeline.rules.evaluate`` returns.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from fractions import Fraction
from functools import lru_cache
from typing import Any

import polars as pl

from pipeline.rules.frame import PLAN_CENTS, PREV_BASE, YTD_CENTS, check_not_after, prepare
from pipeline.rules.measures import BASE, Day, MoneyBounds
from pipeline.rules.metrics import METRICS, AsOf, Metric, previous_month_end
from pipeline.rules.reason_text import COLOR_NAMES, FIRST_KEY, LAST_KEY, Message, assemble, reason_key, reason_text
from pipeline.rules.scheme import Rule, Scheme

RANK = "__rank"
HAS_ROW = "__has_row"
OPEN = "__open"  # has a row and is not completed
PACE_METRICS = ("pace_ratio", "pace_gap")


@dataclass(frozen=True)
class CompiledRule:
    index: int  # position in the scheme: the order of reasons within a colour
    rule: Rule
    metric: Metric
    on_completed: bool  # still judges a completed project
    message: Message

    @property
    def column(self) -> str:
        return f"__rule{self.index}"

    @property
    def value_column(self) -> str:
        return f"__metric_{self.metric.name}"

    def value(self, day: Day) -> pl.Expr | None:
        """The metric's value as a column of the working frame, when the metric has one."""
        return None if self.metric.measure.value(day) is None else pl.col(self.value_column)

    def rank(self, day: Day) -> pl.Expr:
        """2, 1 or 0: the worst band the metric's value lies in, where the rule applies."""
        gate = pl.col(HAS_ROW) if self.on_completed else pl.col(OPEN)
        chain: Any = pl
        for band in self.rule.bands:  # worst colour first
            test = gate & self.metric.measure.predicate(band, day, self.value(day))
            chain = chain.when(test).then(pl.lit(band.color.rank, dtype=pl.UInt8))
        return chain.otherwise(pl.lit(0, dtype=pl.UInt8)).alias(self.column)

    def key(self, rules: int) -> pl.Expr:
        return reason_key(pl.col(self.column), self.index, rules)

    def reasons(self, firing: pl.LazyFrame, day: Day, rules: int) -> pl.LazyFrame:
        """The reason's JSON text over ``firing``, the rows where the rule fires."""
        prelude, shown = self.metric.measure.values(day, self.value(day))
        if prelude:
            firing = firing.with_columns(**prelude)
        return firing.select(reason_text(
            code=self.rule.code, rank=self.column, key=self.key(rules), message=self.message, keys=self.metric.values,
            shown=shown,
        ))


class CompiledScheme:
    """A scheme as column expressions; see the module's docstring."""

    def __init__(self, scheme: Scheme) -> None:
        self.scheme = scheme
        self.rules: tuple[CompiledRule, ...] = tuple(
            CompiledRule(index=index, rule=rule, metric=METRICS[rule.metric],
                         on_completed=rule.code in scheme.completed_projects, message=Message.of(rule.message))
            for index, rule in enumerate(scheme.rules)
        )

    # --- the API ---------------------------------------------------------------------------------

    def evaluate(self, facts: pl.DataFrame, as_of: date, *, ytd_scale: Fraction | None = None,
                 reasons_where: Callable[[pl.DataFrame], pl.Series] | None = None) -> pl.DataFrame:
        """``facts`` plus ``color``, ``base_color`` and ``reasons`` (JSON text), each row as of D.

        ``ytd_scale``: judge every project as if its ytd_completed were multiplied by this exact
        rational (the forecast, SPEC §10); reported ytd amounts are the scaled amounts rounded
        half away from zero to cents.

        ``reasons_where``: given ``facts`` with ``color`` and ``base_color``, the rows whose reasons
        are wanted (a boolean Series); the others get null ``reasons`` and cost no text (a re-flag
        writes only the flags that changed).
        """
        scale = Fraction(1) if ytd_scale is None else Fraction(ytd_scale)
        work, rules, day = self._ranked(facts, as_of, scale=scale, with_derived=True)
        colors = work.select(_color_name(RANK).alias("color"), _color_name(BASE).alias("base_color"))
        judged = facts.with_columns(colors.get_column("color"), colors.get_column("base_color"))
        if reasons_where is None:
            return judged.with_columns(self._reasons(work, rules, day))
        wanted = reasons_where(judged)
        if not wanted.any():
            return judged.with_columns(pl.lit(None, dtype=pl.String).alias("reasons"))
        reasons = self._reasons(work.with_columns(pl.when(wanted).then(pl.col(RANK)).otherwise(0).alias(RANK)),
                                rules, day)
        return judged.with_columns(pl.when(wanted).then(reasons).alias("reasons"))

    def base_ranks(self, facts: pl.DataFrame, as_of: date, *, ytd_scale: Fraction | None = None) -> pl.Series:
        """The base colour rank (0 green, 1 yellow, 2 red) of each row as of D, as UInt8
        (``ytd_scale`` as in ``evaluate``)."""
        scale = Fraction(1) if ytd_scale is None else Fraction(ytd_scale)
        work, _, _ = self._ranked(facts, as_of, scale=scale, with_derived=False)
        return work.get_column(BASE).alias("base_rank")

    def evaluate_with_previous(self, current: pl.DataFrame, previous: pl.DataFrame, as_of: date) -> pl.DataFrame:
        """``evaluate`` with ``prev_base`` computed from ``previous`` (each project's row on or
        before the end of the month before D, same row order; null ``as_of``: none) as of that
        month's end: the equivalent of ``pipeline.rules.evaluate_many``."""
        if current.height != previous.height:
            raise ValueError(f"本期与上月末事实表行数不同（{current.height} 与 {previous.height}）")
        month_end = previous_month_end(as_of)
        check_not_after(current, as_of, "的报告期 {as_of} 晚于评价日期 {day}")
        check_not_after(previous, month_end, "的上月末行报告期 {as_of} 晚于 {day}")
        prev = self.base_ranks(previous, month_end).alias(PREV_BASE)
        return self.evaluate(current.with_columns(prev), as_of)

    # --- the steps ---------------------------------------------------------------------------------

    def _ranked(
        self, facts: pl.DataFrame, as_of: date, *, scale: Fraction, with_derived: bool
    ) -> tuple[pl.DataFrame, list[CompiledRule], Day]:
        """The working frame with each applying rule's rank column, its metric's value column,
        ``BASE`` and ``RANK``."""
        work = prepare(facts, as_of, with_previous=with_derived)
        active = [r for r in self.rules if r.rule.when.holds(as_of.month) and (with_derived or not r.metric.is_derived)]
        base = [r for r in active if not r.metric.is_derived]
        derived = [r for r in active if r.metric.is_derived]
        money = MoneyBounds()
        if any(r.metric.name in PACE_METRICS for r in base):
            money = MoneyBounds.of(work)
            if max(money.ytd, money.plan) < 2**62:  # narrower integers are faster
                work = work.with_columns(pl.col(YTD_CENTS).cast(pl.Int64), pl.col(PLAN_CENTS).cast(pl.Int64))
        day = Day(at=AsOf.of(as_of), scale=scale, money=money)
        has_row = pl.col("as_of").is_not_null()
        frame = work.lazy().with_columns(
            has_row.alias(HAS_ROW), (has_row & pl.col("actual_completion").is_null()).alias(OPEN),
            *_metric_values(base, day),
        )
        if base:
            frame = frame.with_columns([r.rank(day) for r in base])
        frame = frame.with_columns(_worst([r.column for r in base]).alias(BASE))
        if derived:
            frame = frame.with_columns(_metric_values(derived, day)).with_columns([r.rank(day) for r in derived])
        frame = frame.with_columns(_worst([BASE, *(r.column for r in derived)]).alias(RANK))
        return frame.collect(), active, day

    def _reasons(self, work: pl.DataFrame, rules: list[CompiledRule], day: Day) -> pl.Series:
        """The reasons' JSON array text per row, "[]" where none fires."""
        count = len(self.rules)
        if not rules:  # none applies on D
            return assemble(work, work.clear(), [], RANK)
        keep = dict.fromkeys(c for r in rules for c in (*r.metric.measure.reads, r.column))
        keep.update(dict.fromkeys(r.value_column for r in rules if r.value(day) is not None))
        keys = [r.key(count) for r in rules]
        flagged = work.lazy().filter(pl.col(RANK) > 0).select(
            *keep, pl.min_horizontal(keys).alias(FIRST_KEY), pl.max_horizontal(keys).alias(LAST_KEY),
        ).collect()
        if flagged.height == 0:
            return assemble(work, flagged, [], RANK)
        if any(r.metric.name in PACE_METRICS for r in rules):
            day = Day(at=day.at, scale=day.scale, money=MoneyBounds.of(flagged))  # bounds of these rows only
        texts = pl.collect_all([r.reasons(flagged.lazy().filter(pl.col(r.column) > 0), day, count) for r in rules])
        fired = [(r.column, tuple(b.color.rank for b in r.rule.bands), t.to_series()) for r, t in zip(rules, texts)]
        return assemble(work, flagged, fired, RANK)


def _metric_values(rules: list[CompiledRule], day: Day) -> list[pl.Expr]:
    found: dict[str, pl.Expr] = {}
    for rule in rules:
        value = rule.metric.measure.value(day)
        if value is not None:
            found[rule.value_column] = value.alias(rule.value_column)
    return list(found.values())


def _worst(columns: list[str]) -> pl.Expr:
    if not columns:
        return pl.lit(0, dtype=pl.UInt8)
    return pl.max_horizontal([pl.col(c) for c in columns]).cast(pl.UInt8)


def _color_name(rank: str) -> pl.Expr:
    return pl.lit(pl.Series(COLOR_NAMES, dtype=pl.String)).gather(pl.col(rank))


@lru_cache(maxsize=32)
def compile_scheme(scheme: Scheme) -> CompiledScheme:
    """The scheme compiled once (cached per scheme)."""
    return CompiledScheme(scheme)


__all__ = ["CompiledScheme", "compile_scheme"]
