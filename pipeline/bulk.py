"""Bulk reads and writes between the database and polars frames, on the session's transaction.

PostgreSQL moves rows with COPY (CSV) through psycopg 3; SQLite, in process, with one cursor
``executemany`` or ``fetchall``. Either way one statement carries a whole chunk, and no statement's
parameter count grows with the data: a set of ids travels as one parameter (``id_set``), other
sets of rows through temporary tables.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from datetime import date
from typing import Any

import polars as pl
from sqlalchemy import DateTime, TextClause, bindparam, text
from sqlalchemy.orm import Session

Schema = Mapping[str, pl.DataType | type[pl.DataType]]
COPY_SLICE = 10_000  # rows rendered as CSV at a time when copying in: the text never holds a whole batch
PIECE_BYTES = 1 << 20  # CSV read out at a time before it is parsed (about 5,000 rows of a re-flag's read)


def sql(statement: str) -> TextClause:
    """A textual statement whose ``:now`` parameter is a timestamp stored exactly as the ORM stores
    one (SQLite keeps no time zone; the ORM's own rows must compare with ours)."""
    clause = text(statement)
    if ":now" in statement:
        clause = clause.bindparams(bindparam("now", type_=DateTime(timezone=True)))
    return clause


def is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _driver_connection(session: Session) -> Any:
    """The DBAPI connection under the session's current transaction (psycopg or sqlite3)."""
    return session.connection().connection.driver_connection


# --- reading -------------------------------------------------------------------------------------


def read_frame(session: Session, sql: str, params: Mapping[str, Any], schema: Schema) -> pl.DataFrame:
    """Run ``sql`` (named ``:param`` placeholders, its columns in ``schema``'s order) into a frame.

    Dates and money come back typed as ``schema`` says (pl.Date, pl.Decimal, pl.Boolean ...).
    On PostgreSQL a large result is parsed a piece at a time on a second thread while the rest of
    its rows are still coming (polars parses without the interpreter lock), so that reading costs
    little more than the COPY itself.
    """
    if not is_postgres(session):
        rows = session.execute(text(sql), dict(params)).fetchall()
        raw = pl.DataFrame([tuple(r) for r in rows], schema={n: _sqlite_type(t) for n, t in schema.items()},
                           orient="row")
        return _coerce(raw, schema)
    names = list(schema)
    read_schema = {n: _read_type(t) for n, t in schema.items()}
    booleans = [n for n, t in schema.items() if t == pl.Boolean]

    def parse(piece: io.BytesIO) -> pl.DataFrame:
        piece.seek(0)
        frame = _parse_csv(piece, names, read_schema)
        return frame.with_columns(pl.col(n) == "t" for n in booleans) if booleans else frame

    parsing: list[Future[pl.DataFrame]] = []
    with ExitStack() as stack:
        parser: ThreadPoolExecutor | None = None
        piece = io.BytesIO()
        cursor = stack.enter_context(_driver_connection(session).cursor())
        with cursor.copy(f"COPY ({_to_pyformat(sql)}) TO STDOUT WITH (FORMAT csv)", dict(params)) as copy:
            for block in copy:  # one row per block (one CopyData message per row), so pieces end on a row
                piece.write(block)
                if piece.tell() >= PIECE_BYTES:
                    parser = parser or stack.enter_context(ThreadPoolExecutor(1, thread_name_prefix="csv"))
                    parsing.append(parser.submit(parse, piece))
                    piece = io.BytesIO()
        last = [parse(piece)] if piece.tell() else []  # while the parser finishes the pieces before it
        frames = [f.result() for f in parsing] + last
    return pl.concat(frames) if frames else pl.DataFrame(schema=dict(schema))


def _parse_csv(source: io.BytesIO, names: list[str], schema: Mapping[str, Any]) -> pl.DataFrame:
    return pl.read_csv(source, has_header=False, new_columns=names, schema=dict(schema))


def _read_type(dtype: Any) -> Any:
    """How a CSV column is parsed before the final cast (PostgreSQL writes booleans as t/f)."""
    return pl.Utf8 if dtype == pl.Boolean else dtype


def _sqlite_type(dtype: Any) -> Any:
    if dtype == pl.Date or isinstance(dtype, pl.Decimal) or dtype == pl.Decimal or dtype == pl.Boolean:
        return pl.Object
    return dtype


def _coerce(raw: pl.DataFrame, schema: Schema) -> pl.DataFrame:
    """SQLite hands back dates as text, money as float or text, booleans as 0/1: type them."""
    exprs = []
    for name, dtype in schema.items():
        col = raw[name]
        if dtype == pl.Date:
            values = [None if v is None else (v if isinstance(v, date) else date.fromisoformat(str(v)[:10]))
                      for v in col.to_list()]
            exprs.append(pl.Series(name, values, dtype=pl.Date))
        elif isinstance(dtype, pl.Decimal) or dtype == pl.Decimal:
            values = [None if v is None else (f"{v:.2f}" if isinstance(v, float) else str(v)) for v in col.to_list()]
            exprs.append(pl.Series(name, values, dtype=pl.Utf8).cast(dtype))
        elif dtype == pl.Boolean:
            exprs.append(pl.Series(name, [None if v is None else bool(v) for v in col.to_list()], dtype=pl.Boolean))
        else:
            exprs.append(col)
    return pl.DataFrame(exprs)


def _to_pyformat(sql: str) -> str:
    """``:name`` placeholders → psycopg's ``%(name)s`` (and a literal % doubled)."""
    out: list[str] = []
    i = 0
    while i < len(sql):
        ch = sql[i]
        if ch == "%":
            out.append("%%")
        elif ch == ":" and i + 1 < len(sql) and (sql[i + 1].isalpha() or sql[i + 1] == "_") and (
            i == 0 or sql[i - 1] != ":"
        ):
            j = i + 1
            while j < len(sql) and (sql[j].isalnum() or sql[j] == "_"):
                j += 1
            out.append(f"%({sql[i + 1:j]})s")
            i = j
            continue
        elif ch == ":" and i + 1 < len(sql) and sql[i + 1] == ":":
            out.append("::")
            i += 2
            continue
        else:
            out.append(ch)
        i += 1
    return "".join(out)


# --- writing -------------------------------------------------------------------------------------


def write_frame(session: Session, table: str, frame: pl.DataFrame, columns: Sequence[str] | None = None) -> int:
    """Insert every row of ``frame`` into ``table`` (columns named as the frame's, or ``columns``)."""
    cols = list(columns or frame.columns)
    if frame.height == 0:
        return 0
    data = frame.select(cols)
    if is_postgres(session):
        with _driver_connection(session).cursor() as cur:
            with cur.copy(f"COPY {table} ({', '.join(cols)}) FROM STDIN WITH (FORMAT csv)") as copy:
                for offset in range(0, data.height, COPY_SLICE):  # the CSV text of a slice at a time
                    copy.write(data.slice(offset, COPY_SLICE).write_csv(
                        include_header=False, datetime_format="%Y-%m-%dT%H:%M:%S%.f%z"))
        return data.height
    placeholders = ", ".join("?" for _ in cols)
    rows = _sqlite_rows(data)
    cur = _driver_connection(session).cursor()
    try:
        cur.executemany(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({placeholders})", rows)
    finally:
        cur.close()
    return data.height


def _sqlite_rows(frame: pl.DataFrame) -> list[tuple[Any, ...]]:
    """Rows as sqlite3 takes them: dates as ISO text, money as text, booleans as 0/1."""
    exprs = []
    for name, dtype in frame.schema.items():
        if dtype == pl.Date or dtype == pl.Datetime or isinstance(dtype, pl.Datetime):
            exprs.append(pl.col(name).cast(pl.Utf8))
        elif isinstance(dtype, pl.Decimal):
            exprs.append(pl.col(name).cast(pl.Float64))
        elif dtype == pl.Boolean:
            exprs.append(pl.col(name).cast(pl.Int8))
        else:
            exprs.append(pl.col(name))
    return frame.select(exprs).rows()


def compress_quickly(session: Session) -> None:
    """Compress this transaction's long values with lz4 rather than pglz, where the server has it
    (PostgreSQL 14 and later, built with lz4; a no-op elsewhere and on SQLite). A value is
    compressed once, as it is copied into a staging table, and moves on as it is: the outbox's
    rendered messages (a few KB each) took a quarter less time to stage (20,000 projects' red
    notices, 15 MB of text: 215 ms copying them in with pglz, 165 ms with lz4)."""
    if is_postgres(session):
        session.execute(text("SELECT set_config('default_toast_compression', 'lz4', true) FROM pg_settings "
                             "WHERE name = 'default_toast_compression' AND 'lz4' = ANY(enumvals)"))


_TEMP_TABLES: dict[tuple[str, str], str] = {}  # (dialect, name) → columns, as first made in this process


def temp_table(session: Session, name: str, columns_sql: str) -> None:
    """An empty temporary table for this transaction's use. It is kept for the connection: made at
    its first use and emptied at each (creating and dropping one in every transaction took 1-2 ms
    and wrote to the system catalogues at every batch). One name, one definition."""
    if _TEMP_TABLES.setdefault((session.get_bind().dialect.name, name), columns_sql) != columns_sql:
        raise ValueError(f"temporary table {name} is defined twice, differently")
    session.execute(text(f"CREATE TEMP TABLE IF NOT EXISTS {name} ({columns_sql})"))
    session.execute(text(f"TRUNCATE {name}" if is_postgres(session) else f"DELETE FROM {name}"))


def id_set(session: Session, ids: Sequence[int] | pl.Series) -> list[int] | str:
    """A set of ids as one statement parameter, whatever their number: on PostgreSQL an array
    (bound as a value, so the planner sees its size and tests it by hashing), on SQLite the text of
    a JSON array. Statements read it with ``among`` or ``id_rows``."""
    series = ids if isinstance(ids, pl.Series) else pl.Series(list(ids), dtype=pl.Int64)
    unique = series.cast(pl.Int64).unique().sort()
    if is_postgres(session):
        return unique.to_list()
    return "[" + (unique.cast(pl.Utf8).str.join(",").item() if unique.len() else "") + "]"


def among(session: Session, column: str, param: str) -> str:
    """SQL: ``column`` is one of the ids of the statement parameter ``param`` (an ``id_set``). On
    PostgreSQL the planner sees the array's size: a few ids probe the column's index, many are
    tested by hashing."""
    if is_postgres(session):
        return f"{column} = ANY(CAST(:{param} AS integer[]))"
    return f"{column} IN (SELECT value FROM json_each(:{param}))"


def among_ids(session: Session, column: str, ids: Sequence[int] | pl.Series) -> TextClause:
    """``among`` as a clause for a query built with SQLAlchemy, the set bound to it (as ``:ids``)."""
    return text(among(session, column, "ids")).bindparams(ids=id_set(session, ids))


def id_rows(session: Session, param: str, alias: str) -> str:
    """SQL for a FROM clause: the ids of the statement parameter ``param`` (an ``id_set``) as the
    rows of ``alias(id)``."""
    if is_postgres(session):
        return f"unnest(CAST(:{param} AS integer[])) AS {alias}(id)"
    return f"(SELECT value AS id FROM json_each(:{param})) AS {alias}"


def among_table(session: Session, column: str, table: str) -> str:
    """SQL: ``column`` is one of the ids in the temporary table ``table`` (one that carries more
    than ids, such as each project's first month). On PostgreSQL the ids are read once into an
    array that probes the column's index: the planner knows nothing of a temporary table (it is
    never analysed) and would otherwise often scan or merge the whole reserve for a handful."""
    if is_postgres(session):
        return f"{column} = ANY(ARRAY(SELECT id FROM {table}))"
    return f"{column} IN (SELECT id FROM {table})"
