"""Webhook credentials are masked on every surface that shows the outbox (the 提醒 page, /api/outbox,
`pipeline outbox`), while the stored row keeps the real URL for the sender."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import insert, select

from pipeline.alerts.redact import mask_text, mask_url
from pipeline.db import session_scope
from pipeline.models import OutboxMessage
from pipeline.runtime import Runtime, set_runtime
from pipeline.web import create_app
from tests.cli_helpers import clean_env, pipeline
from tests.conftest import make_runtime
from tests.web_support import bearer, user

WECOM = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa"
DINGTALK = "https://oapi.dingtalk.com/robot/send?access_token=c0ffee1234abcd&timestamp=1700000000000&sign=abc%2Bdef%3D"
GENERIC = "https://hook-user:hook-pass@hooks.example.org/notify?token=tok-SECRET-99&channel=jz"
SECRETS = ("693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa", "c0ffee1234abcd", "abc%2Bdef%3D", "abc+def=", "hook-pass",
           "hook-user", "tok-SECRET-99")


@pytest.mark.parametrize(("url", "shown"), [
    (WECOM, "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=***"),
    (DINGTALK, "https://oapi.dingtalk.com/robot/send?access_token=***&timestamp=1700000000000&sign=***"),
    (GENERIC, "https://***@hooks.example.org/notify?token=***&channel=jz"),
    ("https://example.org/hook?app_secret=s1&Signature=s2&api_key=s3&page=2",
     "https://example.org/hook?app_secret=***&Signature=***&api_key=***&page=2"),
    ("https://example.org/plain/path", "https://example.org/plain/path"),
])
def test_mask_url(url: str, shown: str) -> None:
    assert mask_url(url) == shown


def test_mask_text_masks_urls_inside_messages_and_leaves_addresses_alone() -> None:
    error = f"HTTP 404（{WECOM}），重试无效"
    assert mask_text(error) == "HTTP 404（https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=***），重试无效"
    assert mask_text("leader@example.org") == "leader@example.org"
    assert mask_text(None) is None


@pytest.fixture
def rt(tmp_path: Path) -> Runtime:
    runtime = make_runtime(tmp_path, as_of=date(2024, 12, 31))
    now = runtime.clock.now()
    with session_scope(runtime.session_factory) as session:
        for i, (url, status) in enumerate(((WECOM, "failed"), (DINGTALK, "sent"), (GENERIC, "failed"))):
            session.execute(insert(OutboxMessage).values(
                key=f"red_notice:{i}", kind="red_notice", channel="webhook", recipient=url, recipient_name=None,
                subject=f"【红牌提醒】测试{i}", body_text="…", payload={}, status=status, attempts=1, next_attempt_at=now,
                last_error=f"HTTP 500：{url}" if status == "failed" else None, created_at=now))
    yield runtime
    runtime.dispose()
    set_runtime(None)


def assert_masked(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, secret
    assert "key=***" in text and "access_token=***" in text and "***@hooks.example.org" in text


def test_the_alerts_page_and_the_api_mask_credentials(rt: Runtime) -> None:
    token = user(rt, "office", "office")
    with TestClient(create_app(rt)) as c:
        page = c.get("/alerts", headers=bearer(token))
        api = c.get("/api/outbox", headers=bearer(token))
        failed = c.get("/api/outbox?status=failed", headers=bearer(token))
    assert page.status_code == 200 and api.status_code == 200
    assert_masked(page.text)
    assert_masked(api.text)
    assert {i["recipient"] for i in api.json()["items"]} == {mask_url(WECOM), mask_url(DINGTALK), mask_url(GENERIC)}
    assert all("***" in i["last_error"] for i in failed.json()["items"])
    with session_scope(rt.session_factory) as session:  # the sender still has the real URLs
        assert set(session.scalars(select(OutboxMessage.recipient))) == {WECOM, DINGTALK, GENERIC}


def test_the_cli_masks_credentials(rt: Runtime, tmp_path: Path) -> None:
    env = clean_env(tmp_path / "data", COLUMNS="250")
    table = pipeline(env, "outbox")
    lines = pipeline(env, "outbox", "--json")
    assert table.returncode == 0 and lines.returncode == 0, table.stderr + lines.stderr
    assert_masked(table.stdout)
    assert_masked(lines.stdout)
    rows = [json.loads(line) for line in lines.stdout.splitlines()]
    assert {r["recipient"] for r in rows} == {mask_url(WECOM), mask_url(DINGTALK), mask_url(GENERIC)}
