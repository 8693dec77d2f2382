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
    """The given projects that have no recorded report, dated after their current state, waiting.

    Each given project is probed on its own, through the keys and the (code, 报告期) index, by a
    correlated sub-select that the planner cannot turn into a join: as a join, a batch's thousand
    projects were matched against the whole reserve, and with the status statistics of a moment
    before a large arrival, every waiting report was read once per project (tens of seconds)."""
    if not project_ids:
        return []
    waiting = set(session.scalars(text(f"""
        SELECT t.id FROM {bulk.id_rows(session, "ids", "t")}
        WHERE (SELECT u.id FROM project_states s JOIN projects p ON p.id = s.project_id
               JOIN status_updates u ON u.project_code = p.code AND u.as_of > s.as_of
               WHERE s.project_id = t.id AND u.status = :pending LIMIT 1) IS NOT NULL"""),
        {"pending": UpdateStatus.PENDING.value, "ids": bulk.id_set(session, project_ids)}))
    return sorted(set(project_ids) - waiting)
