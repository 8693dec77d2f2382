"""Pydantic models of the API's answers (and of the bodies of its actions)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from pipeline.alerts.redact import ShownMessage

Color = Literal["red", "yellow", "green"]
# Bounds of the API's ids and page numbers: past them a database answers with an error, not a miss.
MAX_ID = 2**63 - 1  # BIGINT on PostgreSQL, INTEGER on SQLite
MAX_PAGE = 100_000


class ErrorItem(BaseModel):
    row: int | None = Field(None, description="行号（文件为 Excel 行号，JSON 为第几条，从 1 起）")
    sheet: str | None = Field(None, description="工作表名称（工作簿有多个工作表导入时）")
    field: str | None = Field(None, description="列名或字段名")
    value: str | None = None
    message: str


class ErrorAnswer(BaseModel):
    detail: str
    errors: list[ErrorItem] = []


class Reason(BaseModel):
    model_config = ConfigDict(extra="allow")
    code: str
    color: str
    message: str
    values: dict[str, Any] = {}


class ProjectSummary(BaseModel):
    code: str
    name: str
    county: str
    industry: str | None
    nature: str
    leader: str | None
    unit: str | None
    flag: str | None
    computed_flag: str | None
    overridden: bool
    total_investment: float | None
    annual_plan: float | None
    ytd_completed: float | None
    as_of: date | None
    reasons: list[Reason]


class ProjectPage(BaseModel):
    total: int
    page: int
    per_page: int
    items: list[ProjectSummary]


class UpdateOut(BaseModel):
    id: int
    as_of: date
    status: str
    received_at: datetime
    applied_at: datetime | None
    batch_id: int
    row_number: int | None
    payload: dict[str, Any]


class TimelineEvent(BaseModel):
    """``month``: the computed flag at a month end (``as_of``) where colour or reasons changed;
    ``flag``: the current flag (last); ``ack``/``override``: when they were made (``at``)."""

    kind: Literal["month", "flag", "ack", "override"]
    at: datetime | None = None
    as_of: date | None = None
    color: str | None = None
    old_color: str | None = None
    cause: str
    reasons: list[Reason] = []
    by: str | None = None
    note: str | None = None


class MonthHistoryEntry(BaseModel):
    """A project's computed flag at one month end (SPEC §9), where its colour or reasons changed."""

    month_end: date
    color: str
    old_color: str | None = None
    reasons: list[Reason] = []


class AckOut(BaseModel):
    id: int
    note: str
    acked_by: str
    created_at: datetime
    episode_change_id: int


class OverrideOut(BaseModel):
    id: int
    color: str
    reason: str
    set_by: str
    expires_on: date
    created_at: datetime
    revoked_at: datetime | None


class ProjectDetail(ProjectSummary):
    lists: list[str]
    total_investment: float | None
    scheme: str | None
    scheme_version: int | None
    flag_as_of: date | None
    override: OverrideOut | None
    state: dict[str, Any] | None
    updates: list[UpdateOut]
    timeline: list[TimelineEvent]
    history: list[MonthHistoryEntry] = []
    acknowledgements: list[AckOut]


class RateFigures(BaseModel):
    """The three rates (and investment) as [numerator, denominator], as `pipeline rates --json`."""

    start_rate: list[int]
    start_rate_annual: list[int]
    completion_rate: list[int]
    completion_rate_annual: list[int]
    stats_rate: list[int]
    investment: list[float]


class GroupRatesOut(RateFigures):
    group: str
    projects: int
    display: dict[str, str]


class RatesAnswer(BaseModel):
    as_of: date
    by: str
    time_progress: str
    groups: list[GroupRatesOut]


class TrendPointOut(RateFigures):
    """One group at one month end: colour counts (month flags) and rates as [numerator, denominator]."""

    month_end: date
    group: str
    red: int
    yellow: int
    green: int


class ReviewOut(BaseModel):
    date: date
    days_left: int
    digest_at: datetime


class OutboxPage(BaseModel):
    total: int
    page: int
    per_page: int
    items: list[ShownMessage] = Field(..., description="收件地址与错误信息中的 Webhook 凭据已遮盖为 ***")


class SubmissionOut(BaseModel):
    batch_id: int | None
    total: int
    accepted: int
    duplicates: int
    rejected: int
    already_received: bool = False
    hidden_rows: int | None = Field(None, description="文件上传：在 Excel 中被隐藏的行数（已一并校验导入）")
    errors: list[ErrorItem]


class OverrideIn(BaseModel):
    color: str = Field(..., description="red/yellow/green 或 红/黄/绿")
    reason: str = Field(..., min_length=1)
    expires_on: date


class AcknowledgeIn(BaseModel):
    note: str = Field(..., min_length=1)


class ActionOut(BaseModel):
    ok: bool = True
    message: str
    flag: str | None = None


class ForecastItemOut(BaseModel):
    code: str
    name: str
    leader: str | None
    flag_now: Color = Field(..., description="截至日期的计算挂牌")
    flag_at_review: Color = Field(..., description="如情况不变，述职日的挂牌")
    reasons: list[Reason] = Field(..., description="述职日将触发的原因")


class ForecastAnswer(BaseModel):
    as_of: date = Field(..., description="截至日期 D")
    review: date = Field(..., description="述职日期 R")
    red: int = Field(..., description="将转红的项目数")
    yellow: int = Field(..., description="将转黄的项目数")
    items: list[ForecastItemOut]
