"""Load the demo reserve into the database through the ordinary ingest path (record → apply)."""

from __future__ import annotations

import hashlib

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pipeline.clock import Clock
from pipeline.demo.generate import generate_demo
from pipeline.ingest.record import record_batch
from pipeline.meta import REFERENCE_DATE, get_meta, set_meta
from pipeline.models import Leader, Project
from pipeline.reference import Reference

DEMO_SEED = "demo_seed"


class DemoRefused(RuntimeError):
    """The demo cannot be loaded into this database (it holds other data)."""


def seed_demo(session: Session, *, seed: int, reference: Reference, clock: Clock) -> list[int]:
    """Record the twelve monthly reports as batches; returns their ids (to be applied by the workers).

    Loading the same seed again records nothing new (each report is a batch with a fixed content
    hash); a database that already holds other projects is refused.
    """
    loaded = get_meta(session, DEMO_SEED)
    has_projects = (session.scalar(select(func.count()).select_from(Project)) or 0) > 0
    if loaded is not None and loaded != str(seed):
        raise DemoRefused(f"数据库中已载入种子为 {loaded} 的演示数据；如需其他种子，请使用新的数据库（PIPELINE_DATABASE_URL）")
    if loaded is None and has_projects:
        raise DemoRefused("数据库中已有项目数据，演示数据只能载入空数据库（可设置 PIPELINE_DATABASE_URL 指向新数据库）")
    reserve = generate_demo(seed=seed, reference=reference)
    existing = set(session.scalars(select(Leader.name)))
    for leader in reserve.leaders:
        if leader.name not in existing:
            session.add(Leader(name=leader.name, title=leader.title, email=leader.email))
    session.flush()
    batch_ids = []
    for report in reserve.reports:
        month = report[0].as_of
        digest = hashlib.sha256(f"demo:{seed}:{month.isoformat()}".encode()).hexdigest()
        recorded = record_batch(
            session, source="demo", filename=f"演示月报-{month:%Y年%m月}", content_sha256=digest,
            total_rows=len(report), rows=report, errors=[], clock=clock,
        )
        batch_ids.append(recorded.batch_id)
    set_meta(session, DEMO_SEED, str(seed))
    set_meta(session, REFERENCE_DATE, reserve.as_of.isoformat())
    return batch_ids
