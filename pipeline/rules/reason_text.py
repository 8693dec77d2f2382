"""The ``reasons`` column: each project's reasons as JSON array text, built only where rules fire.

A rule's reason text is built over the rows where it fires and already carries its place in the
row's array: "[" before it when it is the row's first reason, "]" after it when it is the last,
else ",". A project's array is then its reasons' texts one after the other (worst colour first,
then scheme order); with a single reason, as most flagged projects have, it is that text as is.
Strings are copied once into the reason texts; everything after is gathering.

The text is exactly ``json.dumps([reason.to_json(), ...], ensure_ascii=False, separators=(",", ":"))``.
"""

from __future__ import annotations

import json
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import polars as pl

from pipeline.rules.exact import json_text, show
from pipeline.rules.measures import Shown

COLOR_NAMES: tuple[str, ...] = ("green", "yellow", "red")  # by rank
FIRST_KEY = "__first_key"  # the smallest reason key of the row: its first reason
LAST_KEY = "__last_key"
EMPTY = "[]"

Part = str | pl.Expr


def concat(parts: Sequence[Part]) -> pl.Expr:
    """One string expression from literal text and expressions (adjacent literals merged)."""
    merged: list[Part] = []
    for part in parts:
        if isinstance(part, str) and merged and isinstance(merged[-1], str):
            merged[-1] += part
        elif not (isinstance(part, str) and part == ""):
            merged.append(part)
    exprs = [pl.lit(p) if isinstance(p, str) else p for p in merged] or [pl.lit("")]
    return exprs[0] if len(exprs) == 1 else pl.concat_str(exprs)


@dataclass(frozen=True)
class Message:
    """A rule's message template: literal text (JSON-escaped) and placeholders."""

    template: str
    pieces: tuple[tuple[str, str | None], ...]  # (literal, placeholder or None)
    by_python: bool  # a conversion or format spec: Python writes the message, row by row

    @classmethod
    def of(cls, template: str) -> Message:
        pieces: list[tuple[str, str | None]] = []
        by_python = False
        for literal, field, spec, conversion in string.Formatter().parse(template):
            by_python = by_python or bool(field is not None and (spec or conversion))
            pieces.append((json_text(literal)[1:-1] if literal else "", field or None))
        return cls(template, tuple(pieces), by_python)

    def parts(self, shown: dict[str, Shown], values: Callable[[], pl.Expr]) -> list[Part]:
        if self.by_python:
            return [self._python(values())]
        parts: list[Part] = []
        for literal, field in self.pieces:
            parts.append(literal)
            if field is not None:
                parts.append(shown[field][1])
        return parts

    def _python(self, values_text: pl.Expr) -> pl.Expr:
        template = self.template
        fields = tuple(dict.fromkeys(f for _, f, _, _ in string.Formatter().parse(template) if f))

        def write(text: str) -> str:
            values = json.loads("{" + text + "}")
            return json_text(template.format_map({k: show(values[k]) for k in fields}))[1:-1]

        return values_text.map_elements(write, return_dtype=pl.String)


def reason_key(rank: pl.Expr, index: int, rules: int) -> pl.Expr:
    """Where a fired rule's reason goes in its row: worst colour first, then scheme order."""
    return pl.when(rank > 0).then((pl.lit(2, pl.UInt16) - rank.cast(pl.UInt16)) * rules + index)


def reason_text(
    *, code: str, rank: str, key: pl.Expr, message: Message, keys: Sequence[str], shown: dict[str, Shown]
) -> pl.Expr:
    """One reason's JSON text over the rows where its rule fires (``rank`` its rank column), with
    "[" before it when ``key`` is its row's first and "]" (else ",") after it."""
    heads = [("[" if first else "") + '{"code":' + json_text(code) + ',"color":"' + color + '","message":"'
             for color in COLOR_NAMES[1:] for first in (False, True)]
    head = pl.lit(pl.Series(heads, dtype=pl.String)).gather(
        (pl.col(rank).cast(pl.UInt32) - 1) * 2 + (key == pl.col(FIRST_KEY)).cast(pl.UInt32)
    )
    tail = pl.lit(pl.Series(["},", "}]"], dtype=pl.String)).gather((key == pl.col(LAST_KEY)).cast(pl.UInt32))
    values: list[Part] = []
    for i, name in enumerate(keys):
        values += [("" if i == 0 else ",") + json_text(name) + ":", shown[name][0]]
    return concat([head, *message.parts(shown, lambda: concat(values)), '","values":{', *values, "}", tail])


def assemble(
    work: pl.DataFrame, flagged: pl.DataFrame, fired: Sequence[tuple[str, tuple[int, ...], pl.Series]], rank: str,
) -> pl.Series:
    """The ``reasons`` column of ``work``.

    ``flagged`` holds the rows of ``work`` whose ``rank`` > 0, in order, with each rule's rank
    column; ``fired`` gives per rule, in scheme order, that column, the ranks the rule can give
    and its reason texts over its firing rows (in order).
    """
    if flagged.height == 0:
        return pl.select(pl.repeat(EMPTY, work.height, dtype=pl.String)).to_series().alias("reasons")
    texts = pl.concat([t for _, _, t in fired]).rechunk()  # one chunk: gathers from it are fast
    at: list[pl.Expr] = []  # per rule: the row's reason in ``texts``
    offset = 0
    for column, _, rule_texts in fired:
        fires = pl.col(column) > 0
        at.append(pl.when(fires).then(fires.cast(pl.UInt32).cum_sum() - 1 + offset).alias(f"__at_{column}"))
        offset += rule_texts.len()
    count = pl.sum_horizontal([(pl.col(column) > 0).cast(pl.UInt8) for column, _, _ in fired])
    located = flagged.lazy().select(*(pl.col(c) for c, _, _ in fired), count.alias("__count"), *at).collect()
    several = pl.col("__count") > 1
    in_order = [  # a row's reasons worst colour first, then in scheme order
        pl.when(pl.col(column) == colour).then(pl.lit(texts).gather(pl.col(f"__at_{column}")))
        for colour in (2, 1) for column, colours, _ in fired if colour in colours
    ]
    joined = located.lazy().filter(several).select(pl.concat_str(in_order, separator="", ignore_nulls=True)).collect()
    every = pl.concat([texts, joined.to_series(), pl.Series([EMPTY], dtype=pl.String)]).rechunk()
    index = located.select(  # per flagged row: its one reason's text, or its reasons joined
        pl.when(several).then(several.cast(pl.UInt32).cum_sum() - 1 + texts.len())
        .otherwise(pl.coalesce([pl.col(f"__at_{c}") for c, _, _ in fired]))
    ).to_series()
    is_flagged = pl.col(rank) > 0
    position = pl.when(is_flagged).then(is_flagged.cast(pl.UInt32).cum_sum() - 1)  # in ``flagged``; null: not
    return work.select(
        pl.lit(every).gather(pl.lit(index).gather(position).fill_null(every.len() - 1)).alias("reasons")
    ).to_series()


__all__ = ["FIRST_KEY", "LAST_KEY", "Message", "assemble", "reason_key", "reason_text"]
