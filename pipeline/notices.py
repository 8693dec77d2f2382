"""When a project's turn to red is news: not while a later report of it is still waiting.

A backlog of reports (after an outage, or twelve months loaded at once) passes through states
nobody saw; its notices go for what is red once the newer reports are through, whichever order
the workers apply them in.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.orm import Session

from pipeline import bulk
from pipeline.states import UpdateStatus


def settled(session: Session, project_ids: Sequence[int]) -> list[int]:
    """The given projects that have no recorded report, dated after their current state, waiting."""
    if not project_ids:
        return []
    bulk.id_table(session, "tmp_settled_ids", project_ids)
    waiting = set(session.scalars(text("""
        SELECT DISTINCT s.project_id FROM tmp_settled_ids t JOIN project_states s ON s.project_id = t.id
        JOIN projects p ON p.id = s.project_id
        JOIN status_updates u ON u.project_code = p.code AND u.status = :pending AND u.as_of > s.as_of"""),
        {"pending": UpdateStatus.PENDING.value}))
    return sorted(set(project_ids) - waiting)
