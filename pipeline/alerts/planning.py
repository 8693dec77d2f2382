"""Planning: who gets what, when. Jobs plan (write outbox rows); senders send.

Digests are planned once per review (ReviewRun and the outbox's unique keys make a second plan a
no-op); red notices once per red episode (the key carries the episode's history row).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from pipeline.alerts.calendar import ReviewCalendar
from pipeline.alerts.content import RedNotice, RenderedMessage, load_flagged
from pipeline.alerts.digests import ReviewMaterial, leader_digests, office_digest_of, review_material
from pipeline.alerts.render import render_leader_digest, render_office_digest, render_red_notice
from pipeline.alerts.review_data import digest_dates
from pipeline.alerts.outbox import SECRET_ENV_KEY, PlannedMessage, enqueue
from pipeline.alerts.recipients import Address, RecipientsConfig, addresses
from pipeline import bulk
from pipeline.models import (
    Acknowledgement,
    DigestRun,
    Leader,
    OutboxMessage,
    Project,
    ReviewRun,
    Unit,
)
from pipeline.notices import settled
from pipeline.overrides import red_episodes
from pipeline.rules import Scheme
from pipeline.rules.presentation import rule_names

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
    county_order: tuple[str, ...] = ()  # the configured counties, in the order the digests list them


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


def plan_review(session: Session, *, review: date, calendar: ReviewCalendar, current: date, ctx: AlertContext,
                send_at: datetime | None = None, material: ReviewMaterial | None = None) -> int:
    """Plan every leader's digest and the office digest for one review; returns the new messages.

    Each describes the reserve as of the review's digest day and compares with the previous
    review's digest day (``current``: the evaluation date, which says whether the overrides and
    acknowledgements in force now or those of a past day apply). The reserve is evaluated once per
    day, in chunks; the digests are grouped from that (pipeline.alerts.digests). ``material``: the
    review's material gathered already."""
    if material is None:
        material = review_material(session, digest_dates(calendar, review), scheme=ctx.scheme, current=current,
                                   with_outlook=True)
    new = plan_leader_digests(session, review=review, calendar=calendar, current=current, ctx=ctx, material=material)
    new += plan_office_digest(session, review=review, ctx=ctx, material=material)
    record_planned(session, review, send_at=send_at or ctx.now, now=ctx.now, messages=new)
    return new


def plan_leader_digests(session: Session, *, review: date, calendar: ReviewCalendar, current: date,
                        ctx: AlertContext, material: ReviewMaterial,
                        leader_range: tuple[int | None, int | None] | None = None) -> int:
    """Plan the review's leader digests (of the leaders whose id lies in ``leader_range``: from its
    first id, or any, up to its second, or on); returns the new messages."""
    contacts = {row.name: row for row in session.execute(select(Leader.id, Leader.name, Leader.email))}
    new = 0
    # Each digest is made, rendered and written to the outbox before the next is made: one review's
    # rendered messages (tens of megabytes at province scale) are never all held at once.
    for digest in leader_digests(session, digest_dates(calendar, review), scheme=ctx.scheme, link_base=ctx.link_base,
                                 current=current, material=material, leader_range=leader_range):
        leader = contacts[digest.leader]
        to = addresses(ctx.recipients.leaders.get(leader.name), email=leader.email)
        if to:
            new += len(enqueue(session, _messages("leader_digest", f"leader_digest:{review}:{leader.id}",
                                                  render_leader_digest(digest), to, leader.name, review_date=review),
                               now=ctx.now))
    return new


def plan_office_digest(session: Session, *, review: date, ctx: AlertContext, material: ReviewMaterial) -> int:
    """Plan the review's office digest; returns the new messages."""
    office_to = addresses(ctx.recipients.office)
    if not office_to:
        return 0
    content = render_office_digest(office_digest_of(material, names=rule_names(ctx.scheme.rules),
                                                    link_base=ctx.link_base, county_order=ctx.county_order))
    return len(enqueue(session, _messages("office_digest", f"office_digest:{review}", content, office_to,
                                          ctx.recipients.office.name, review_date=review), now=ctx.now))


def record_planned(session: Session, review: date, *, send_at: datetime, now: datetime, messages: int) -> None:
    """The review's digests are planned (``messages`` new messages, added to those of an earlier plan)."""
    run = session.get(ReviewRun, review)
    if run is None:
        session.add(ReviewRun(review_date=review, status=PLANNED, send_at=send_at, recorded_at=now, messages=messages))
    elif run.status == PLANNED:
        run.messages += messages
    session.flush()


def record_missed(session: Session, review: date, *, send_at: datetime, now: datetime) -> None:
    """A review whose digests could not go before it was held: recorded, nothing planned."""
    session.add(ReviewRun(review_date=review, status=MISSED, send_at=send_at, recorded_at=now, messages=0))


@dataclass(frozen=True)
class DigestPlanning:
    planned: tuple[date, ...] = ()
    missed: tuple[date, ...] = ()
    started: tuple[date, ...] = ()  # handed to the workers (pipeline.alerts.digest_runs)


def _reviews_near(calendar: ReviewCalendar, today: date) -> list[date]:
    """Reviews from the catch-up window to three weeks ahead."""
    return calendar.review_dates(today - CATCH_UP_WINDOW, today + PLANNING_LOOKAHEAD)


def plan_due_digests(session: Session, *, calendar: ReviewCalendar, as_of: date, ctx: AlertContext,
                     since: datetime | None = None,
                     start: Callable[[date, datetime], None] | None = None) -> DigestPlanning:
    """Plan the digests whose send time has come; a digest missed while the scheduler was down still
    goes once if its review has not happened yet, and is recorded as missed if it has.

    ``since`` is when scheduling began on this installation: reviews held before that day were
    never this installation's to prepare, and are neither planned nor recorded. A review still
    ahead whose send time passed before scheduling began gets its digests at once.

    ``start(review, send_at)``: hand a due review to the workers instead of planning it here
    (pipeline.alerts.digest_runs); a review whose run has started is left to it.
    """
    now = ctx.now.astimezone(calendar.tz)
    today = now.date()
    first_day = since.astimezone(calendar.tz).date() if since is not None else None
    planned, missed, started = [], [], []
    for review in _reviews_near(calendar, today):
        send_at = calendar.digest_send_at(review)
        if send_at > now or (first_day is not None and review < first_day):
            continue
        if session.get(ReviewRun, review) is not None or session.get(DigestRun, review) is not None:
            continue
        if today < review and start is not None:
            start(review, send_at)
            started.append(review)
        elif today < review:
            plan_review(session, review=review, calendar=calendar, current=as_of, ctx=ctx, send_at=send_at)
            planned.append(review)
        else:
            record_missed(session, review, send_at=send_at, now=ctx.now)
            missed.append(review)
    session.flush()
    return DigestPlanning(tuple(planned), tuple(missed), tuple(started))


def unnotified_red_projects(session: Session, among: Sequence[int] | None = None) -> list[int]:
    """Projects red now (of ``among``, when given) whose red episode has no notice planned and no
    acknowledgement. One statement, whatever their number: each episode probes the outbox and the
    acknowledgements through their episode keys (the outbox keeps every message ever planned)."""
    episodes = red_episodes(session, among).subquery()
    return list(session.scalars(
        select(episodes.c.project_id)
        .where(~exists().where(OutboxMessage.kind == "red_notice",
                               OutboxMessage.episode_change_id == episodes.c.episode),
               ~exists().where(Acknowledgement.episode_change_id == episodes.c.episode))
        .order_by(episodes.c.project_id)))


def plan_missing_red_notices(session: Session, *, ctx: AlertContext, among: Sequence[int] | None = None) -> int:
    """Plan the notice of every red episode that has none yet (after a backlog applied quietly,
    or a process that died between a commit and its planning); returns the new messages.

    A project whose newer report is still waiting is left for the run that applies it: what is
    red now may be a passing state of a backlog. ``among``: only these projects (the ones a batch
    just applied, whose waiting reports it took; the scheduler's tick looks at the whole reserve).
    """
    missing = settled(session, unnotified_red_projects(session, among))
    return plan_red_notices(session, missing, ctx=ctx) if missing else 0


def plan_red_notices(session: Session, project_ids: Sequence[int], *, ctx: AlertContext) -> int:
    """Tell each project's leader and unit that it turned red: once per red episode, unless
    acknowledged. Set-based, whatever the number of projects: their open, unacknowledged episodes
    and addressees are read in one statement, the content of those with someone to tell in one more."""
    if not project_ids:
        return 0
    episodes_now = red_episodes(session, project_ids).subquery()
    contacts = session.execute(  # one statement: the open episodes, unacknowledged, with their addressees
        select(Project.id, episodes_now.c.episode, Leader.name.label("leader"), Leader.email.label("leader_email"),
               Unit.name.label("unit"), Unit.email.label("unit_email"))
        .join(episodes_now, episodes_now.c.project_id == Project.id)
        .join(Leader, Leader.id == Project.leader_id, isouter=True)
        .join(Unit, Unit.id == Project.unit_id, isouter=True)
        .where(~select(Acknowledgement.episode_change_id)
               .where(Acknowledgement.episode_change_id == episodes_now.c.episode).exists())).all()
    episodes = {row.id: row.episode for row in contacts}
    targets: dict[int, list[tuple[str, list[Address]]]] = {}
    for row in contacts:
        found = []
        if row.leader:
            found.append((row.leader, addresses(ctx.recipients.leaders.get(row.leader), email=row.leader_email)))
        if row.unit:
            found.append((row.unit, addresses(ctx.recipients.units.get(row.unit), email=row.unit_email)))
        if any(to for _, to in found):
            targets[row.id] = found
    if not targets:  # nobody to tell: no message content is built
        return 0
    planned: list[PlannedMessage] = []
    in_targets = bulk.among_ids(session, "projects.id", list(targets))
    for project in load_flagged(session, where=[in_targets], scheme=ctx.scheme, link_base=ctx.link_base):
        content = render_red_notice(RedNotice(project=project))
        episode = episodes[project.id]
        for name, to in targets[project.id]:
            planned += _messages("red_notice", f"red_notice:{episode}", content, to, name, project_id=project.id,
                                 episode_change_id=episode)
    return len(enqueue(session, planned, now=ctx.now))
