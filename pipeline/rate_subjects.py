"""Load what the rates read from the database: each project's newest row on or before D and its groups."""

from __future__ import annotations

from collections import defaultdict
from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session

from pipeline.models import Leader, Project, ProjectList
from pipeline.rates import RateSubject
from pipeline.snapshot import facts_of, newest_report_query


def load_rate_subjects(session: Session, *, as_of: date) -> list[RateSubject]:
    lists: dict[int, list[str]] = defaultdict(list)
    for pid, name in session.execute(select(ProjectList.project_id, ProjectList.list_name).order_by(ProjectList.list_name)):
        lists[pid].append(name)
    query = newest_report_query(as_of, Project.county, Project.industry, Leader.name.label("leader_name")).join(
        Leader, Leader.id == Project.leader_id, isouter=True
    )
    subjects: list[RateSubject] = []
    for row in session.execute(query):
        facts = facts_of(row)
        if facts is None:
            continue  # no report on or before D: the project does not count yet
        subjects.append(
            RateSubject(
                facts=facts, county=row.county, lists=tuple(lists.get(row.id, ())), leader=row.leader_name,
                industry=row.industry,
            )
        )
    return subjects
