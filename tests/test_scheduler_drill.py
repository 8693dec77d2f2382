"""A drill on the moved clock (PIPELINE_NOW): one real `pipeline scheduler` process, started a minute
before the first digest time of 2027 (a year chinese-calendar 1.11 does not cover), plans that
review's digests once the time passes and sends them to a real SMTP server."""

from __future__ import annotations

import email
import shutil
import subprocess
import sys
from datetime import date, datetime, timedelta
from email import policy
from pathlib import Path
from zoneinfo import ZoneInfo

import yaml
from sqlalchemy import select

from pipeline.alerts.calendar import ReviewCalendar, load_review_calendar
from pipeline.alerts.holidays import load_working_calendar, missing_year_notice
from pipeline.alerts.scheduler import SCHEDULING_SINCE
from pipeline.db import make_engine
from pipeline.ingest.export import write_template
from pipeline.models import OutboxMessage, ReviewRun, SystemMeta
from tests.cli_helpers import MovedClock, clean_env, pipeline
from tests.factories import row
from tests.test_alert_faults import LEADERS, OFFICE, REPO_CONFIG, start_smtp, wait_until
from tests.receivers import free_port

SH = ZoneInfo("Asia/Shanghai")


def test_a_scheduler_on_a_moved_clock_sends_the_first_digests_of_2027_at_their_time(tmp_path: Path) -> None:
    config = tmp_path / "config"
    shutil.copytree(REPO_CONFIG, config)
    (config / "recipients.yaml").write_text(yaml.safe_dump({
        "office": {"name": "市发改委投资科", "email": OFFICE}, "leaders": {n: {"email": a} for n, a in LEADERS.items()},
        "units": {}}, allow_unicode=True), encoding="utf-8")
    days = load_working_calendar(config / "holidays.yaml")
    calendar = ReviewCalendar(load_review_calendar(config / "reviews.yaml"), days)
    review = calendar.reviews_in_year(2027)[0]
    send_at = calendar.digest_send_at(review)
    if not days.knows(2027):  # chinese-calendar 1.11 and no notice entered: Monday to Friday
        assert (review, send_at) == (date(2027, 2, 26), datetime(2027, 2, 19, 9, 0, tzinfo=SH))

    sink, controller = start_smtp(free_port())
    env = clean_env(tmp_path / "data", PIPELINE_CONFIG_DIR=str(config), PIPELINE_SMTP_HOST="127.0.0.1",
                    PIPELINE_SMTP_PORT=str(sink.port), PIPELINE_SMTP_SENDER="pipeline@jingzhou.gov.cn")
    rows = [row(n, leader=name, as_of=date(2027, 1, 31), ytd_completed=0) for n, name in enumerate(LEADERS, start=1)]
    imported = pipeline({**env, "PIPELINE_NOW": "2027-02-01T10:00:00+08:00"}, "import",
                        str(write_template(rows, tmp_path / "2027-01.csv")))
    assert imported.returncode == 0, imported.stderr
    db = make_engine(f"sqlite:///{tmp_path / 'data' / 'pipeline.sqlite3'}")
    log = (tmp_path / "scheduler.log").open("wb")
    clock = MovedClock(send_at - timedelta(minutes=1))
    scheduler = subprocess.Popen([sys.executable, "-m", "pipeline", "scheduler", "--tick", "1"],
                                 env=clock.env(env), stdout=log, stderr=subprocess.STDOUT)
    try:
        def digests() -> list[OutboxMessage]:
            with db.connect() as conn:
                return conn.execute(select(OutboxMessage.kind, OutboxMessage.recipient, OutboxMessage.status)
                                    .where(OutboxMessage.review_date == review)).all()

        wait_until(lambda: len(digests()) == len(LEADERS) + 1 and all(d.status == "sent" for d in digests()),
                   timeout=240, what="the digests sent")
    finally:
        scheduler.terminate()
        scheduler.wait(timeout=30)
        controller.stop()
        log.close()
    with db.connect() as conn:
        since = datetime.fromisoformat(conn.scalar(select(SystemMeta.value).where(SystemMeta.key == SCHEDULING_SINCE)))
        [run] = conn.execute(select(ReviewRun.review_date, ReviewRun.status, ReviewRun.recorded_at)).all()
    db.dispose()
    # Scheduling began before the send time, and the review was planned once the clock passed it.
    assert since < send_at
    recorded = run.recorded_at if run.recorded_at.tzinfo else run.recorded_at.replace(tzinfo=SH)
    assert (run.review_date, run.status) == (review, "planned") and recorded >= send_at
    mails = [email.message_from_bytes(m.content, policy=policy.default) for m in sink.messages]
    digest_mails = [m for m in mails if "述职" in m["Subject"]]  # the import's red notices went before
    assert sorted(m["To"] for m in digest_mails) == sorted([*LEADERS.values(), OFFICE])
    assert all(f"{review.year}年{review.month}月{review.day}日" in m["Subject"] for m in digest_mails)
    output = (tmp_path / "scheduler.log").read_text(encoding="utf-8")
    assert f"已生成 {review.isoformat()} 双月述职的提醒" in output
    assert (missing_year_notice(2027) in output) is not days.knows(2027), output
