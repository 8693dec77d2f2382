"""The system of record: SQLAlchemy 2.0 typed models. Schema changes go through Alembic."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

Money = Numeric(16, 2)
JsonDoc = JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Leader(Base):
    """包保领导: answers for a set of projects."""

    __tablename__ = "leaders"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50), unique=True)
    title: Mapped[str | None] = mapped_column(String(100))
    email: Mapped[str | None] = mapped_column(String(200))
    webhook_url: Mapped[str | None] = mapped_column(String(500))


class Unit(Base):
    """责任单位: a county government, a department or a company."""

    __tablename__ = "units"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    email: Mapped[str | None] = mapped_column(String(200))
    webhook_url: Mapped[str | None] = mapped_column(String(500))


class Project(Base):
    """One project of the reserve; its descriptive fields follow its newest applied update."""

    __tablename__ = "projects"
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(24), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    county: Mapped[str] = mapped_column(String(50), index=True)
    industry: Mapped[str | None] = mapped_column(String(50), index=True)
    nature: Mapped[str] = mapped_column(String(10))
    total_investment: Mapped[Decimal] = mapped_column(Money)
    leader_id: Mapped[int | None] = mapped_column(ForeignKey("leaders.id"), index=True)
    unit_id: Mapped[int | None] = mapped_column(ForeignKey("units.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ProjectList(Base):
    """Membership of a project in one of the four lists (四个清单)."""

    __tablename__ = "project_lists"
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    list_name: Mapped[str] = mapped_column(String(50), primary_key=True, index=True)


class ImportBatch(Base):
    """One arrival of updates (a file, an API call, the demo): recorded before any task is queued."""

    __tablename__ = "import_batches"
    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(20))  # file | api | demo
    filename: Mapped[str | None] = mapped_column(String(500))
    content_sha256: Mapped[str | None] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(String(20), index=True)  # BatchStatus
    submitted_by: Mapped[str | None] = mapped_column(String(100))  # who sent it (account, token, CLI user)
    unit_id: Mapped[int | None] = mapped_column(ForeignKey("units.id"))  # a unit's batch: progress only
    total_rows: Mapped[int] = mapped_column(Integer, default=0)
    accepted_rows: Mapped[int] = mapped_column(Integer, default=0)
    rejected_rows: Mapped[int] = mapped_column(Integer, default=0)
    duplicate_rows: Mapped[int] = mapped_column(Integer, default=0)
    applied_rows: Mapped[int] = mapped_column(Integer, default=0)
    superseded_rows: Mapped[int] = mapped_column(Integer, default=0)
    hidden_rows: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # hidden in Excel, imported
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    enqueued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    applied_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class RejectedRow(Base):
    """A row (or a whole file) refused, with where and why, in Chinese."""

    __tablename__ = "rejected_rows"
    id: Mapped[int] = mapped_column(primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("import_batches.id", ondelete="CASCADE"), index=True)
    row_number: Mapped[int | None] = mapped_column(Integer)
    sheet: Mapped[str | None] = mapped_column(String(100))  # the worksheet, when a workbook has several
    header: Mapped[str | None] = mapped_column(String(100))
    raw_value: Mapped[str | None] = mapped_column(Text)
    message: Mapped[str] = mapped_column(Text)
    # The whole row as read (template alias → cell), on the first error of each row: the office
    # downloads the refused rows with their 问题说明, fixes them and uploads the file again.
    cells: Mapped[dict[str, Any] | None] = mapped_column(JsonDoc)


class ProgressColumns:
    """The progress fields of a template row, shared by updates and the current state."""

    as_of: Mapped[date] = mapped_column(Date)
    annual_plan: Mapped[Decimal | None] = mapped_column(Money)
    planned_start: Mapped[date | None] = mapped_column(Date)
    planned_completion: Mapped[date | None] = mapped_column(Date)
    actual_start: Mapped[date | None] = mapped_column(Date)
    actual_completion: Mapped[date | None] = mapped_column(Date)
    stats_included_on: Mapped[date | None] = mapped_column(Date)
    cumulative_completed: Mapped[Decimal | None] = mapped_column(Money)
    ytd_completed: Mapped[Decimal | None] = mapped_column(Money)
    needs_coordination: Mapped[bool] = mapped_column(Boolean, default=False)
    problems: Mapped[str | None] = mapped_column(Text)


class StatusUpdate(ProgressColumns, Base):
    """Every accepted update, kept forever; its key makes it land once.

    The row carries the template's master-data columns too; in a unit's progress-only row they are
    empty until the update is applied, when they are completed from the reserve (SPEC §3)."""

    __tablename__ = "status_updates"
    id: Mapped[int] = mapped_column(primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(128), unique=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("import_batches.id"), index=True)
    row_number: Mapped[int | None] = mapped_column(Integer)
    project_code: Mapped[str] = mapped_column(String(24))
    status: Mapped[str] = mapped_column(String(20))  # UpdateStatus
    name: Mapped[str | None] = mapped_column(String(200))
    county: Mapped[str | None] = mapped_column(String(50))
    industry: Mapped[str | None] = mapped_column(String(50))
    lists: Mapped[list[str] | None] = mapped_column(JsonDoc)
    nature: Mapped[str | None] = mapped_column(String(10))
    total_investment: Mapped[Decimal | None] = mapped_column(Money)
    leader: Mapped[str | None] = mapped_column(String(50))
    unit: Mapped[str | None] = mapped_column(String(200))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    applied_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    note: Mapped[str | None] = mapped_column(Text)  # why a rejected update was not applied

    __table_args__ = (Index("ix_status_updates_code_as_of", "project_code", "as_of", "id"),)

    @property
    def payload(self) -> dict[str, Any]:
        """The update's template fields by English alias, as JSON-ready values."""
        values: dict[str, Any] = {"code": self.project_code}
        for name in UPDATE_FIELDS:
            value = getattr(self, name)
            if isinstance(value, date):
                value = value.isoformat()
            elif isinstance(value, Decimal):  # the amount, whatever its exponent: 5000.00 → "5000"
                value = format(value.normalize(), "f")
            values[name] = value
        return values


UPDATE_FIELDS = (
    "name", "county", "industry", "lists", "nature", "total_investment", "annual_plan", "planned_start",
    "planned_completion", "actual_start", "actual_completion", "stats_included_on", "cumulative_completed",
    "ytd_completed", "leader", "unit", "problems", "needs_coordination", "as_of",
)


class ProjectState(ProgressColumns, Base):
    """The current state: the newest update of each project (by 报告期)."""

    __tablename__ = "project_states"
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    update_id: Mapped[int] = mapped_column(ForeignKey("status_updates.id"))


class ProjectFlag(Base):
    """The current flag of a project: computed by the scheme, effective after any override.

    ``update_id`` and ``previous_base`` are the inputs it was computed from (the report and the
    base colour at the previous month's end); with ``as_of``, the scheme and the override they
    decide whether a re-flag has anything to write."""

    __tablename__ = "project_flags"
    project_id: Mapped[int] = mapped_column(Integer, primary_key=True)  # derived: no per-row FK check (0012)
    computed_color: Mapped[str] = mapped_column(String(10))
    effective_color: Mapped[str] = mapped_column(String(10), index=True)
    base_color: Mapped[str] = mapped_column(String(10), server_default="green")
    reasons: Mapped[list[dict[str, Any]]] = mapped_column(JsonDoc)
    override_id: Mapped[int | None] = mapped_column(ForeignKey("flag_overrides.id"))
    scheme: Mapped[str] = mapped_column(String(100))
    scheme_version: Mapped[int] = mapped_column(Integer)
    as_of: Mapped[date] = mapped_column(Date)
    update_id: Mapped[int | None] = mapped_column(Integer)
    previous_base: Mapped[str | None] = mapped_column(String(10))
    evaluated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class FlagChange(Base):
    """Flag history: one row each time a project's computed or effective colour changes."""

    __tablename__ = "flag_history"
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(Integer)  # derived: no per-row FK check (migration 0012)
    old_computed: Mapped[str | None] = mapped_column(String(10))
    new_computed: Mapped[str] = mapped_column(String(10))
    old_effective: Mapped[str | None] = mapped_column(String(10))
    new_effective: Mapped[str] = mapped_column(String(10))
    reasons: Mapped[list[dict[str, Any]]] = mapped_column(JsonDoc)
    cause: Mapped[str] = mapped_column(String(30))  # update | reflag | override | override_expired
    scheme: Mapped[str] = mapped_column(String(100))
    scheme_version: Mapped[int] = mapped_column(Integer)
    as_of: Mapped[date] = mapped_column(Date)
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ix_flag_history_project", "project_id", "id"),)


class MonthFlag(Base):
    """A project's computed flag at the end of one calendar month (SPEC §9): the month-by-month
    history, the trend and ESCALATED's look back all read it. Kept for every month end since the
    project's first report, recomputed when a late report changes a past month."""

    __tablename__ = "month_flags"
    project_id: Mapped[int] = mapped_column(Integer, primary_key=True)  # derived: no per-row FK check (0012)
    month_end: Mapped[date] = mapped_column(Date, primary_key=True)
    update_id: Mapped[int] = mapped_column(Integer)
    computed_color: Mapped[str] = mapped_column(String(10))
    base_color: Mapped[str] = mapped_column(String(10))
    reasons: Mapped[list[dict[str, Any]]] = mapped_column(JsonDoc)
    scheme: Mapped[str] = mapped_column(String(100))
    scheme_version: Mapped[int] = mapped_column(Integer)

    __table_args__ = (Index("ix_month_flags_month_end", "month_end"),)


class MonthTrend(Base):
    """One group's figures at one month end (SPEC §9 trend): its red, yellow and green counts (from
    the month flags) and its three rates and investment as of the month end, each rate as numerator
    and denominator. Computed once per month end and kept (pipeline/trends.py); dropped from the
    month a late report changes on, and computed again when next asked for."""

    __tablename__ = "month_trends"
    month_end: Mapped[date] = mapped_column(Date, primary_key=True)
    grouping: Mapped[str] = mapped_column(String(20), primary_key=True)  # city|county|list|leader|industry
    group_name: Mapped[str] = mapped_column(String(200), primary_key=True)
    red: Mapped[int] = mapped_column(Integer)
    yellow: Mapped[int] = mapped_column(Integer)
    green: Mapped[int] = mapped_column(Integer)
    projects: Mapped[int] = mapped_column(Integer)
    start_done: Mapped[int] = mapped_column(Integer)
    start_due: Mapped[int] = mapped_column(Integer)
    start_year_done: Mapped[int] = mapped_column(Integer)
    start_year: Mapped[int] = mapped_column(Integer)
    completion_done: Mapped[int] = mapped_column(Integer)
    completion_due: Mapped[int] = mapped_column(Integer)
    completion_year_done: Mapped[int] = mapped_column(Integer)
    completion_year: Mapped[int] = mapped_column(Integer)
    stats_done: Mapped[int] = mapped_column(Integer)
    stats_due: Mapped[int] = mapped_column(Integer)
    ytd_sum: Mapped[Decimal] = mapped_column(Numeric(18, 2))
    plan_sum: Mapped[Decimal] = mapped_column(Numeric(18, 2))
    computed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ix_month_trends_group", "grouping", "group_name", "month_end"),)


class MonthClose(Base):
    """A month end whose flags have been computed for the whole reserve under a scheme version."""

    __tablename__ = "month_closes"
    month_end: Mapped[date] = mapped_column(Date, primary_key=True)
    scheme: Mapped[str] = mapped_column(String(100))
    scheme_version: Mapped[int] = mapped_column(Integer)
    closed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ReflagRun(Base):
    """One re-flag of the whole reserve, split into chunks that workers run in parallel; the chunk
    that finishes last plans the red notices."""

    __tablename__ = "reflag_runs"
    id: Mapped[int] = mapped_column(primary_key=True)
    as_of: Mapped[date] = mapped_column(Date)
    cause: Mapped[str] = mapped_column(String(30))
    months: Mapped[list[str]] = mapped_column(JsonDoc)  # month ends the run closes first (ISO dates)
    chunk_size: Mapped[int] = mapped_column(Integer)  # project ids per chunk
    chunks: Mapped[int] = mapped_column(Integer)
    done_chunks: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(20))  # running | done
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ReflagChunk(Base):
    """A chunk of a re-flag run that has been written (so a redelivered chunk task counts once)."""

    __tablename__ = "reflag_chunks"
    run_id: Mapped[int] = mapped_column(ForeignKey("reflag_runs.id", ondelete="CASCADE"), primary_key=True)
    chunk: Mapped[int] = mapped_column(Integer, primary_key=True)
    evaluated: Mapped[int] = mapped_column(Integer)
    changed: Mapped[int] = mapped_column(Integer)
    finished_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ChangeRequest(Base):
    """A unit's master data that differ from the reserve, held for the office (SPEC §3)."""

    __tablename__ = "change_requests"
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    update_id: Mapped[int] = mapped_column(ForeignKey("status_updates.id"))
    unit_id: Mapped[int | None] = mapped_column(ForeignKey("units.id"))
    field: Mapped[str] = mapped_column(String(50))
    current_value: Mapped[str | None] = mapped_column(Text)
    proposed_value: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), index=True)  # pending | approved | rejected
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    decided_by: Mapped[str | None] = mapped_column(String(100))
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (UniqueConstraint("update_id", "field", name="uq_change_requests_update_field"),)


class FlagOverride(Base):
    """A flag set by hand by the office, with a reason, a person and an expiry date."""

    __tablename__ = "flag_overrides"
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    color: Mapped[str] = mapped_column(String(10))
    reason: Mapped[str] = mapped_column(Text)
    set_by: Mapped[str] = mapped_column(String(100))
    expires_on: Mapped[date] = mapped_column(Date)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Acknowledgement(Base):
    """A red flag acknowledged with a note; silences repeats for that red episode, not the flag."""

    __tablename__ = "acknowledgements"
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    episode_change_id: Mapped[int] = mapped_column(ForeignKey("flag_history.id"))
    note: Mapped[str] = mapped_column(Text)
    acked_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (UniqueConstraint("episode_change_id", name="uq_acknowledgements_episode"),)


class SystemMeta(Base):
    """Small facts about this installation (e.g. the demo reserve's reference date)."""

    __tablename__ = "system_meta"
    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class OutboxMessage(Base):
    """One message, planned exactly once: (recipient, kind, review or red episode) is its unique key.

    Planning writes the row with its content fixed; a sender claims it with a lease, sends it and
    marks it sent, or schedules a retry with backoff, or marks it failed once the retry window from
    its first attempt has passed. Delivery is at-least-once (SPEC §6).
    """

    __tablename__ = "outbox"
    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(300), unique=True)
    kind: Mapped[str] = mapped_column(String(30), index=True)  # leader_digest | office_digest | red_notice
    channel: Mapped[str] = mapped_column(String(20))  # email | webhook | folder
    recipient: Mapped[str] = mapped_column(String(500))
    recipient_name: Mapped[str | None] = mapped_column(String(200))
    subject: Mapped[str] = mapped_column(String(500))
    body_text: Mapped[str] = mapped_column(Text)
    body_html: Mapped[str | None] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(JsonDoc)
    review_date: Mapped[date | None] = mapped_column(Date)
    project_id: Mapped[int | None] = mapped_column(ForeignKey("projects.id", ondelete="SET NULL"))
    # Indexed: planning asks, per red episode, whether its notice is planned yet, among every message ever planned.
    episode_change_id: Mapped[int | None] = mapped_column(ForeignKey("flag_history.id"), index=True)
    status: Mapped[str] = mapped_column(String(20), index=True)  # pending | sending | sent | failed | skipped
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    first_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # the retry window's start
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class OutboxAttachment(Base):
    __tablename__ = "outbox_attachments"
    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("outbox.id", ondelete="CASCADE"), index=True)
    filename: Mapped[str] = mapped_column(String(300))
    mime: Mapped[str] = mapped_column(String(200))
    content: Mapped[bytes] = mapped_column(LargeBinary)


class DeliveryAttempt(Base):
    """One try at sending an outbox message: when, how it ended, how long it took."""

    __tablename__ = "delivery_attempts"
    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("outbox.id", ondelete="CASCADE"), index=True)
    attempted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ok: Mapped[bool] = mapped_column(Boolean)
    retryable: Mapped[bool] = mapped_column(Boolean, default=False)
    status_code: Mapped[int | None] = mapped_column(Integer)
    detail: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[int | None] = mapped_column(Integer)


class ReviewRun(Base):
    """What became of one review's digests: planned once, or recorded as missed."""

    __tablename__ = "review_runs"
    review_date: Mapped[date] = mapped_column(Date, primary_key=True)
    status: Mapped[str] = mapped_column(String(20))  # planned | missed
    send_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    messages: Mapped[int] = mapped_column(Integer, default=0)


class DigestRun(Base):
    """One review's digests made by workers in parallel (province and national scale): gathered
    from chunks of the reserve, then rendered in parts (the office's digest, and the leaders' in
    ranges of leader ids); the chunk that completes the gathering divides the rendering, the part
    that completes it records the review planned."""

    __tablename__ = "digest_runs"
    review_date: Mapped[date] = mapped_column(Date, primary_key=True)
    current: Mapped[date] = mapped_column(Date)  # the evaluation date the digests are planned on
    chunk_size: Mapped[int] = mapped_column(Integer)  # project ids per chunk
    first_chunk: Mapped[int] = mapped_column(Integer)  # the run's chunks: first_chunk, first_chunk + 1, ...
    chunks: Mapped[int] = mapped_column(Integer)
    done_chunks: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(20))  # running (gathering) | rendering | done
    send_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The rendering's parts, once gathered: part 0 the office's digest, part k ≥ 1 the leaders
    # whose id lies in [leader_starts[k-1], leader_starts[k]) (the last part: from its start on).
    leader_starts: Mapped[list[int] | None] = mapped_column(JSON)
    done_parts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class DigestPart(Base):
    """A chunk's share of a review's digests (pipeline.alerts.digests: counts and rate sums, its red
    and yellow projects, changes, outlook), one frame per part in Arrow IPC; dropped once planned."""

    __tablename__ = "digest_parts"
    review_date: Mapped[date] = mapped_column(ForeignKey("digest_runs.review_date", ondelete="CASCADE"),
                                              primary_key=True)
    chunk: Mapped[int] = mapped_column(Integer, primary_key=True)
    part: Mapped[str] = mapped_column(String(30), primary_key=True)
    content: Mapped[bytes] = mapped_column(LargeBinary)


class DigestRender(Base):
    """A rendered part of a review's digest run: its messages are in the outbox (same transaction)."""

    __tablename__ = "digest_renders"
    review_date: Mapped[date] = mapped_column(ForeignKey("digest_runs.review_date", ondelete="CASCADE"),
                                              primary_key=True)
    part: Mapped[int] = mapped_column(Integer, primary_key=True)
    messages: Mapped[int] = mapped_column(Integer)


class SchedulerLease(Base):
    """A named lease: the one scheduler holding it plans; another instance stands by."""

    __tablename__ = "scheduler_leases"
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    owner: Mapped[str] = mapped_column(String(200))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class User(Base):
    """A person signing in to the web workspace: the office, a leader or a responsible unit."""

    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(100), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))  # office | leader | unit
    leader_id: Mapped[int | None] = mapped_column(ForeignKey("leaders.id"), index=True)
    unit_id: Mapped[int | None] = mapped_column(ForeignKey("units.id"), index=True)
    password_hash: Mapped[str | None] = mapped_column(String(300))  # argon2id; None: token or SSO only
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ApiToken(Base):
    """A bearer token for the API; only its SHA-256 is stored, the token itself is shown once."""

    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(primary_key=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    label: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class WebSession(Base):
    """A signed-in browser. Its cookie carries a random id; only the id's SHA-256 is kept here, so
    ending a sign-in (logout, password change, account disabled) is deleting its row."""

    __tablename__ = "web_sessions"
    id: Mapped[int] = mapped_column(primary_key=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    client: Mapped[str | None] = mapped_column(String(100))  # the client address at sign-in
    user_agent: Mapped[str | None] = mapped_column(String(300))


class LoginThrottle(Base):
    """Failed sign-ins of one account or from one client address, and the lock they earned.

    A row is forgotten (deleted) once ``forget_at`` has passed: the counting window after the last
    failure, or after the lock's end.
    """

    __tablename__ = "login_throttle"
    scope: Mapped[str] = mapped_column(String(10), primary_key=True)  # account | address
    subject: Mapped[str] = mapped_column(String(200), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer)
    last_failure_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    forget_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class AuditEntry(Base):
    """Who did what, when: written by the domain actions themselves (web, API and CLI alike)."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    actor: Mapped[str] = mapped_column(String(100), index=True)  # a username, or the OS user of a CLI command
    via: Mapped[str] = mapped_column(String(10))  # web | api | sso | cli | system
    client: Mapped[str | None] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(40), index=True)
    target: Mapped[str | None] = mapped_column(String(300))
    detail: Mapped[dict[str, Any]] = mapped_column(JsonDoc)
