"""A leader's page as of a past date (截至日期): their red and yellow projects and counts as the
reserve stood then, from the flags staged as of that date (pipeline/web/flag_source.py); the rates
come from the digest, computed as of the same date."""

from __future__ import annotations

import json
from dataclasses import replace

from sqlalchemy import select
from sqlalchemy.orm import Session

from pipeline.alerts.content import ColorCounts, FlaggedProject, LeaderDigest, ReasonLine
from pipeline.models import Leader, Project, Unit
from pipeline.rules import Scheme
from pipeline.web.flag_source import FlagSource


def leader_digest_as_of(session: Session, digest: LeaderDigest, *, leader_id: int, source: FlagSource,
                        scheme: Scheme) -> LeaderDigest:
    """``digest`` with the leader's counts and red and yellow projects of ``source`` (a staged
    past date), and no changes since the last review (those are today's)."""
    assert source.past is not None
    names = {rule.code: rule.name for rule in scheme.rules}
    rows = session.execute(
        select(Project.id, Project.code, Project.name, Project.county, Unit.name.label("unit"),
               Leader.name.label("leader"), source.color.label("color"), source.reasons.label("reasons"))
        .select_from(Project).join(source.flags, source.flags_on)
        .join(Unit, Unit.id == Project.unit_id, isouter=True).join(Leader, Leader.id == Project.leader_id)
        .where(Project.leader_id == leader_id).order_by(Project.code)
    ).all()
    projects = [
        FlaggedProject(
            id=r.id, code=r.code, name=r.name, county=r.county, unit=r.unit, leader=r.leader, color=r.color,
            computed_color=r.color, override=None, flag_as_of=source.past, link=f"/projects/{r.code}",
            reasons=tuple(ReasonLine(x["code"], names.get(x["code"]), x["color"], x["message"])
                          for x in json.loads(r.reasons)),
        )
        for r in rows
    ]
    by_color = {c: tuple(p for p in projects if p.color == c) for c in ("red", "yellow", "green")}
    counts = ColorCounts(digest.leader, red=len(by_color["red"]), yellow=len(by_color["yellow"]),
                         green=len(by_color["green"]))
    return replace(digest, counts=counts, red=by_color["red"], yellow=by_color["yellow"], changes=())


__all__ = ["leader_digest_as_of"]
