"""The sender: claim one due outbox row, send it through its channel, record the outcome at once.

Delivery is at-least-once (SPEC §6). A copy more can reach a recipient only when the channel's
answer to a send was lost (the connection dropped after the message was handed over, a timeout):
the row is then retried, and every copy carries the same Message-ID or Idempotency-Key. The window
for that is kept small: a sender holds one row at a time, under a claim of its own (never shared,
not even by two threads of one process) that outlasts the longest send the timeouts allow; the
outcome is recorded (the attempt row and the status, one short transaction) before anything else,
so a sender that dies leaves at most its one in-flight message to be sent again.

The database may go away at any moment: claiming waits and tries again until it is back, and a
message sent meanwhile is recorded when it returns (it is never sent again for that).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import SecretStr
from sqlalchemy.orm import Session, sessionmaker

from pipeline.alerts.channels import (
    Channel,
    ChannelConfigError,
    DeliveryError,
    DeliveryReceipt,
    EmailChannel,
    OutboxFolderChannel,
    WebhookChannel,
)
from pipeline.alerts.channels.base import short
from pipeline.alerts.outbox import FAILED, SENT, Claimed, RetryPolicy, claim_next, mark_attempt_failed, mark_sent
from pipeline.clock import Clock
from pipeline.db import session_scope
from pipeline.outage import DatabaseWait
from pipeline.settings import Settings

log = logging.getLogger(__name__)


def claim_owner() -> str:
    """The holder of one claim: host, process and a fresh id, so no two claims ever share it."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def retry_policy(settings: Settings) -> RetryPolicy:
    return RetryPolicy(window=settings.alert_retry_window, first=timedelta(seconds=settings.alert_backoff_seconds),
                       longest=timedelta(seconds=settings.alert_backoff_max_seconds))


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
                                           s.smtp_sender, s.alert_smtp_timeout_seconds,
                                           max_seconds=s.alert_smtp_send_limit_seconds)
            else:
                self._email = (OutboxFolderChannel(s.outbox_dir, sender=s.smtp_sender) if s.smtp_sender
                               else OutboxFolderChannel(s.outbox_dir))
        return self._email

    def for_row(self, claimed: Claimed) -> Channel:
        if claimed.channel == "email":
            return self.email()
        if claimed.channel in ("json", "wecom", "dingtalk"):
            timeout = self.settings.alert_webhook_timeout_seconds
            secret = os.environ.get(claimed.secret_env) if claimed.secret_env else None
            if claimed.channel == "json" and secret is None and self.settings.webhook_secret is not None:
                return WebhookChannel(claimed.message.recipient, secret=self.settings.webhook_secret, format="json",
                                      timeout=timeout)
            return WebhookChannel(claimed.message.recipient, secret=SecretStr(secret) if secret else None,
                                  format=claimed.channel, timeout=timeout)  # type: ignore[arg-type]
        raise ChannelConfigError(f"未知的发送通道：{claimed.channel}")


@dataclass(frozen=True)
class Outcome:
    """What one send came to: a receipt, or an error saying whether a retry is worth it."""

    finished_at: datetime
    duration_ms: int
    receipt: DeliveryReceipt | None = None
    error: DeliveryError | None = None


def send_one(resolver: ChannelResolver, item: Claimed, *, clock: Clock) -> Outcome:
    """Send one claimed message. Never raises: every way a send can end is an outcome to record."""
    started = time.monotonic()
    receipt: DeliveryReceipt | None = None
    error: DeliveryError | None = None
    try:
        receipt = resolver.for_row(item).send(item.message)
    except DeliveryError as exc:
        error = exc
    except ChannelConfigError as exc:
        error = DeliveryError(str(exc), retryable=False)
    except Exception as exc:  # a fault of ours: recorded as the message's error, for the office to see
        log.exception("sending outbox message %s failed unexpectedly", item.id)
        error = DeliveryError(f"发送时出错：{type(exc).__name__} {short(str(exc), 80)}", retryable=False)
    return Outcome(clock.now(), int((time.monotonic() - started) * 1000), receipt, error)


def record(session: Session, item: Claimed, outcome: Outcome, *, retry: RetryPolicy) -> str:
    """The outcome of one send: the attempt row and the message's status. Returns the status."""
    if outcome.receipt is not None:
        mark_sent(session, item.id, receipt=outcome.receipt, now=outcome.finished_at)
        return SENT
    assert outcome.error is not None
    return mark_attempt_failed(session, item.id, owner=item.owner, error=outcome.error, now=outcome.finished_at,
                               retry=retry, duration_ms=outcome.duration_ms)


def deliver_due(
    factory: sessionmaker[Session], *, resolver: ChannelResolver, clock: Clock, retry: RetryPolicy,
    claim: timedelta, wait: DatabaseWait | None = None,
) -> DeliveryReport:
    """Send what is due now, one claimed row at a time, until nothing is due."""
    wait = wait or DatabaseWait()
    sent = retrying = failed = 0

    def take(owner: str) -> Claimed | None:
        with session_scope(factory) as session:
            return claim_next(session, owner=owner, now=clock.now(), lease=claim)

    while True:
        owner = claim_owner()
        item = wait.run("认领待发消息", lambda: take(owner))
        if item is None:
            return DeliveryReport(sent, retrying, failed)
        outcome = send_one(resolver, item, clock=clock)

        def keep(item: Claimed = item, outcome: Outcome = outcome) -> str:
            with session_scope(factory) as session:
                return record(session, item, outcome, retry=retry)

        status = wait.run(f"记录消息 {item.id} 的发送结果", keep)
        if status == SENT:
            sent += 1
        elif status == FAILED:
            failed += 1
        else:
            retrying += 1


class SenderThread(threading.Thread):
    """The embedded sender (``pipeline run``): sends what is due every few seconds, or at once when
    woken; a database outage or an unexpected error is logged and outlived, never the thread's end."""

    def __init__(self, deliver: Callable[[DatabaseWait], object], *, every: float = 2.0) -> None:
        super().__init__(name="outbox-sender", daemon=True)
        self._deliver = deliver
        self._every = every
        self._woken = threading.Event()
        self._stopping = threading.Event()

    def wake(self) -> None:
        self._woken.set()

    def stop(self, timeout: float | None = None) -> None:
        self._stopping.set()
        self._woken.set()
        self.join(timeout)

    def run(self) -> None:
        wait = DatabaseWait(stop=self._stopping)
        while not self._stopping.is_set():
            try:
                self._deliver(wait)
            except Exception:  # DatabaseWait gives up only when stopping; anything else is a fault to log
                if not self._stopping.is_set():
                    log.exception("the outbox sender failed; trying again shortly")
            self._woken.wait(self._every)
            self._woken.clear()


__all__ = [
    "ChannelResolver", "DatabaseWait", "DeliveryReport", "Outcome", "SENT", "SenderThread", "claim_owner",
    "deliver_due", "record", "retry_policy", "send_one",
]
