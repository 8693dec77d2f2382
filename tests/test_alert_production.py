"""Production shape: PostgreSQL, Redis, a real Celery worker and a real SMTP server. A project that
turns red reaches its leader within a minute of the import that made it red, once."""

from __future__ import annotations

import email
import time
from datetime import date
from email import policy
from pathlib import Path

import yaml

from pipeline.ingest.export import write_template
from tests.cli_helpers import clean_env, pipeline
from tests.factories import code, row
from tests.receivers import SmtpSink, free_port
from tests.test_alert_faults import REPO_CONFIG, start_smtp
from tests.test_worker_faults import Workers

LEADER, ADDRESS = "王建国", "wangjianguo@jingzhou.gov.cn"


def red_notices(sink: SmtpSink) -> list[email.message.EmailMessage]:
    found = [email.message_from_bytes(m.content, policy=policy.default) for m in sink.messages]
    return [m for m in found if m["Subject"].startswith("【红牌提醒】")]


def test_a_red_flag_reaches_its_leader_within_a_minute_through_the_workers(
    tmp_path: Path, pg_url: str, redis_url: str,
) -> None:
    import shutil

    config = tmp_path / "config"
    shutil.copytree(REPO_CONFIG, config)
    (config / "recipients.yaml").write_text(yaml.safe_dump(
        {"office": {"name": "市发改委投资科"}, "leaders": {LEADER: {"email": ADDRESS}}, "units": {}},
        allow_unicode=True), encoding="utf-8")
    sink, controller = start_smtp(free_port())
    env = clean_env(tmp_path / "data", PIPELINE_DATABASE_URL=pg_url, PIPELINE_BROKER_URL=redis_url,
                    PIPELINE_CONFIG_DIR=str(config), PIPELINE_AS_OF="2024-06-30",
                    PIPELINE_SMTP_HOST="127.0.0.1", PIPELINE_SMTP_PORT=str(sink.port),
                    PIPELINE_SMTP_SENDER="pipeline@jingzhou.gov.cn", PIPELINE_SECRET_KEY="k" * 40)
    workers = Workers(env, tmp_path)
    try:
        assert pipeline(env, "init").returncode == 0
        workers.start("w1")
        # Project 1 was to start on 2024-03-01 and has not: 121 days overdue on 2024-06-30, red.
        late = row(1, nature="新开工", planned_start=date(2024, 3, 1), actual_start=None, stats_included_on=None,
                   cumulative_completed=0, ytd_completed=0, as_of=date(2024, 6, 30), leader=LEADER)
        on_time = row(2, as_of=date(2024, 6, 30), ytd_completed=6000, leader=LEADER)
        path = write_template([late, on_time], tmp_path / "2024-06.csv")
        started = time.monotonic()
        done = pipeline(env, "import", str(path))
        assert done.returncode == 0, done.stdout + done.stderr
        while time.monotonic() - started < 60 and not red_notices(sink):
            time.sleep(0.3)
        notices = red_notices(sink)
        assert notices, "no red notice within a minute of the import"
        assert [n["To"] for n in notices] == [ADDRESS] and code(1) in notices[0]["Subject"]
        body = notices[0].get_body(preferencelist=("plain",)).get_content()
        assert "逾期" in body and LEADER in body
        # The same file again, and the sweeper's nudge: nothing is sent twice.
        assert pipeline(env, "import", str(path)).returncode == 0
        assert pipeline(env, "sweep").returncode == 0
        time.sleep(5)
        assert len(red_notices(sink)) == 1
    finally:
        workers.stop_all()
        controller.stop()
