"""Senders: claim due outbox rows with a lease, send each through its channel, record the outcome."""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from datetime import timedelta

from pydantic import SecretStr
from sqlalchemy.orm import Session, sessionmaker

from pipeline.alerts.channels import (
    Channel,
    ChannelConfigError,
    DeliveryError,
    EmailChannel,
    OutboxFolderChannel,
    WebhookChannel,
)
from pipeline.alerts.outbox import SENT, Claimed, claim_due, mark_attempt_failed, mark_sent
from pipeline.clock import Clock
from pipeline.db import session_scope
from pipeline.settings import Settings

CLAIM_BATCH = 5  # rows claimed at once: five sends, each bounded by its channel's timeout, fit in a claim


def sender_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class DeliveryReport:
    sent: int = 0
    retrying: int = 0
    failed: int = 0

    @property
    def attempted(self) -> int:
        return self.sent + self.retrying + self.failed


class ChannelResolver:
    """Builds the channel an outbox row names, from the settings (email: SMTP, or .eml files)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._email: Channel | None = None

    def email(self) -> Channel:
        if self._email is None:
            s = self.settings
            if s.smtp_host:
                self._email = EmailChannel(s.smtp_host, s.smtp_port, s.smtp_user, s.smtp_password, s.smtp_security,
                                           s.smtp_sender)
            else:
                self._email = OutboxFolderChannel(s.outbox_dir, sender=s.smtp_sender)
        return self._email

    def for_row(self, claimed: Claimed) -> Channel:
        if claimed.channel == "email":
            return self.email()
        if claimed.channel in ("json", "wecom", "dingtalk"):
            secret = os.environ.get(claimed.secret_env) if claimed.secret_env else None
            if claimed.channel == "json" and secret is None and self.settings.webhook_secret is not None:
                return WebhookChannel(claimed.message.recipient, secret=self.settings.webhook_secret, format="json")
            return WebhookChannel(claimed.message.recipient, secret=SecretStr(secret) if secret else None,
                                  format=claimed.channel)  # type: ignore[arg-type]
        raise ChannelConfigError(f"未知的发送通道：{claimed.channel}")


def deliver_due(
    factory: sessionmaker[Session], *, resolver: ChannelResolver, clock: Clock, max_attempts: int,
    backoff_seconds: int, claim: timedelta = timedelta(minutes=2), owner: str | None = None,
    limit: int = CLAIM_BATCH,
) -> DeliveryReport:
    """Send what is due now, one claimed batch at a time, until nothing is due."""
    me = owner or sender_id()
    sent = retrying = failed = 0
    while True:
        with session_scope(factory) as session:
            claimed = claim_due(session, owner=me, now=clock.now(), lease=claim, limit=limit)
        if not claimed:
            return DeliveryReport(sent, retrying, failed)
        for item in claimed:
            started = time.monotonic()
            try:
                receipt = resolver.for_row(item).send(item.message)
            except (DeliveryError, ChannelConfigError) as exc:
                error = exc if isinstance(exc, DeliveryError) else DeliveryError(str(exc), retryable=False)
                with session_scope(factory) as session:
                    status = mark_attempt_failed(
                        session, item.id, owner=me, error=error, now=clock.now(), max_attempts=max_attempts,
                        backoff_seconds=backoff_seconds, duration_ms=int((time.monotonic() - started) * 1000),
                    )
                if status == "failed":
                    failed += 1
                else:
                    retrying += 1
                continue
            with session_scope(factory) as session:
                if mark_sent(session, item.id, owner=me, receipt=receipt, now=clock.now()):
                    sent += 1


__all__ = ["ChannelResolver", "DeliveryReport", "SENT", "deliver_due", "sender_id"]
