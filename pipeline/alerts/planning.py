"""Planning: who gets what, when. Jobs plan (write outbox rows); senders send.

Digests are planned once per review (ReviewRun and the outbox's unique keys make a second plan a
no-op); red notices once per red episode (the key carries the episode's history row).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from pipeline.alerts.calendar import ReviewCalendar
from pipeline.alerts.content import RenderedMessage, leader_digest, office_digest, red_notice
from pipeline.alerts.outbox import SECRET_ENV_KEY, PlannedMessage, enqueue
from pipeline.alerts.recipients import Address, RecipientsConfig, addresses
from pipeline.ingest.in_order import waiting_after
from pipeline.models import Acknowledgement, Leader, OutboxMessage, Project, ReviewRun, Unit
from pipeline.overrides import current_red_episode, current_red_episodes
from pipeline.rules import Scheme
from pipeline.snapshot import in_chunks

PLANNED, MISSED = "planned", "missed"
CATCH_UP_WINDOW = timedelta(days=70)  # how far back a restarted scheduler looks for missed digests
PLANNING_LOOKAHEAD = timedelta(days=21)  # how far ahead it looks for reviews whose digest may be due


@dataclass(frozen=True)
class AlertContext:
    """What planning needs besides the session: the scheme, the addresses, links, the clock's now."""

    scheme: Scheme
    recipients: RecipientsConfig
    link_base: str
    now: datetime


def _messages(kind: str, key_stem: str, content: RenderedMessage, to: Sequence[Address], name: str | None,
              **refs: Any) -> list[PlannedMessage]:
    out = []
    for addr in to:
        payload = dict(content.payload)
        if addr.secret_env:
            payload[SECRET_ENV_KEY] = addr.secret_env
        out.append(PlannedMessage(
            key=f"{key_stem}:{addr.channel}:{addr.recipient}", kind=kind, channel=addr.channel,
            recipient=addr.recipient, recipient_name=name, subject=content.subject, body_text=content.text,
            body_html=content.html, payload=payload,
            attachments=content.attachments if addr.channel == "email" else (), **refs,
        ))
    return out


def plan_review(session: Session, *, review: date, previous: date | None, as_of: date, ctx: AlertContext,
                send_at: datetime | None = None) -> int:
    """Plan every leader's digest and the office digest for one review; returns the new messages."""
    planned: list[PlannedMessage] = []
    leaders = session.execute(
        select(Leader.id, Leader.name, Leader.email)
        .where(Leader.id.in_(select(Project.leader_id).where(Project.leader_id.is_not(None))))
        .order_by(Leader.id)
    ).all()
    for leader in leaders:
        to = addresses(ctx.recipients.leaders.get(leader.name), email=leader.email)
        if not to:
            continue
        content = leader_digest(session, leader_id=leader.id, review_date=review, as_of=as_of, previous_review=previous,
                                scheme=ctx.scheme, link_base=ctx.link_base)
        planned += _messages("leader_digest", f"leader_digest:{review}:{leader.id}", content, to, leader.name,
                             review_date=review)
    office_to = addresses(ctx.recipients.office)
    if office_to:
        content = office_digest(session, review_date=review, as_of=as_of, previous_review=previous, scheme=ctx.scheme,
                                link_base=ctx.link_base)
        planned += _messages("office_digest", f"office_digest:{review}", content, office_to,
                             ctx.recipients.office.name, review_date=review)
    new = enqueue(session, planned, now=ctx.now)
    run = session.get(ReviewRun, review)
    if run is None:
        session.add(ReviewRun(review_date=review, status=PLANNED, send_at=send_at or ctx.now, recorded_at=ctx.now,
                              messages=len(new)))
    elif run.status == PLANNED:
        run.messages += len(new)
    session.flush()
    return len(new)


@dataclass(frozen=True)
class DigestPlanning:
    planned: tuple[date, ...] = ()
    missed: tuple[date, ...] = ()


def _reviews_near(calendar: ReviewCalendar, today: date) -> list[date]:
    """Reviews from the catch-up window to three weeks ahead."""
    return calendar.review_dates(today - CATCH_UP_WINDOW, today + PLANNING_LOOKAHEAD)


def plan_due_digests(session: Session, *, calendar: ReviewCalendar, as_of: date, ctx: AlertContext,
                     since: datetime | None = None) -> DigestPlanning:
    """Plan the digests whose send time has come; a digest missed while the scheduler was down still
    goes once if its review has not happened yet, and is recorded as missed if it has.

    ``since`` is when scheduling began on this installation: reviews held before that day were
    never this installation's to prepare, and are neither planned nor recorded. A review still
    ahead whose send time passed before scheduling began gets its digests at once.
    """
    now = ctx.now.astimezone(calendar.tz)
    today = now.date()
    first_day = since.astimezone(calendar.tz).date() if since is not None else None
    planned, missed = [], []
    for review in _reviews_near(calendar, today):
        send_at = calendar.digest_send_at(review)
        if send_at > now or (first_day is not None and review < first_day):
            continue
        if session.get(ReviewRun, review) is not None:
            continue
        if today < review:
            plan_review(session, review=review, previous=calendar.previous_review(review), as_of=as_of, ctx=ctx,
                        send_at=send_at)
            planned.append(review)
        else:
            session.add(ReviewRun(review_date=review, status=MISSED, send_at=send_at, recorded_at=ctx.now, messages=0))
            missed.append(review)
    session.flush()
    return DigestPlanning(tuple(planned), tuple(missed))


def unnotified_red_projects(session: Session) -> list[int]:
    """Projects red now whose red episode has no notice planned and no acknowledgement."""
    episodes = current_red_episodes(session)
    handled: set[int] = set()
    for part in in_chunks(list(episodes.values())):
        handled.update(session.scalars(select(OutboxMessage.episode_change_id).where(
            OutboxMessage.kind == "red_notice", OutboxMessage.episode_change_id.in_(part))))
        handled.update(session.scalars(select(Acknowledgement.episode_change_id).where(
            Acknowledgement.episode_change_id.in_(part))))
    return sorted(pid for pid, episode in episodes.items() if episode not in handled)


def plan_missing_red_notices(session: Session, *, ctx: AlertContext) -> int:
    """Plan the notice of every red episode that has none yet (after a backlog applied quietly,
    or a process that died between a commit and its planning); returns the new messages.

    Nothing is planned while batches still wait: what is red now may be a passing state of a
    backlog, and the run that applies its last batch plans the notices.
    """
    if waiting_after(session, 0):
        return 0
    missing = unnotified_red_projects(session)
    return plan_red_notices(session, missing, ctx=ctx) if missing else 0


def plan_red_notices(session: Session, project_ids: Sequence[int], *, ctx: AlertContext) -> int:
    """Tell each project's leader and unit that it turned red: once per red episode, unless acknowledged."""
    planned: list[PlannedMessage] = []
    for pid in project_ids:
        episode = current_red_episode(session, pid)
        if episode is None:
            continue
        if session.scalar(select(Acknowledgement.id).where(Acknowledgement.episode_change_id == episode.id)):
            continue
        row = session.execute(
            select(Project.id, Leader.name.label("leader"), Leader.email.label("leader_email"),
                   Unit.name.label("unit"), Unit.email.label("unit_email"))
            .join(Leader, Leader.id == Project.leader_id, isouter=True)
            .join(Unit, Unit.id == Project.unit_id, isouter=True)
            .where(Project.id == pid)
        ).one()
        targets = []
        if row.leader:
            targets.append((row.leader, addresses(ctx.recipients.leaders.get(row.leader), email=row.leader_email)))
        if row.unit:
            targets.append((row.unit, addresses(ctx.recipients.units.get(row.unit), email=row.unit_email)))
        if not any(to for _, to in targets):
            continue
        content = red_notice(session, project_id=pid, link_base=ctx.link_base, scheme=ctx.scheme)
        for name, to in targets:
            planned += _messages("red_notice", f"red_notice:{episode.id}", content, to, name, project_id=pid,
                                 episode_change_id=episode.id)
    return len(enqueue(session, planned, now=ctx.now))
