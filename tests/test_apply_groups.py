"""A delivery applies its batch together with the batches queued beside it: one merge and one
re-judging for many (an API client's batches of a thousand), each batch with its own counts, the
reserve as if they had been applied one by one; never a batch tried before, never an office's
batch with a unit's; a batch another delivery holds is left to that delivery."""

from __future__ import annotations

import threading
from datetime import date
from typing import Any

import pytest
from sqlalchemy import select, text, update

from pipeline.db import session_scope
from pipeline.ingest.delivery import companions
from pipeline.ingest.sweep import APPLY_LOCK_CLASS, mark_enqueued
from pipeline.models import ImportBatch, Unit
from pipeline.runtime import Runtime
from tests.factories import row
from tests.test_data_path import backlog, record, runtimes, state  # noqa: F401  (the runtimes fixture)
from tests.test_ingest_db import state_of

OCT, NOV = date(2024, 10, 31), date(2024, 11, 30)


def queued(rt: Runtime, *batches: list[Any], **extra: Any) -> list[int]:
    """Record each list of rows as a batch whose task has been sent."""
    ids = [record(rt, rows, **extra) for rows in batches]
    with session_scope(rt.session_factory) as s:
        mark_enqueued(s, ids, clock=rt.clock)
    return ids


def batches(rt: Runtime) -> dict[int, tuple[str, int, int, int]]:
    with session_scope(rt.session_factory) as s:
        return {b.id: (b.status, b.attempts, b.applied_rows, b.superseded_rows)
                for b in s.scalars(select(ImportBatch).order_by(ImportBatch.id))}


def test_a_delivery_applies_the_batches_queued_beside_its_own(any_runtime: Runtime) -> None:
    rt = any_runtime
    ids = queued(rt, [row(1, as_of=OCT), row(2, as_of=OCT)], [row(1, as_of=NOV)], [row(3, as_of=NOV)])
    result = rt.apply_delivered(ids[1])
    assert result is not None and result.batch_ids == (ids[1], ids[0], ids[2])
    assert (result.applied, result.superseded, len(result.touched_project_ids)) == (4, 1, 3)
    # Each batch keeps its own counts: project 1's October report lost to November's.
    assert batches(rt) == {ids[0]: ("applied", 1, 2, 1), ids[1]: ("applied", 1, 1, 0), ids[2]: ("applied", 1, 1, 0)}
    assert state_of(rt, 1).as_of == NOV and state_of(rt, 2).as_of == OCT
    assert [rt.apply_delivered(b) for b in ids] == [None, None, None]  # their own tasks: nothing left, nothing counted
    assert [v[1] for v in batches(rt).values()] == [1, 1, 1]


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_batches_applied_together_end_as_applied_one_by_one(backend: str, runtimes) -> None:
    months = backlog()
    one_by_one = runtimes(backend)
    for rows in months:
        one_by_one.apply_delivered(record(one_by_one, rows))
    together = runtimes(backend)
    ids = queued(together, *months)
    assert together.apply_delivered(ids[2]).batch_ids == (ids[2], *ids[:2], *ids[3:])
    assert state(together) == state(one_by_one)


def test_a_batch_tried_before_is_applied_alone_and_never_joins_another(any_runtime: Runtime) -> None:
    """A delivery that did not finish (its worker killed) leaves its count: each of its batches then
    goes alone, so a batch that kills its worker fails alone."""
    rt = any_runtime
    tried, other, fresh = queued(rt, [row(1)], [row(2)], [row(3)])
    with session_scope(rt.session_factory) as s:
        s.execute(update(ImportBatch).where(ImportBatch.id.in_([tried, other])).values(attempts=1))
    assert rt.apply_delivered(tried).batch_ids == (tried,)
    assert rt.apply_delivered(fresh).batch_ids == (fresh,)
    assert batches(rt)[other][0] == "received"


def test_an_office_batch_and_a_unit_batch_are_not_applied_together(any_runtime: Runtime) -> None:
    """A unit's rows are checked against the reserve's master data, which an office batch changes."""
    rt = any_runtime
    rt.apply_delivered(record(rt, [row(1, as_of=OCT), row(2, as_of=OCT)]))
    with session_scope(rt.session_factory) as s:
        unit_id = s.scalar(select(Unit.id).where(Unit.name == "荆州区人民政府"))
    office = queued(rt, [row(1, as_of=NOV)])
    units = queued(rt, [row(1, as_of=NOV, ytd_completed=4000)], [row(2, as_of=NOV)], unit_id=unit_id)
    assert rt.apply_delivered(units[1]).batch_ids == (units[1], units[0])
    assert rt.apply_delivered(office[0]).batch_ids == (office[0],)


def test_a_group_stays_within_its_bounds(any_runtime: Runtime) -> None:
    rt = any_runtime
    ids = queued(rt, [row(1), row(2)], [row(3), row(4)], [row(5)], [row(6), row(7)])
    with session_scope(rt.session_factory) as s:
        first = s.get(ImportBatch, ids[0])
        assert companions(s, first, rows=5) == ids[1:3]  # 2 + 2 + 1 rows; the next two would pass 5
        assert companions(s, first, rows=100, batches=3) == ids[1:3]
        assert companions(s, first) == ids[1:]


def test_a_batch_never_queued_is_left_to_its_own_hand_over(any_runtime: Runtime) -> None:
    """Only batches whose tasks are out are taken on (one recorded but not handed over yet, or whose
    task never left, is the sweeper's or its own caller's)."""
    rt = any_runtime
    waiting = record(rt, [row(1)])
    (sent,) = queued(rt, [row(2)])
    assert rt.apply_delivered(sent).batch_ids == (sent,)
    assert batches(rt)[waiting][0] == "received"


def test_a_delivery_leaves_a_batch_another_delivery_holds(runtimes) -> None:
    """Waiting for it would stop this worker behind the other one; the holder applies it (or, if it
    dies, its redelivery or the sweeper brings the batch back)."""
    rt = runtimes("postgres")
    batch = record(rt, [row(1)])
    holder = rt.engine.connect()
    holder.execute(text("SELECT pg_advisory_lock(:c, :b)"), {"c": APPLY_LOCK_CLASS, "b": batch})
    holder.commit()
    results: list[Any] = []
    delivery = threading.Thread(target=lambda: results.append(rt.apply_delivered(batch)))
    try:
        delivery.start()
        delivery.join(timeout=120)
        assert not delivery.is_alive() and results == [None]
        assert batches(rt)[batch][:2] == ("received", 0)  # nothing counted
    finally:
        holder.execute(text("SELECT pg_advisory_unlock(:c, :b)"), {"c": APPLY_LOCK_CLASS, "b": batch})
        holder.commit()
        holder.close()
        delivery.join(timeout=120)
    assert rt.apply_delivered(batch).batch_ids == (batch,)
