"""Webhook credentials masked wherever a message is shown (the 提醒 page, /api/outbox, `pipeline outbox`).

Robot and webhook URLs carry their credentials in the query (WeCom ``key=``, DingTalk
``access_token=`` and ``sign=``, others ``token=``, ``secret=`` …) or in the userinfo
(``https://user:pass@host/``). What is shown replaces those values with ``***``; the stored outbox
row keeps the real URL, which the sender needs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

from pipeline.models import OutboxMessage

MASK = "***"
# A query parameter is a credential when its name is one of these, or contains one of the fragments.
SECRET_NAMES = frozenset({"key", "sig", "code", "ticket", "session", "sid", "jwt", "hmac"})
SECRET_FRAGMENTS = ("token", "secret", "sign", "pass", "pwd", "key", "auth", "credential", "private")
URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s<>\"'，。；）)]+")


def is_secret_name(name: str) -> bool:
    lowered = name.strip().lower()
    return lowered in SECRET_NAMES or any(fragment in lowered for fragment in SECRET_FRAGMENTS)


def mask_url(url: str) -> str:
    """The URL with credential query values and any userinfo replaced by ***."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    netloc = parts.netloc
    if "@" in netloc:
        netloc = MASK + "@" + netloc.rsplit("@", 1)[1]
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = "&".join(
            f"{quote(name, safe='')}={MASK if is_secret_name(name) else quote(value, safe='')}" for name, value in pairs
        )
    return urlunsplit((parts.scheme, netloc, parts.path, query, MASK if parts.fragment else ""))


def mask_text(text: str | None) -> str | None:
    """Every URL inside a free text (an error message, a recipient) masked as ``mask_url`` does."""
    if text is None:
        return None
    return URL_IN_TEXT.sub(lambda m: mask_url(m.group(0)), text)


@dataclass(frozen=True)
class ShownMessage:
    """An outbox row as it may be shown: the same fields, credentials masked."""

    id: int
    kind: str
    channel: str
    recipient: str
    recipient_name: str | None
    subject: str
    status: str
    attempts: int
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None
    next_attempt_at: datetime


def shown(message: OutboxMessage) -> ShownMessage:
    return ShownMessage(
        id=message.id, kind=message.kind, channel=message.channel, recipient=mask_text(message.recipient) or "",
        recipient_name=mask_text(message.recipient_name), subject=message.subject, status=message.status,
        attempts=message.attempts, last_error=mask_text(message.last_error), created_at=message.created_at,
        sent_at=message.sent_at, next_attempt_at=message.next_attempt_at,
    )
