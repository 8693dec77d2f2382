"""The sender in one process: one row per claim, a claim of its own for every send, the outcome
recorded at once, database outages waited out. Channels here are scripted stand-ins whose sends
block until the test lets them go; the clock is a pinned one the test moves."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from pipeline.alerts.channels import DeliveryError, DeliveryReceipt, OutgoingMessage
from pipeline.alerts.outbox import FAILED, SENDING, SENT, Claimed, PlannedMessage, RetryPolicy, enqueue
from pipeline.alerts.sender import DatabaseWait, SenderThread, deliver_due
from pipeline.db import session_scope
from pipeline.models import DeliveryAttempt, OutboxMessage
from pipeline.runtime import Runtime, set_runtime
from pipeline.settings import SettingsError, load_settings
from tests.conftest import make_runtime
from tests.private_postgres import PrivatePostgres, private_pg  # noqa: F401  (fixture)

SH = ZoneInfo("Asia/Shanghai")
CLAIM = timedelta(minutes=15)
POLICY = RetryPolicy(window=timedelta(hours=24), first=timedelta(seconds=30), longest=timedelta(hours=1),
                     jitter=lambda: 1.0)


class PinnedClock:
    """Stands still until the test moves it."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at

    def today(self):  # noqa: ANN201
        return self.at.date()


@dataclass
class ScriptedChannel:
    """Each send calls ``script(key)``: it may block, raise DeliveryError or return."""

    script: Callable[[str], None] = lambda key: None
    sent: list[str] = field(default_factory=list)
    kind: str = "email"

    def send(self, message: OutgoingMessage) -> DeliveryReceipt:
        self.script(message.key)
        self.sent.append(message.key)
        return DeliveryReceipt(250, "250 OK", 1)


@dataclass
class Resolver:
    channel: ScriptedChannel

    def for_row(self, claimed: Claimed) -> ScriptedChannel:
        return self.channel


def planned(n: int) -> PlannedMessage:
    return PlannedMessage(key=f"red_notice:{n}:email:l{n}@example.org", kind="red_notice", channel="email",
                          recipient=f"l{n}@example.org", subject=f"红牌提醒{n}", body_text="正文")


def rows(rt: Runtime) -> dict[str, OutboxMessage]:
    with session_scope(rt.session_factory) as s:
        return {r.key: r for r in s.scalars(select(OutboxMessage))}


def attempts(rt: Runtime) -> int:
    with session_scope(rt.session_factory) as s:
        return s.scalar(select(func.count()).select_from(DeliveryAttempt)) or 0


def in_thread(work: Callable[[], object]) -> tuple[threading.Thread, list[object]]:
    result: list[object] = []
    thread = threading.Thread(target=lambda: result.append(work()), daemon=True)
    thread.start()
    return thread, result


def test_a_slow_send_holds_only_its_own_row(any_runtime: Runtime) -> None:
    """While one send hangs, another sender sends everything else: a claim covers one send."""
    rt = any_runtime
    clock = PinnedClock(datetime(2024, 6, 21, 9, tzinfo=SH))
    with session_scope(rt.session_factory) as s:
        enqueue(s, [planned(n) for n in range(1, 7)], now=clock.now())
    first_started, release = threading.Event(), threading.Event()

    def hang_on_the_first(key: str) -> None:
        if key == planned(1).key:
            first_started.set()
            assert release.wait(30)

    channel = ScriptedChannel(hang_on_the_first)
    run = lambda: deliver_due(rt.session_factory, resolver=Resolver(channel), clock=clock, retry=POLICY,  # noqa: E731
                              claim=CLAIM)
    slow, slow_report = in_thread(run)
    assert first_started.wait(30)
    other = run()  # a second sender, while the first is stuck on message 1
    assert other.sent == 5
    release.set()
    slow.join(30)
    assert slow_report[0].sent == 1
    assert sorted(channel.sent) == sorted(planned(n).key for n in range(1, 7))  # each once
    assert {r.status for r in rows(rt).values()} == {SENT}


def test_a_lapsed_claim_cannot_touch_the_claim_that_replaced_it(any_runtime: Runtime) -> None:
    """Two threads of one process: the first one's send outlives its claim, the second takes the
    row over; the first one's failure must not hand the row back while the second is sending it."""
    rt = any_runtime
    clock = PinnedClock(datetime(2024, 6, 21, 9, tzinfo=SH))
    with session_scope(rt.session_factory) as s:
        enqueue(s, [planned(1)], now=clock.now())
    calls = 0
    started = [threading.Event(), threading.Event()]
    release = [threading.Event(), threading.Event()]

    def script(key: str) -> None:
        nonlocal calls
        mine, calls = calls, calls + 1
        started[mine].set()
        assert release[mine].wait(30)
        if mine == 0:
            raise DeliveryError("邮件服务器应答超时（60 秒）", retryable=True)

    channel = ScriptedChannel(script)
    run = lambda: deliver_due(rt.session_factory, resolver=Resolver(channel), clock=clock, retry=POLICY,  # noqa: E731
                              claim=CLAIM)
    first, _ = in_thread(run)
    assert started[0].wait(30)
    clock.at += CLAIM + timedelta(seconds=1)  # the first send has outlived its claim
    second, _ = in_thread(run)
    assert started[1].wait(30)
    release[0].set()
    first.join(30)
    row = rows(rt)[planned(1).key]
    assert row.status == SENDING and row.attempts == 0  # still the second thread's
    release[1].set()
    second.join(30)
    row = rows(rt)[planned(1).key]
    assert (row.status, row.attempts, row.last_error) == (SENT, 1, None)
    assert attempts(rt) == 2


def test_an_unexpected_fault_fails_the_message_with_its_error(sqlite_runtime: Runtime) -> None:
    rt = sqlite_runtime
    clock = PinnedClock(datetime(2024, 6, 21, 9, tzinfo=SH))
    with session_scope(rt.session_factory) as s:
        enqueue(s, [planned(1), planned(2)], now=clock.now())

    def script(key: str) -> None:
        if key == planned(1).key:
            raise UnicodeEncodeError("ascii", "张", 0, 1, "ordinal not in range(128)")

    report = deliver_due(rt.session_factory, resolver=Resolver(ScriptedChannel(script)), clock=clock,
                         retry=POLICY, claim=CLAIM)
    assert (report.sent, report.failed) == (1, 1)
    found = rows(rt)
    assert found[planned(1).key].status == FAILED and "UnicodeEncodeError" in found[planned(1).key].last_error
    assert found[planned(2).key].status == SENT


# --- the claim against the timeouts ---------------------------------------------------------------


def test_the_claim_outlasts_the_longest_send(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path)
    assert settings.alert_smtp_timeout_seconds == 60 and settings.alert_send_limit_seconds == 600
    assert settings.alert_claim >= timedelta(seconds=1.25 * 600)
    quick = load_settings(data_dir=tmp_path, alert_smtp_timeout_seconds=2, alert_webhook_timeout_seconds=5)
    assert quick.alert_claim == timedelta(seconds=30)  # 1.5 × max(10 × 2, 3 × 5)
    with pytest.raises(SettingsError, match="PIPELINE_ALERT_CLAIM_SECONDS.*太短.*至少应为 750 秒"):
        load_settings(data_dir=tmp_path, alert_claim_seconds=120)
    assert load_settings(data_dir=tmp_path, alert_claim_seconds=750).alert_claim == timedelta(seconds=750)


def test_the_retired_attempt_limit_is_refused_with_its_replacement(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPELINE_ALERT_MAX_ATTEMPTS", "8")
    with pytest.raises(SettingsError, match="PIPELINE_ALERT_MAX_ATTEMPTS 已不再使用.*PIPELINE_ALERT_RETRY_HOURS"):
        load_settings(data_dir=tmp_path)


# --- database outages ------------------------------------------------------------------------------


@pytest.fixture
def outage_runtime(tmp_path: Path, private_pg: PrivatePostgres) -> Iterator[tuple[Runtime, PrivatePostgres]]:
    rt = make_runtime(tmp_path, database_url=private_pg.url)
    yield rt, private_pg
    rt.dispose()
    set_runtime(None)


def test_a_message_sent_while_the_database_went_away_is_recorded_when_it_returns(
    outage_runtime: tuple[Runtime, PrivatePostgres],
) -> None:
    rt, server = outage_runtime
    clock = PinnedClock(datetime(2024, 6, 21, 9, tzinfo=SH))
    with session_scope(rt.session_factory) as s:
        enqueue(s, [planned(1), planned(2)], now=clock.now())
    back = threading.Timer(3.0, server.start)

    def database_goes_away(key: str) -> None:
        if key == planned(1).key:
            server.stop()  # while the message is with the mail server
            back.start()

    channel = ScriptedChannel(database_goes_away)
    report = deliver_due(rt.session_factory, resolver=Resolver(channel), clock=clock, retry=POLICY, claim=CLAIM,
                         wait=DatabaseWait(first=0.2, longest=1.0))
    back.join()
    assert report.sent == 2 and sorted(channel.sent) == sorted([planned(1).key, planned(2).key])
    found = rows(rt)
    assert [(found[planned(n).key].status, found[planned(n).key].attempts) for n in (1, 2)] == [(SENT, 1)] * 2
    assert attempts(rt) == 2


def test_the_embedded_sender_outlives_a_database_outage(outage_runtime: tuple[Runtime, PrivatePostgres]) -> None:
    rt, server = outage_runtime
    clock = PinnedClock(datetime(2024, 6, 21, 9, tzinfo=SH))
    channel = ScriptedChannel()
    sender = SenderThread(lambda wait: deliver_due(rt.session_factory, resolver=Resolver(channel), clock=clock,
                                                   retry=POLICY, claim=CLAIM, wait=wait), every=0.2)
    sender.start()
    try:
        server.stop()
        sender.wake()
        threading.Event().wait(1.5)  # the sender meets the outage while claiming, more than once
        assert sender.is_alive()
        server.start()
        with session_scope(rt.session_factory) as s:
            enqueue(s, [planned(1)], now=clock.now())
        sender.wake()
        for _ in range(150):
            if channel.sent:
                break
            threading.Event().wait(0.2)
        assert channel.sent == [planned(1).key] and sender.is_alive()
    finally:
        sender.stop(timeout=30)
    assert rows(rt)[planned(1).key].status == SENT
