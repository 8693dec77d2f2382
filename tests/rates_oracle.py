"""The rates' input built the plain way, the oracle of the set-based rates (pipeline/rates_as_of.py):
every applied update read, each project's newest on or before D kept in Python (for the same 报告期,
the later arrival), then one ``RateSubject`` per project with its county, lists, leader and industry."""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from pipeline.facts import FACT_FIELDS, ProjectFacts
from pipeline.models import Leader, Project, ProjectList, StatusUpdate
from pipeline.rates import RateSubject
from pipeline.states import UpdateStatus


def subjects_as_of(session: Session, day: date) -> list[RateSubject]:
    newest: dict[str, Any] = {}
    for u in session.execute(
        select(StatusUpdate.project_code, *(getattr(StatusUpdate, f) for f in FACT_FIELDS))
        .where(StatusUpdate.status == UpdateStatus.APPLIED.value, StatusUpdate.as_of <= day)
        .order_by(StatusUpdate.as_of, StatusUpdate.id)
    ):
        newest[u.project_code] = u
    lists: dict[int, list[str]] = defaultdict(list)
    for pid, name in session.execute(select(ProjectList.project_id, ProjectList.list_name)):
        lists[pid].append(name)
    subjects = []
    for pid, code, nature, county, industry, leader in session.execute(
        select(Project.id, Project.code, Project.nature, Project.county, Project.industry, Leader.name)
        .join(Leader, Leader.id == Project.leader_id, isouter=True)
    ):
        u = newest.get(code)
        if u is None:
            continue  # no report on or before D: the project does not count yet
        facts = ProjectFacts(code=code, nature=nature, **{f: getattr(u, f) for f in FACT_FIELDS})
        subjects.append(RateSubject(facts=facts, county=county, lists=tuple(lists[pid]), leader=leader,
                                    industry=industry))
    return subjects
