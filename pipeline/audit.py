"""The audit log (审计日志): who did what, when.

Every domain action that changes something an auditor cares about (imports, overrides,
acknowledgements, resends, account changes, sign-ins) writes one row here, in the same
transaction as the change, with the actor its caller passes in: the signed-in user on the web and
the API, the operating-system user for a CLI command. Nothing here knows of HTTP or of the CLI.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from pipeline.models import AuditEntry


class AuditAction(StrEnum):
    """What was done; the value is stored, the label shown."""

    IMPORT = "import"
    OVERRIDE_SET = "override_set"
    OVERRIDE_REVOKED = "override_revoked"
    ACKNOWLEDGE = "acknowledge"
    RESEND = "resend"
    USER_ADDED = "user_added"
    USER_DISABLED = "user_disabled"
    USER_ENABLED = "user_enabled"
    PASSWORD_CHANGED = "password_changed"
    PASSWORD_RESET = "password_reset"
    TOKEN_CREATED = "token_created"
    TOKENS_REVOKED = "tokens_revoked"
    LOGIN = "login"
    LOGOUT = "logout"
    LOGIN_FAILED = "login_failed"
    LOGIN_LOCKED = "login_locked"
    CHANGE_APPROVED = "change_approved"
    CHANGE_REJECTED = "change_rejected"

    @property
    def label(self) -> str:
        return ACTION_LABELS[self]


ACTION_LABELS: dict[AuditAction, str] = {
    AuditAction.IMPORT: "导入月报",
    AuditAction.OVERRIDE_SET: "人工调整挂牌",
    AuditAction.OVERRIDE_REVOKED: "撤销人工调整",
    AuditAction.ACKNOWLEDGE: "确认红牌",
    AuditAction.RESEND: "重发消息",
    AuditAction.USER_ADDED: "新建账号",
    AuditAction.USER_DISABLED: "停用账号",
    AuditAction.USER_ENABLED: "启用账号",
    AuditAction.PASSWORD_CHANGED: "修改密码",
    AuditAction.PASSWORD_RESET: "重置密码",
    AuditAction.TOKEN_CREATED: "生成 API 令牌",
    AuditAction.TOKENS_REVOKED: "撤销 API 令牌",
    AuditAction.LOGIN: "登录",
    AuditAction.LOGOUT: "退出登录",
    AuditAction.LOGIN_FAILED: "登录失败",
    AuditAction.LOGIN_LOCKED: "登录锁定",
    AuditAction.CHANGE_APPROVED: "批准变更申请",
    AuditAction.CHANGE_REJECTED: "驳回变更申请",
}
VIA_LABELS = {"web": "网页", "api": "接口", "sso": "单点登录", "cli": "命令行", "system": "系统"}
DETAIL_LABELS = {
    "source": "来源", "batch_id": "批次", "total": "总行数", "accepted": "接收", "duplicates": "重复",
    "rejected": "拒收", "already_received": "此前已导入", "file_error": "整份拒收", "color": "颜色", "reason": "理由",
    "set_by": "调整人", "expires_on": "有效期至", "override_id": "调整编号", "override_ids": "调整编号", "note": "说明",
    "acked_by": "确认人", "acknowledgement_id": "确认编号", "kind": "消息类型", "recipient": "收件人",
    "previous_status": "原状态", "role": "角色", "leader": "包保领导", "unit": "责任单位", "sessions_ended": "结束的登录",
    "label": "备注", "tokens": "令牌数", "scope": "锁定对象", "seconds": "锁定秒数", "context": "场合",
    "change_request_id": "申请编号", "field": "字段", "current": "原值", "proposed": "申请值",
}
VALUE_NAMES = {
    "source": {"file": "文件", "api": "接口"},
    "color": {"red": "红牌", "yellow": "黄牌", "green": "绿牌"},
    "role": {"office": "投资科", "leader": "包保领导", "unit": "责任单位"},
    "kind": {"leader_digest": "领导述职提醒", "office_digest": "投资科汇总", "red_notice": "红牌提醒"},
    "previous_status": {"failed": "发送失败", "skipped": "已跳过"},
    "already_received": {True: "是"},
}


@dataclass(frozen=True)
class Actor:
    """Who acts: a username (or the OS user of a CLI command), by which way, from which address."""

    name: str
    via: str  # web | api | sso | cli | system
    client: str | None = None

    @property
    def described(self) -> str:
        return f"{self.name}（{VIA_LABELS.get(self.via, self.via)}）"


def _entry(actor: Actor, action: AuditAction, now: datetime, target: str | None, detail: dict[str, Any]) -> dict[str, Any]:
    return {"at": now, "actor": actor.name[:100], "via": actor.via,
            "client": (actor.client or None) and actor.client[:100], "action": action.value,
            "target": target[:300] if target else None, "detail": {k: v for k, v in detail.items() if v is not None}}


def record(
    session: Session, actor: Actor, action: AuditAction, *, now: datetime, target: str | None = None,
    **detail: Any,
) -> None:
    """Write one audit row in the caller's transaction."""
    session.execute(insert(AuditEntry).values(_entry(actor, action, now, target, detail)))


def record_each(
    session: Session, actor: Actor, action: AuditAction, *, now: datetime,
    entries: Sequence[tuple[str | None, dict[str, Any]]],
) -> None:
    """Write one audit row per ``(target, detail)`` of one action, in the caller's transaction: the
    rows travel in one bulk write to a temporary table, then one INSERT … SELECT."""
    if not entries:
        return
    import polars as pl

    from pipeline import bulk

    rows = pl.DataFrame({
        "target": [target[:300] if target else None for target, _ in entries],
        "detail": [json.dumps({k: v for k, v in detail.items() if v is not None}, ensure_ascii=False)
                   for _, detail in entries],
    }, schema={"target": pl.Utf8, "detail": pl.Utf8})
    bulk.temp_table(session, "tmp_audit_rows", "target VARCHAR(300), detail TEXT")
    bulk.write_frame(session, "tmp_audit_rows", rows)
    detail = "CAST(t.detail AS JSONB)" if bulk.is_postgres(session) else "t.detail"
    fixed = _entry(actor, action, now, None, {})
    session.execute(bulk.sql(f"""
        INSERT INTO audit_log (at, actor, via, client, action, target, detail)
        SELECT :now, :actor, :via, :client, :action, t.target, {detail} FROM tmp_audit_rows t"""),
        {"now": now, "actor": fixed["actor"], "via": fixed["via"], "client": fixed["client"], "action": fixed["action"]})


@dataclass(frozen=True)
class AuditFilter:
    actor: str | None = None
    action: AuditAction | None = None
    date_from: date | None = None
    date_to: date | None = None  # inclusive


@dataclass(frozen=True)
class AuditPage:
    total: int
    page: int
    per_page: int
    entries: list[AuditEntry]

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


def audit_page(session: Session, f: AuditFilter, *, tz: ZoneInfo, page: int = 1, per_page: int = 50) -> AuditPage:
    """One page of the log, newest first; dates are local days in ``tz``."""
    where = []
    if f.actor:
        where.append(AuditEntry.actor == f.actor.strip())
    if f.action is not None:
        where.append(AuditEntry.action == f.action.value)
    if f.date_from is not None:
        where.append(AuditEntry.at >= datetime.combine(f.date_from, time(), tzinfo=tz))
    if f.date_to is not None:
        where.append(AuditEntry.at < datetime.combine(f.date_to + timedelta(days=1), time(), tzinfo=tz))
    page = max(1, page)
    total = int(session.scalar(select(func.count()).select_from(AuditEntry).where(*where)) or 0)
    entries = list(session.scalars(
        select(AuditEntry).where(*where).order_by(AuditEntry.id.desc()).limit(per_page).offset((page - 1) * per_page)
    ))
    return AuditPage(total, page, per_page, entries)


def describe_detail(detail: dict[str, Any]) -> str:
    """An entry's details in Chinese, e.g. "来源：文件；批次：3；接收：120"."""
    parts = []
    for key, value in detail.items():
        shown = VALUE_NAMES.get(key, {}).get(value, value) if not isinstance(value, (list, dict)) else value
        if isinstance(shown, list):
            shown = "、".join(str(v) for v in shown)
        parts.append(f"{DETAIL_LABELS.get(key, key)}：{shown}")
    return "；".join(parts)


def audit_actors(session: Session) -> list[str]:
    """The actors present in the log (for the filter's choices)."""
    return list(session.scalars(select(AuditEntry.actor).distinct().order_by(AuditEntry.actor)))
