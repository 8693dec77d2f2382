"""Re-flag projects in chunks, set-based: read a chunk's facts in one pass, evaluate them with the
columnar engine, write only the flags that changed (and a history row per change of colour).

The reserve is cut into chunks of consecutive project ids (``PIPELINE_REFLAG_CHUNK_SIZE``, 20,000
by default): the unit of parallel work, one task per chunk. The re-flag lock is finer and fixed:
on PostgreSQL a transaction that writes flags first takes ``pg_advisory_xact_lock(LOCK_CLASS, n)``
for every span of ``LOCK_SPAN`` ids it touches, in order, and only then reads the stored flags.
Two re-flags of the same project therefore run one after the other, and the second finds the
first's flags: a change is never recorded twice, nor a red episode opened twice. SQLite
serialises writers by itself.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

import polars as pl
from sqlalchemy import text
from sqlalchemy.orm import Session

from pipeline import bulk
from pipeline.clock import Clock
from pipeline.models import MonthClose
from pipeline.rules import Scheme, previous_month_end
from pipeline.rules.columnar import CompiledScheme, compile_scheme
from pipeline.facts import FACT_FIELDS
from pipeline.snapshot import FRAME_DTYPES, Scope, newest_on_or_before

LOCK_SPAN = 1_000  # ids per re-flag lock: fixed, so every process locks the same spans
LOCK_CLASS = 4217
RANKS = {"green": 0, "yellow": 1, "red": 2}


@dataclass(frozen=True)
class ReflagOutcome:
    as_of: date
    evaluated: int = 0
    changed: int = 0  # flag rows written (inputs or colours changed)
    recoloured: int = 0  # history rows written (computed or effective colour changed)
    by_color: dict[str, int] = field(default_factory=dict)
    turned_red: tuple[int, ...] = ()  # project ids whose effective flag became red

    def __add__(self, other: ReflagOutcome) -> ReflagOutcome:
        colors = Counter(self.by_color)
        colors.update(other.by_color)
        return ReflagOutcome(
            self.as_of, self.evaluated + other.evaluated, self.changed + other.changed,
            self.recoloured + other.recoloured, dict(colors), self.turned_red + other.turned_red,
        )


# --- locks and chunks ----------------------------------------------------------------------------


def _lock_spans(session: Session, spans: Iterable[int]) -> None:
    ordered = sorted(set(spans))
    if ordered and bulk.is_postgres(session):
        session.execute(text("SELECT pg_advisory_xact_lock(:cls, n) FROM unnest(CAST(:spans AS integer[])) AS n "
                             "ORDER BY n"), {"cls": LOCK_CLASS, "spans": ordered})


def _span(project_id: int | pl.Series) -> int | pl.Series:
    """The lock span of an id (or of each id): ids count from 1, as chunks do, so a chunk of a
    multiple of ``LOCK_SPAN`` ids shares no span with its neighbours (they may run at the same time)."""
    return (project_id - 1) // LOCK_SPAN


def lock_ids(session: Session, ids: Sequence[int] | pl.Series) -> None:
    """Take the re-flag lock of the given projects (PostgreSQL; held to commit)."""
    series = ids if isinstance(ids, pl.Series) else pl.Series(list(ids), dtype=pl.Int64)
    _lock_spans(session, _span(series).unique().to_list())


def chunk_bounds(chunk: int, size: int) -> tuple[int, int]:
    """Chunk ``n`` holds ids ``[n·size + 1, (n+1)·size + 1)``: ids count from 1, so a reserve of
    exactly ``size`` projects is one chunk, not a full one and a chunk of one."""
    return chunk * size + 1, (chunk + 1) * size + 1


def lock_chunk(session: Session, chunk: int, size: int) -> None:
    """Take the re-flag lock of a whole chunk of the reserve."""
    _lock_spans(session, chunk_spans(chunk, size))


def chunk_spans(chunk: int, size: int) -> range:
    """The lock spans of a chunk's ids."""
    lo, hi = chunk_bounds(chunk, size)
    return range(_span(lo), _span(hi - 1) + 1)


def reserve_chunks(session: Session, size: int) -> list[int]:
    """The chunks (of ``size`` consecutive ids) that hold projects, in order."""
    low, high = session.execute(text("SELECT MIN(id), MAX(id) FROM projects")).one()
    return [] if low is None else list(range((low - 1) // size, (high - 1) // size + 1))


def chunk_scope(chunk: int, size: int) -> Scope:
    return Scope.range(*chunk_bounds(chunk, size))


def reserve_scopes(session: Session, size: int) -> list[Scope]:
    """The whole reserve as chunks of ``size`` consecutive ids, in order."""
    return [chunk_scope(chunk, size) for chunk in reserve_chunks(session, size)]


# --- evaluation ----------------------------------------------------------------------------------


def month_closed(session: Session, month_end: date, scheme: Scheme) -> bool:
    """Whether the month flags of ``month_end`` are complete for the whole reserve under ``scheme``."""
    row = session.get(MonthClose, month_end)
    return row is not None and (row.scheme, row.scheme_version) == (scheme.name, scheme.version)


def previous_bases(session: Session, scope: Scope, month_end: date, *, scheme: Scheme,
                   compiled: CompiledScheme, ids: pl.Series, closed: bool | None = None) -> pl.DataFrame:
    """Each project's base colour rank at ``month_end`` (``prev_base``): from the month flags when
    that month is closed (``closed``: known to be, for this scope, by the caller), else evaluated
    from the reports on or before it."""
    if closed or (closed is None and month_closed(session, month_end, scheme)):
        return bulk.read_frame(
            session,
            f"SELECT p.id, mf.base_color FROM projects p JOIN month_flags mf ON mf.project_id = p.id "
            f"AND mf.month_end = :month_end{scope.also('mf.project_id')} WHERE {scope.where()}",
            {"month_end": month_end, **scope.params}, {"project_id": pl.Int64, "base_color": pl.Utf8},
        ).select("project_id", pl.col("base_color").replace_strict(RANKS, return_dtype=pl.UInt8).alias("prev_base"))
    earlier = newest_on_or_before(session, ids, month_end)
    ranks = compiled.base_ranks(earlier.with_columns(pl.lit(0, dtype=pl.UInt8).alias("prev_base")), month_end)
    return pl.DataFrame({"project_id": earlier["project_id"], "prev_base": ranks})


_STORED = {
    "old_computed": pl.Utf8, "old_effective": pl.Utf8, "old_override_id": pl.Int64, "old_update_id": pl.Int64,
    "old_previous_base": pl.Utf8, "old_as_of": pl.Date, "old_scheme": pl.Utf8, "old_version": pl.Int64,
    "override_id": pl.Int64, "override_color": pl.Utf8,
}
_FACTS = ", ".join(f"s.{f}" for f in FACT_FIELDS)
_STORED_SQL = """, f.computed_color, f.effective_color, f.override_id, f.update_id, f.previous_base, f.as_of,
                   f.scheme, f.scheme_version, o.id, o.color"""
_STORED_JOINS = """
            LEFT JOIN project_flags f ON f.project_id = p.id{flags_scope}
            LEFT JOIN (SELECT fo.project_id, fo.id, fo.color FROM flag_overrides fo
                       JOIN (SELECT MAX(id) AS id FROM flag_overrides
                             WHERE revoked_at IS NULL AND expires_on >= :as_of GROUP BY project_id) newest
                       ON newest.id = fo.id) o ON o.project_id = p.id"""


def read_scope(session: Session, scope: Scope, as_of: date, *, stored: bool) -> pl.DataFrame:
    """One pass over the scope: each project's current report, its base colour at the end of the
    previous month (``prev_base_color``, from the month flags) and, with ``stored``, its stored flag
    and the override in force on D."""
    schema = {**FRAME_DTYPES, "prev_base_color": pl.Utf8, **(_STORED if stored else {})}
    return bulk.read_frame(
        session,
        f"""SELECT p.id, p.code, p.nature, s.update_id, {_FACTS}, mf.base_color{_STORED_SQL if stored else ""}
            FROM projects p
            LEFT JOIN project_states s ON s.project_id = p.id{scope.also("s.project_id")}
            LEFT JOIN month_flags mf ON mf.project_id = p.id AND mf.month_end = :month_end{scope.also("mf.project_id")}
            {_STORED_JOINS.format(flags_scope=scope.also("f.project_id")) if stored else ""}
            WHERE {scope.where()}""",
        {"as_of": as_of, "month_end": previous_month_end(as_of), **scope.params}, schema,
    )


def evaluate_scope(session: Session, scope: Scope, as_of: date, *, scheme: Scheme,
                   compiled: CompiledScheme | None = None, previous_closed: bool | None = None,
                   stored: bool = False, frame: pl.DataFrame | None = None) -> pl.DataFrame:
    """The computed flag of every project of the scope as of D: the facts frame with ``color``,
    ``base_color``, ``reasons`` (JSON text) and ``prev_base``. With ``stored``: instead, each
    project's flag beside its stored one and whether it is to be written (``_to_write``), with
    ``reasons`` only where it is (null elsewhere): what ``write_flags`` takes.

    The current state serves when it is dated on or before D (the usual case); a project whose
    newest report is later than D is judged on its newest report on or before D instead. The base
    colour at the previous month's end comes from the month flags when that month is closed,
    else it is evaluated from the reports on or before it. ``frame``: the scope read already
    (``read_scope`` with the same ``stored``, in this transaction)."""
    compiled = compiled or compile_scheme(scheme)
    month_end = previous_month_end(as_of)
    if frame is None:
        frame = read_scope(session, scope, as_of, stored=stored)
    later = frame.filter(pl.col("as_of") > as_of)
    if later.height:
        earlier = newest_on_or_before(session, later["project_id"], as_of)
        frame = frame.update(earlier, on="project_id", include_nulls=True)
    if previous_closed or (previous_closed is None and month_closed(session, month_end, scheme)):
        frame = frame.with_columns(
            pl.col("prev_base_color").replace_strict(RANKS, default=0, return_dtype=pl.UInt8).alias("prev_base"))
    else:
        bases = previous_bases(session, scope, month_end, scheme=scheme, compiled=compiled, ids=frame["project_id"],
                               closed=False)
        frame = frame.join(bases, on="project_id", how="left").with_columns(pl.col("prev_base").fill_null(0))
    facts = frame.drop("prev_base_color")
    if not stored:
        return compiled.evaluate(facts, as_of)
    decided: list[pl.DataFrame] = []

    def to_write(judged: pl.DataFrame) -> pl.Series:
        decided.append(_to_write(judged, as_of=as_of, scheme=scheme))
        return decided[0]["changed"]

    reasons = compiled.evaluate(facts, as_of, reasons_where=to_write)["reasons"]
    return decided[0].with_columns(reasons)


# --- writing -------------------------------------------------------------------------------------

_WRITE_COLUMNS = (
    "project_id", "computed_color", "effective_color", "base_color", "reasons", "override_id", "update_id",
    "previous_base", "old_computed", "old_effective",
)


def _to_write(evaluated: pl.DataFrame, *, as_of: date, scheme: Scheme) -> pl.DataFrame:
    """The flag each project would have (``computed_color``, ``effective_color``, ``previous_base``)
    beside its stored one, and ``changed``: whether it is to be written (its inputs or colours
    changed, or a red or yellow flag's reasons are dated afresh)."""
    return (
        evaluated.select("project_id", "update_id", "prev_base", pl.col("color").alias("computed_color"),
                         "base_color", *(["reasons"] if "reasons" in evaluated.columns else []), *_STORED)
        .with_columns(
            pl.coalesce("override_color", "computed_color").alias("effective_color"),
            pl.col("prev_base").replace_strict({0: "green", 1: "yellow", 2: "red"}, default=None,
                                               return_dtype=pl.Utf8).alias("previous_base"),
        )
        .with_columns((
            pl.col("old_computed").is_null()
            | (pl.col("computed_color") != pl.col("old_computed"))
            | (pl.col("effective_color") != pl.col("old_effective"))
            | pl.col("override_id").ne_missing(pl.col("old_override_id"))
            | pl.col("update_id").ne_missing(pl.col("old_update_id"))
            | pl.col("previous_base").ne_missing(pl.col("old_previous_base"))
            | (pl.col("old_scheme") != scheme.name)
            | (pl.col("old_version") != scheme.version)
            | ((pl.col("computed_color") != "green") & (pl.col("old_as_of") != as_of))
        ).fill_null(False).alias("changed"))
    )


def write_flags(session: Session, evaluated: pl.DataFrame, *, as_of: date, scheme: Scheme, clock: Clock,
                cause: str) -> ReflagOutcome:
    """Store the flags whose inputs or colours changed, with a history row per change of colour.

    ``evaluated`` comes from ``evaluate_scope(..., stored=True)`` read under the re-flag lock of the
    scope's projects, so the stored flags it carries are the last ones written."""
    counts = evaluated["effective_color"].value_counts()
    by_color = dict(zip(counts["effective_color"].to_list(), counts["count"].to_list()))
    changed = evaluated.filter("changed").select(_WRITE_COLUMNS)
    if changed.height == 0:
        return ReflagOutcome(as_of=as_of, evaluated=evaluated.height, by_color=by_color)
    recoloured = changed.filter(
        pl.col("old_computed").is_null() | (pl.col("computed_color") != pl.col("old_computed"))
        | (pl.col("effective_color") != pl.col("old_effective"))
    )
    turned_red = recoloured.filter(
        (pl.col("effective_color") == "red") & (pl.col("old_effective").is_null() | (pl.col("old_effective") != "red"))
    )["project_id"]
    _write_changed(session, changed, as_of=as_of, scheme=scheme, now=clock.now(), cause=cause)
    return ReflagOutcome(
        as_of=as_of, evaluated=evaluated.height, changed=changed.height, recoloured=recoloured.height,
        by_color=by_color, turned_red=tuple(turned_red.sort().to_list()),
    )


def _write_changed(session: Session, changed: pl.DataFrame, *, as_of: date, scheme: Scheme, now: datetime,
                   cause: str) -> None:
    """From a staged chunk (on PostgreSQL the reasons parsed as JSON once, on the way in): update
    the stored flags, insert the new ones, then insert the history rows. Whether a flag is stored
    was read under the re-flag lock of its project, so no other re-flag can have changed that
    since, and a plain insert and update serve (cheaper than an upsert)."""
    bulk.temp_table(
        session, "tmp_flag_write",
        "project_id INTEGER, computed_color VARCHAR(10), effective_color VARCHAR(10), "
        f"base_color VARCHAR(10), reasons {'JSONB' if bulk.is_postgres(session) else 'TEXT'}, override_id INTEGER, "
        "update_id INTEGER, previous_base VARCHAR(10), old_computed VARCHAR(10), old_effective VARCHAR(10)",
    )
    bulk.write_frame(session, "tmp_flag_write", changed)
    params = {"scheme": scheme.name, "version": scheme.version, "as_of": as_of, "now": now, "cause": cause}
    stored = changed.filter(pl.col("old_computed").is_not_null())["project_id"]
    if stored.len():
        # The ids again, as a set the planner can size (it knows nothing of the staging table): a
        # batch's few flags are probed by key rather than found by scanning the reserve's.
        session.execute(bulk.sql(f"""
            UPDATE project_flags SET
                computed_color = t.computed_color, effective_color = t.effective_color, base_color = t.base_color,
                reasons = t.reasons, override_id = t.override_id, scheme = :scheme, scheme_version = :version,
                as_of = :as_of, update_id = t.update_id, previous_base = t.previous_base, evaluated_at = :now
            FROM tmp_flag_write t
            WHERE project_flags.project_id = t.project_id AND t.old_computed IS NOT NULL
              AND {bulk.among(session, "project_flags.project_id", "stored")}"""),
            {**params, "stored": bulk.id_set(session, stored)})
    if stored.len() < changed.height:
        session.execute(bulk.sql("""
            INSERT INTO project_flags (project_id, computed_color, effective_color, base_color, reasons, override_id,
                                       scheme, scheme_version, as_of, update_id, previous_base, evaluated_at)
            SELECT t.project_id, t.computed_color, t.effective_color, t.base_color, t.reasons, t.override_id,
                   :scheme, :version, :as_of, t.update_id, t.previous_base, :now
            FROM tmp_flag_write t WHERE t.old_computed IS NULL"""), params)
    session.execute(bulk.sql("""
        INSERT INTO flag_history (project_id, old_computed, new_computed, old_effective, new_effective, reasons,
                                  cause, scheme, scheme_version, as_of, changed_at)
        SELECT t.project_id, t.old_computed, t.computed_color, t.old_effective, t.effective_color, t.reasons,
               :cause, :scheme, :version, :as_of, :now
        FROM tmp_flag_write t
        WHERE t.old_computed IS NULL OR t.old_computed <> t.computed_color OR t.old_effective <> t.effective_color
        ORDER BY t.project_id"""), params)


# --- the entry points ----------------------------------------------------------------------------


def reflag_ids(session: Session, project_ids: Sequence[int] | pl.Series, *, as_of: date, scheme: Scheme,
               clock: Clock, cause: str = "update", compiled: CompiledScheme | None = None) -> ReflagOutcome:
    """Re-flag the given projects (after an update, an override), under their re-flag locks."""
    ids = project_ids if isinstance(project_ids, pl.Series) else pl.Series("id", list(project_ids), dtype=pl.Int64)
    if ids.len() == 0:
        return ReflagOutcome(as_of)
    lock_ids(session, ids)
    evaluated = evaluate_scope(session, Scope.of_ids(session, ids), as_of, scheme=scheme, compiled=compiled,
                               stored=True)
    return write_flags(session, evaluated, as_of=as_of, scheme=scheme, clock=clock, cause=cause)


__all__ = [
    "LOCK_SPAN", "ReflagOutcome", "chunk_scope", "evaluate_scope", "lock_chunk", "lock_ids", "read_scope",
    "reflag_ids", "reserve_chunks", "reserve_scopes", "write_flags",
]
