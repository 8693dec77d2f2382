"""Alerts under faults, with real scheduler processes, the real PostgreSQL, a real SMTP server
(aiosmtpd) and a real HTTP receiver. Every message is planned once and delivered at least once:
a copy more arrives only when the server's answer to a send was lost, one per lost answer, and
every copy carries the message's one Message-ID or Idempotency-Key."""

from __future__ import annotations

import email
import io
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import date, datetime
from email import policy
from pathlib import Path
from zoneinfo import ZoneInfo

import openpyxl
import pytest
import yaml
from aiosmtpd.controller import Controller
from sqlalchemy import select, text

from pipeline.alerts.holidays import WorkingCalendar
from pipeline.db import make_engine, session_scope
from pipeline.ingest.export import write_template
from pipeline.models import Leader, OutboxMessage, Project
from tests.cli_helpers import MovedClock, clean_env, pipeline
from tests.factories import row
from tests.receivers import SmtpSink, free_port, http_receiver  # noqa: F401  (fixture)

SH = ZoneInfo("Asia/Shanghai")
REPO_CONFIG = Path(__file__).resolve().parent.parent / "config"
LEADERS = {"王建国": "wangjianguo@jingzhou.gov.cn", "李明": "liming@jingzhou.gov.cn", "赵红": "zhaohong@jingzhou.gov.cn"}
OFFICE = "touzike@jingzhou.gov.cn"
# The processes' clock (PIPELINE_NOW) starts on a Monday at 10:00; the review is five working days
# on, so its digests are due since 00:00 that day.
START = datetime(2025, 6, 16, 10, 0, tzinfo=SH)
REVIEW = date(2025, 6, 23)


def config_with_review_ahead(folder: Path, *, office_webhook: str | None = None) -> tuple[Path, date]:
    """A config folder whose only review of 2025 is REVIEW, its digest due since 00:00 on START's day."""
    config = folder / "config"
    shutil.copytree(REPO_CONFIG, config)
    review = REVIEW
    assert WorkingCalendar().add_working_days(START.date(), 5) == review
    (config / "reviews.yaml").write_text(yaml.safe_dump({
        "timezone": "Asia/Shanghai", "months": [2, 4, 6, 8, 10, 12], "dates": [review.isoformat()],
        "lead_working_days": 5, "send_time": "00:00",
    }), encoding="utf-8")
    office: dict = {"name": "市发改委投资科", "email": OFFICE}
    if office_webhook:
        office = {"name": "市发改委投资科", "webhooks": [{"url": office_webhook, "format": "json"}]}
    (config / "recipients.yaml").write_text(yaml.safe_dump({
        "office": office, "leaders": {n: {"email": a} for n, a in LEADERS.items()}, "units": {},
    }, allow_unicode=True), encoding="utf-8")
    return config, review


class SchedulerProcs:
    def __init__(self, env: dict[str, str], logs: Path, clock: MovedClock | None = None) -> None:
        self.env, self.logs, self.clock, self.procs = env, logs, clock, []

    def start(self, name: str) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{name}.log").open("ab")
        env = self.clock.env(self.env) if self.clock else self.env
        proc = subprocess.Popen([sys.executable, "-m", "pipeline", "scheduler", "--tick", "1"], env=env,
                                stdout=log, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()


@pytest.fixture
def setup(tmp_path: Path, pg_url: str) -> Iterator[Callable[..., tuple[dict[str, str], SchedulerProcs, int]]]:
    procs: list[SchedulerProcs] = []

    def make(*, office_webhook: str | None = None) -> tuple[dict[str, str], SchedulerProcs, int]:
        config, _ = config_with_review_ahead(tmp_path, office_webhook=office_webhook)
        port = free_port()
        env = clean_env(tmp_path / "data", PIPELINE_DATABASE_URL=pg_url, PIPELINE_CONFIG_DIR=str(config),
                        PIPELINE_SMTP_HOST="127.0.0.1", PIPELINE_SMTP_PORT=str(port),
                        PIPELINE_ALERT_BACKOFF_SECONDS="1", PIPELINE_SCHEDULER_LEASE_SECONDS="3",
                        PIPELINE_ALERT_SMTP_TIMEOUT_SECONDS="1", PIPELINE_ALERT_WEBHOOK_TIMEOUT_SECONDS="1",
                        PIPELINE_SMTP_SENDER="pipeline@jingzhou.gov.cn")
        clock = MovedClock(START)
        rows = [row(n, leader=name, as_of=START.date().replace(day=1), ytd_completed=0)
                for n, name in enumerate(LEADERS, start=1)]
        path = write_template(rows, tmp_path / "reserve.csv")
        done = pipeline(clock.env(env), "import", str(path))
        assert done.returncode == 0, done.stderr
        s = SchedulerProcs(env, tmp_path, clock)
        procs.append(s)
        return env, s, port

    yield make
    for s in procs:
        s.stop()


def start_smtp(port: int) -> tuple[SmtpSink, Controller]:
    sink = SmtpSink(port=port)
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    return sink, controller


def outbox(db_url: str) -> list[OutboxMessage]:
    engine = make_engine(db_url)
    with engine.connect() as conn:
        rows = conn.execute(select(OutboxMessage.kind, OutboxMessage.recipient, OutboxMessage.status,
                                   OutboxMessage.attempts)).all()
    engine.dispose()
    return rows


def wait_until(check: Callable[[], bool], timeout: float = 60, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def digests_sent(db_url: str) -> bool:
    rows = [r for r in outbox(db_url) if r.kind in ("leader_digest", "office_digest")]
    return len(rows) == len(LEADERS) + 1 and all(r.status == "sent" for r in rows)


def assert_each_once(sink: SmtpSink, db_url: str) -> None:
    sent = [r for r in outbox(db_url) if r.status == "sent" and r.kind != "red_notice"]
    digests = [m for m in sink.messages if "述职" in email.message_from_bytes(m.content, policy=policy.default)["Subject"]]
    ids = [email.message_from_bytes(m.content, policy=policy.default)["Message-ID"] for m in digests]
    assert len(ids) == len(set(ids)) == len(sent) == len(LEADERS) + 1
    assert sorted(r for m in digests for r in m.rcpt_tos) == sorted([*LEADERS.values(), OFFICE])


def test_smtp_down_through_the_send_hour_then_back(setup, pg_url: str) -> None:
    env, schedulers, port = setup()
    schedulers.start("s1")
    wait_until(lambda: any(r.attempts >= 1 and r.status == "pending" for r in outbox(pg_url)), what="a failed try")
    sink, controller = start_smtp(port)  # the mail server comes back
    try:
        wait_until(lambda: digests_sent(pg_url), what="every digest sent")
        time.sleep(2)
        assert_each_once(sink, pg_url)
    finally:
        controller.stop()


def test_two_schedulers_at_once_send_no_duplicate(setup, pg_url: str) -> None:
    env, schedulers, port = setup()
    sink, controller = start_smtp(port)
    try:
        schedulers.start("s1")
        schedulers.start("s2")
        wait_until(lambda: digests_sent(pg_url), what="every digest sent")
        time.sleep(3)
        assert_each_once(sink, pg_url)
    finally:
        controller.stop()


def test_scheduler_killed_after_planning_and_restarted(setup, pg_url: str) -> None:
    env, schedulers, port = setup()
    first = schedulers.start("s1")  # the mail server is down: planning happens, sending cannot
    engine = make_engine(pg_url)

    def planned() -> bool:
        with engine.connect() as conn:
            return bool(conn.scalar(text("SELECT count(*) FROM review_runs WHERE status = 'planned'")))

    wait_until(planned, what="the review planned")
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    engine.dispose()
    sink, controller = start_smtp(port)
    try:
        schedulers.start("s2")  # takes the lease once the dead one's lapses
        wait_until(lambda: digests_sent(pg_url), what="every digest sent")
        time.sleep(2)
        assert_each_once(sink, pg_url)
    finally:
        controller.stop()


def send_the_digests(schedulers: SchedulerProcs, port: int, pg_url: str, **faults: object) -> SmtpSink:
    """One scheduler sends the review's digests to a mail server with these faults; returns what it took."""
    sink, controller = start_smtp(port)
    for name, value in faults.items():
        setattr(sink, name, value)
    try:
        schedulers.start("s1")
        wait_until(lambda: digests_sent(pg_url), what="every digest sent")
        time.sleep(2)
    finally:
        controller.stop()
    return sink


def test_a_webhook_answering_500_then_200_gets_one_delivery(setup, pg_url: str, http_receiver) -> None:
    http_receiver.answer(500, 200)
    env, schedulers, port = setup(office_webhook=http_receiver.url)
    send_the_digests(schedulers, port, pg_url)
    hooks = [r for r in http_receiver.requests if r.method == "POST"]
    assert [r.headers["idempotency-key"] for r in hooks] == [hooks[0].headers["idempotency-key"]] * 2
    office = [r for r in outbox(pg_url) if r.kind == "office_digest"]
    assert [(r.status, r.attempts) for r in office] == [("sent", 2)]


def digest_copies(sink: SmtpSink) -> Counter[str]:
    return Counter(m.message_id for m in sink.messages
                   if "述职" in email.message_from_bytes(m.content, policy=policy.default)["Subject"])


@pytest.mark.parametrize("lose_by", ["drop", "late"])
def test_an_answer_lost_after_the_server_took_the_message_costs_one_copy(setup, pg_url: str, lose_by: str) -> None:
    """The server keeps each message but its first answer is lost: the connection drops instead of
    the 250, or the 250 comes after the client's timeout (1 s here)."""
    env, schedulers, port = setup()
    sink = send_the_digests(schedulers, port, pg_url, lose_answers=1, lose_by=lose_by, late_seconds=3.0)
    copies = digest_copies(sink)
    assert len(copies) == len(LEADERS) + 1  # one Message-ID per message: every copy of it carries it
    assert set(copies.values()) == {2}  # the lost answer's copy and the one answered: no more
    rows = [r for r in outbox(pg_url) if r.kind != "red_notice"]
    assert {(r.status, r.attempts) for r in rows} == {("sent", 2)}


def test_a_webhook_answering_after_the_timeout_gets_one_more_copy_with_the_same_opaque_key(
    setup, pg_url: str, http_receiver,
) -> None:
    http_receiver.late_answers, http_receiver.late_seconds = 1, 3.0
    url = f"{http_receiver.url}?access_token=robot-t0ken-9f3e"
    env, schedulers, port = setup(office_webhook=url)
    send_the_digests(schedulers, port, pg_url)
    hooks = [r for r in http_receiver.requests if r.method == "POST"]
    keys = {r.headers["idempotency-key"] for r in hooks}
    assert len(hooks) == 2 and len(keys) == 1
    [key] = keys
    assert "robot-t0ken-9f3e" not in key and "access_token" not in key and "127.0.0.1" not in key
    office = [r for r in outbox(pg_url) if r.kind == "office_digest"]
    assert [(r.status, r.attempts) for r in office] == [("sent", 2)]


def test_alerts_digest_twice_sends_once(tmp_path: Path) -> None:
    sink, controller = start_smtp(free_port())
    try:
        env = clean_env(tmp_path / "data", PIPELINE_SMTP_HOST="127.0.0.1", PIPELINE_SMTP_PORT=str(sink.port),
                        PIPELINE_SMTP_SENDER="pipeline@jingzhou.gov.cn")
        assert pipeline(env, "demo").returncode == 0
        before = len(sink.messages)  # red notices from loading the demo
        first = pipeline(env, "alerts", "digest", "--review", "2024-06-28")
        assert first.returncode == 0, first.stderr
        after_first = len(sink.messages)
        second = pipeline(env, "alerts", "digest", "--review", "2024-06-28")
        assert second.returncode == 0 and len(sink.messages) == after_first
        assert "新生成 0 条" in second.stdout
    finally:
        controller.stop()
    mails = [(m.rcpt_tos, email.message_from_bytes(m.content, policy=policy.default)) for m in sink.messages[before:]]
    digests = [(to, m) for to, m in mails if "述职" in m["Subject"]]
    leader_mails = [(to, m) for to, m in digests if "同志" in m["Subject"]]
    assert len(leader_mails) == 30 and len(digests) == 31  # one per leader, plus the office digest
    # Each leader's mail reaches that leader, in Chinese, with a workbook of exactly his red and
    # yellow projects as of the review's digest day (2024-06-21), as the re-flag's evaluation judges them.
    from pipeline.reflag import evaluate_scope
    from pipeline.runtime import Runtime
    from pipeline.settings import load_settings
    from pipeline.snapshot import Scope

    rt = Runtime(load_settings(data_dir=tmp_path / "data"))
    with session_scope(rt.session_factory) as s:
        judged = evaluate_scope(s, Scope(), date(2024, 6, 21), scheme=rt.scheme)
        red_or_yellow = set(judged.filter(judged["color"] != "green")["project_id"].to_list())
        owners = s.execute(select(Leader.email, Leader.name, Project.id, Project.code)
                           .join(Project, Project.leader_id == Leader.id)).all()
        flagged = [(e, n, c) for e, n, pid, c in owners if pid in red_or_yellow]
        leaders = dict(s.execute(select(Leader.email, Leader.name)).tuples().all())
    rt.dispose()
    for to, mail in leader_mails:
        [address] = to
        assert mail["To"] == address and leaders[address] in mail["Subject"]
        body = mail.get_body(preferencelist=("plain",)).get_content()
        assert "2024年6月28日召开双月述职会议" in body and "开工率" in body
        # the README's example: one review, described as of its digest day, compared with the previous one's
        assert "以下是您包保项目截至2024年6月21日的挂牌情况" in body
        assert "2024年12月31日" not in body and "2024-12-31" not in body
        assert "与上次述职（2024年4月30日，挂牌截至2024年4月24日）相比" in body
        [attachment] = [part for part in mail.iter_attachments() if part.get_filename().endswith(".xlsx")]
        book = openpyxl.load_workbook(io.BytesIO(attachment.get_content()))
        codes = sorted(r[0] for r in book["红黄牌项目"].iter_rows(min_row=2, values_only=True) if r[0])
        assert codes == sorted(c for e, _, c in flagged if e == address)


def test_two_schedulers_across_a_planning_slower_than_the_lease_plan_once(setup, pg_url: str) -> None:
    """The planning of the review is held up (a lock on review_runs) for several lease lengths: the
    holder's heartbeat keeps the lease, so the standby never starts planning the same review."""
    env, schedulers, port = setup()
    engine = make_engine(pg_url)

    def planners_waiting() -> int:  # schedulers stopped inside their planning, on any lock
        with engine.connect() as conn:
            return int(conn.scalar(text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'")))

    blocker = engine.connect()
    tx = blocker.begin()
    blocker.execute(text("LOCK TABLE review_runs IN ACCESS EXCLUSIVE MODE"))
    sink, controller = start_smtp(port)
    try:
        schedulers.start("s1")
        wait_until(lambda: planners_waiting() == 1, what="the first scheduler planning")
        schedulers.start("s2")
        deadline = time.monotonic() + 12  # four lease lengths (3 s): without renewal s2 plans too
        while time.monotonic() < deadline:
            assert planners_waiting() == 1
            time.sleep(0.3)
        tx.rollback()
        blocker.close()
        wait_until(lambda: digests_sent(pg_url), what="every digest sent")
        time.sleep(2)
        assert_each_once(sink, pg_url)
    finally:
        if tx.is_active:
            tx.rollback()
        blocker.close()
        controller.stop()
        engine.dispose()
    logs = "".join((schedulers.logs / f"{name}.log").read_text(encoding="utf-8") for name in ("s1", "s2"))
    assert logs.count("已生成 2025-06-23 双月述职的提醒") == 1 and "出错" not in logs, logs
