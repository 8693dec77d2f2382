"""The validated updates of one arrival as ONE polars frame: its columns, its keys, and UpdateRow views.

``UPDATE_DTYPES`` is the contract between parsing and recording: a row number, the source's id,
the idempotency key, then the template's fields in template order (one home for the fields:
``TEMPLATE_FIELDS``). ``idempotency_keys`` computes, over the whole frame at once, exactly what
``keys.idempotency_key`` computes for one ``UpdateRow``, so keys already stored stay valid.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import date
from decimal import Decimal
from typing import Any

import polars as pl

from pipeline.ingest.keys import PAYLOAD_FIELDS
from pipeline.ingest.template import SOURCE_ID_ALIAS, TEMPLATE_FIELDS, FieldType, UpdateRow
from pipeline.ingest.values import canonical_money, money_text

MONEY = pl.Decimal(16, 2)  # the database's Numeric(16, 2)
_DTYPE_OF: dict[FieldType, pl.DataType] = {
    FieldType.TEXT: pl.Utf8(),
    FieldType.NATURE: pl.Utf8(),
    FieldType.NUMBER: MONEY,
    FieldType.DATE: pl.Date(),
    FieldType.YES_NO: pl.Boolean(),
    FieldType.LISTS: pl.List(pl.Utf8()),
}
ROW_NUMBER = "row_number"
KEY = "idempotency_key"

UPDATE_DTYPES: dict[str, pl.DataType] = {
    ROW_NUMBER: pl.Int64(),
    SOURCE_ID_ALIAS: pl.Utf8(),
    KEY: pl.Utf8(),
    **{f.alias: _DTYPE_OF[f.type] for f in TEMPLATE_FIELDS},
}
UPDATE_SCHEMA = pl.Schema(UPDATE_DTYPES)


def empty_updates() -> pl.DataFrame:
    return pl.DataFrame(schema=UPDATE_SCHEMA)


# ---------------------------------------------------------------- keys

def _payload_field(name: str) -> pl.Expr:
    """A payload field as ``keys.update_payload`` writes it: money and dates as text, the rest as they are."""
    dtype = UPDATE_DTYPES[name]
    if dtype == MONEY:
        return money_text(pl.col(name)).alias(name)
    if dtype == pl.Date:
        return pl.col(name).cast(pl.Utf8).alias(name)
    return pl.col(name)


def _canonical_json() -> pl.Expr:
    """``json.dumps(update_payload(row), ensure_ascii=False, sort_keys=True, separators=(",", ":"))`` per row.

    polars writes a struct as compact JSON in field order, escaping exactly as json.dumps does with
    ensure_ascii=False (the quote, the backslash and the C0 controls; nothing else).
    """
    return pl.struct([_payload_field(name) for name in sorted(PAYLOAD_FIELDS)]).struct.json_encode()


def _digests(texts: pl.Series) -> list[str]:
    """"sha256:<hex>" of each text's UTF-8 bytes."""
    sha256 = hashlib.sha256
    return ["sha256:" + sha256(data).hexdigest() for data in texts.cast(pl.Binary).to_list()]


_KEY_BATCH = 20_000  # rows whose canonical JSON is held at once


def idempotency_keys(frame: pl.DataFrame) -> pl.Series:
    """``keys.idempotency_key`` for every row: "src:<source id>", else "sha256:" of the canonical JSON."""
    hashed: list[str] = []
    for start in range(0, frame.height, _KEY_BATCH):
        hashed += _digests(frame.slice(start, _KEY_BATCH).select(_canonical_json()).to_series())
    digests = pl.Series(KEY, hashed, pl.Utf8)
    source = pl.col(SOURCE_ID_ALIAS)
    return frame.select(
        pl.when(source.is_not_null() & (source != "")).then(pl.concat_str([pl.lit("src:"), source]))
        .otherwise(pl.lit(digests)).alias(KEY)
    ).to_series()


def with_keys(frame: pl.DataFrame) -> pl.DataFrame:
    """The frame in ``UPDATE_DTYPES`` order with its idempotency keys filled in."""
    frame = frame.select([pl.col(name).cast(dtype) if name in frame.columns else pl.lit(None, dtype).alias(name)
                          for name, dtype in UPDATE_DTYPES.items()])
    return frame.with_columns(idempotency_keys(frame))


# ---------------------------------------------------------------- UpdateRow views


def rows_to_frame(rows: Iterable[UpdateRow]) -> pl.DataFrame:
    """UpdateRows (the demo, tests, benchmarks build them) as an update frame, keys included."""
    columns: dict[str, list[Any]] = {name: [] for name in UPDATE_DTYPES if name != KEY}
    for row in rows:
        for name, values in columns.items():
            value = getattr(row, name)
            values.append(list(value) if name == "lists" else value)
    data = {name: pl.Series(name, values, UPDATE_DTYPES[name], strict=False) for name, values in columns.items()}
    return with_keys(pl.DataFrame(data))


def _money(value: Decimal | None) -> Decimal | None:
    return None if value is None else canonical_money(value)


def frame_to_rows(frame: pl.DataFrame) -> list[UpdateRow]:
    """An update frame as UpdateRows (money in canonical form: 50000, 1234.5)."""
    money = {f.alias for f in TEMPLATE_FIELDS if f.type is FieldType.NUMBER}
    out: list[UpdateRow] = []
    for values in frame.iter_rows(named=True):
        fields: dict[str, Any] = {}
        for f in TEMPLATE_FIELDS:
            value = values[f.alias]
            if f.alias in money:
                value = _money(value)
            elif f.type is FieldType.LISTS:
                value = tuple(value or ())
            elif f.type is FieldType.YES_NO:
                value = bool(value)
            fields[f.alias] = value
        as_of: date = fields.pop("as_of")
        out.append(UpdateRow(as_of=as_of, source_id=values[SOURCE_ID_ALIAS], row_number=values[ROW_NUMBER], **fields))
    return out
