"""What every channel shares: the message it is given, the receipt it returns, the error it raises.

A channel answers one question per send, as Alertmanager's do: delivered (a ``DeliveryReceipt``),
or failed, and is a retry worth it (``DeliveryError.retryable``). Backoff and attempt counting
belong to the outbox, not to the channel.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Protocol

XLSX_MIME = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@dataclass(frozen=True)
class Attachment:
    filename: str
    content: bytes
    mime: str = XLSX_MIME


@dataclass(frozen=True)
class OutgoingMessage:
    """One outbox row, ready to send.

    ``key`` is the outbox's unique key; channels derive their idempotency marks from its digest
    (``key_hash``: the email Message-ID, the webhook Idempotency-Key), so every copy of a message
    carries the same mark and no mark carries the key's text (a robot URL's credentials).
    ``recipient`` is an email address or a webhook URL. ``payload`` is for webhooks: ``title``,
    ``markdown`` (the robots' text; ``text`` is used when absent) and any project fields.
    """

    key: str
    recipient: str
    subject: str
    text: str
    html: str | None = None
    attachments: tuple[Attachment, ...] = ()
    payload: dict[str, Any] = field(default_factory=dict)

    @property
    def key_hash(self) -> str:
        """A short, stable, file- and header-safe digest of ``key``."""
        return hashlib.sha256(self.key.encode("utf-8")).hexdigest()[:32]


@dataclass(frozen=True)
class DeliveryReceipt:
    status_code: int | None  # SMTP reply or HTTP status; None where there is none (a file)
    detail: str
    duration_ms: int


class DeliveryError(Exception):
    """A send failed. ``retryable`` says whether trying again later may succeed.

    The message (Chinese) is stored on the outbox row: it never carries a response body beyond a
    short status line, nor a secret.
    """

    def __init__(self, message: str, retryable: bool, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status_code = status_code


class ChannelConfigError(ValueError):
    """A channel cannot be built as configured (bad URL, unknown format...); the message says why."""


class Channel(Protocol):
    kind: str

    def send(self, message: OutgoingMessage) -> DeliveryReceipt:
        """Deliver ``message`` or raise ``DeliveryError``."""
        ...


def short(text: str, limit: int = 120) -> str:
    """One line of at most ``limit`` characters, for error messages."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"
