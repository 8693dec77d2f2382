"""The office's account pages and the audit log: each kind of action, whether made on the web, over
the API or with the CLI, is logged once by the domain with its actor; the log page filters and pages."""

from __future__ import annotations

import getpass
import re
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, insert, select

from pipeline.audit import AuditAction, Actor, record
from pipeline.clock import in_zone
from pipeline.db import session_scope
from pipeline.ingest.export import write_template
from pipeline.models import AuditEntry, ChangeRequest, LoginThrottle, OutboxMessage
from pipeline.runtime import Runtime
from pipeline.web import create_app
from tests.cli_helpers import clean_env, pipeline
from tests.factories import code
from tests.test_web_api import update
from tests.web_support import (
    LEADER_A,
    PASSWORD,
    UNIT_A,
    bearer,
    csrf_in,
    login,
    running,
    small_reserve,
    try_login,
    user,
)

SHOWN_ONCE = re.compile(r'<code class="secret">([^<]+)</code>')


@pytest.fixture
def rt(tmp_path: Path) -> Iterator[Runtime]:
    with running(tmp_path, as_of=date(2024, 12, 31), login_max_failures=2) as runtime:
        yield runtime


def entries(rt: Runtime) -> list[AuditEntry]:
    with session_scope(rt.session_factory) as session:
        found = list(session.scalars(select(AuditEntry).order_by(AuditEntry.id)))
        session.expunge_all()
    return found


def test_the_office_adds_a_leader_with_a_password_shown_once_resets_it_and_the_policy_holds(rt: Runtime) -> None:
    small_reserve(rt)
    user(rt, "office", "office")
    app = create_app(rt)
    with TestClient(app) as office, TestClient(app) as leader:
        csrf = login(office, "office")
        made = office.post("/users", data={"username": "wang", "role": "leader", "scope": LEADER_A,
                                           "display_name": "", "password": "", "csrf_token": csrf})
        assert made.status_code == 200 and "已创建账号 wang（包保领导）" in made.text
        generated = SHOWN_ONCE.search(made.text).group(1)  # type: ignore[union-attr]
        assert len(generated) >= 10 and "只显示这一次" in made.text
        listing = office.get("/users").text
        assert generated not in listing and "wang" in listing and LEADER_A in listing
        login(leader, "wang", generated)
        assert leader.get("/leaders", follow_redirects=False).headers["location"] == "/"  # the leader's home
        assert LEADER_A in leader.get("/").text
        assert {p["code"] for p in leader.get("/api/projects").json()["items"]} == {code(1), code(2)}
        # only the office manages accounts
        assert leader.get("/users").status_code == 403 and leader.get("/audit").status_code == 403
        assert leader.post("/users", data={"username": "x", "role": "office", "csrf_token": csrf_in(
            leader.get("/").text)}).status_code == 403
        # the policy, on the web, in Chinese, naming the rule
        for password, rule in (("12345678", "至少需要 10 个字符"), ("password1234", "过于常见"),
                               ("zhang-unit-2024", "不能包含用户名"), ("zhang-unit", "不能与用户名相同")):
            refused = office.post("/users", data={"username": "zhang-unit", "role": "unit", "scope": UNIT_A,
                                                  "password": password, "csrf_token": csrf})
            assert refused.status_code == 422 and rule in refused.text, (password, refused.text[:300])
        # a reset with a chosen password ends the leader's session; a generated one is shown once
        reset = office.post("/users/wang/password", data={"password": "another-fine-passphrase", "csrf_token": csrf})
        assert reset.status_code == 200 and "1 个登录已退出" in reset.text and not SHOWN_ONCE.search(reset.text)
        assert leader.get("/api/projects").status_code == 401
        login(leader, "wang", "another-fine-passphrase")
        again = office.post("/users/wang/password", data={"password": "", "csrf_token": csrf})
        login(leader, "wang", SHOWN_ONCE.search(again.text).group(1))  # type: ignore[union-attr]
        weak = office.post("/users/wang/password", data={"password": "wang12345678", "csrf_token": csrf})
        assert weak.status_code == 422 and "不能包含用户名" in weak.text


def unit_change_requests(rt: Runtime) -> dict[str, int]:
    """Unit A's update of project 1 naming another leader and county (recorded as its batch would
    be, without an import of its own): the ids of the two change requests, by field."""
    from tests.test_change_requests import progress_only, unit_update

    unit_update(rt, progress_only(1, leader="李四", county="沙市区"))
    with session_scope(rt.session_factory) as session:
        return dict(session.execute(select(ChangeRequest.field, ChangeRequest.id)).tuples().all())


def test_every_kind_of_action_is_audited_once_with_its_actor(rt: Runtime, tmp_path: Path) -> None:
    small_reserve(rt)
    user(rt, "office", "office")
    unit_token = user(rt, "unit-a", "unit", unit=UNIT_A)
    leader_token = user(rt, "leader-a", "leader", leader=LEADER_A)
    now = rt.clock.now()
    with session_scope(rt.session_factory) as session:
        failed_id = session.scalar(insert(OutboxMessage).values(
            key="audit:failed", kind="red_notice", channel="email", recipient="leader@example.org", subject="【红牌提醒】",
            body_text="…", payload={}, status="failed", attempts=8, next_attempt_at=now, created_at=now,
        ).returning(OutboxMessage.id))
    before = len(entries(rt))
    env = clean_env(tmp_path / "data")
    csv = write_template([{"code": code(5), "name": "命令行导入", "county": "荆州区", "nature": "续建",
                           "total_investment": 100, "as_of": "2024-12-31", "unit": UNIT_A}], tmp_path / "cli.csv")
    assert pipeline(env, "import", str(csv)).returncode == 0
    assert pipeline(env, "token", "create", "unit-a").returncode == 0
    assert pipeline(env, "token", "revoke", "leader-a").returncode == 0
    app = create_app(rt)
    with TestClient(app) as office, TestClient(app) as unit_browser, TestClient(app) as api:
        assert try_login(office, "office", "wrong-password-1").status_code == 401
        assert try_login(office, "office", "wrong-password-2").status_code == 429  # failed, and locked
        with session_scope(rt.session_factory) as session:  # let the office in again (as if the lock had passed)
            session.execute(delete(LoginThrottle))
        csrf = login(office, "office")
        xlsx = write_template([{"code": code(6), "name": "网页上传", "county": "荆州区", "nature": "续建",
                                "total_investment": 100, "as_of": "2024-12-31", "unit": UNIT_A}], tmp_path / "web.xlsx")
        uploaded = office.post("/upload", data={"csrf_token": csrf},
                               files={"file": ("web.xlsx", xlsx.read_bytes(), "application/octet-stream")})
        assert uploaded.status_code == 200, uploaded.text[:300]
        sent = api.post("/api/updates", json=update(7), headers=bearer(unit_token))
        assert sent.status_code == 200, sent.text
        assert office.post(f"/projects/{code(3)}/override", data={"color": "green", "reason": "已协调", "expires_on":
                           "2025-01-31", "csrf_token": csrf}, follow_redirects=False).status_code == 303
        assert office.post(f"/projects/{code(3)}/override/revoke", data={"csrf_token": csrf},
                           follow_redirects=False).status_code == 303
        assert api.post(f"/api/projects/{code(1)}/acknowledge", json={"note": "已约谈"},
                        headers=bearer(leader_token)).status_code == 401  # revoked above by the CLI
        ack_token = user(rt, "leader-b", "leader", leader=LEADER_A)
        assert api.post(f"/api/projects/{code(1)}/acknowledge", json={"note": "已约谈"},
                        headers=bearer(ack_token)).status_code == 200
        assert office.post(f"/alerts/{failed_id}/resend", data={"csrf_token": csrf},
                           follow_redirects=False).status_code == 303
        assert office.post("/users", data={"username": "new-unit", "role": "unit", "scope": UNIT_A,
                                           "password": "unit-passphrase-1", "csrf_token": csrf}).status_code == 200
        office.post("/users/new-unit/disable", data={"csrf_token": csrf})
        office.post("/users/new-unit/enable", data={"csrf_token": csrf})
        office.post("/users/new-unit/password", data={"password": "", "csrf_token": csrf})
        held = unit_change_requests(rt)
        assert office.post(f"/changes/{held['leader']}/approve", data={"csrf_token": csrf},
                           follow_redirects=False).status_code == 303
        assert office.post(f"/changes/{held['county']}/reject", data={"note": "以立项为准", "csrf_token": csrf},
                           follow_redirects=False).status_code == 303
        unit_csrf = login(unit_browser, "unit-a")
        assert unit_browser.post("/account/password", data={"current": PASSWORD, "new": "fresh-passphrase-42",
                                                            "again": "fresh-passphrase-42",
                                                            "csrf_token": unit_csrf}).status_code == 200
        unit_browser.post("/logout", data={"csrf_token": unit_csrf})
        log_page = office.get("/audit")
    logged = entries(rt)[before:]
    kinds = {e.action for e in logged}
    assert kinds >= {a.value for a in AuditAction}, {a.value for a in AuditAction} - kinds
    by = {(e.action, e.actor, e.via) for e in logged}
    os_user = getpass.getuser()
    assert ("import", os_user, "cli") in by  # the CLI: the operating-system user
    assert ("import", "office", "web") in by and ("import", "unit-a", "api") in by
    assert ("token_created", os_user, "cli") in by and ("tokens_revoked", os_user, "cli") in by
    assert ("override_set", "office", "web") in by and ("override_revoked", "office", "web") in by
    assert ("acknowledge", "leader-b", "api") in by and ("resend", "office", "web") in by
    assert ("change_approved", "office", "web") in by and ("change_rejected", "office", "web") in by
    assert {("user_added", "office", "web"), ("user_disabled", "office", "web"), ("user_enabled", "office", "web"),
            ("password_reset", "office", "web"), ("password_changed", "unit-a", "web"),
            ("logout", "unit-a", "web")} <= by
    assert [e.action for e in logged].count("import") == 3
    failed_login = next(e for e in logged if e.action == "login_failed")
    assert failed_login.target == "office" and failed_login.client == "testclient"
    locked = next(e for e in logged if e.action == "login_locked")
    assert locked.detail["scope"] == "账号" and locked.detail["seconds"] == 180
    web_import = next(e for e in logged if e.action == "import" and e.via == "web")
    assert web_import.target == "web.xlsx" and web_import.detail["accepted"] == 1 and web_import.client == "testclient"
    # the page shows them in Chinese
    assert log_page.status_code == 200
    for label in ("导入月报", "人工调整挂牌", "撤销人工调整", "确认红牌", "重发消息", "新建账号", "停用账号", "登录失败", "登录锁定",
                  "批准变更申请", "驳回变更申请", "命令行", "网页", "接口"):
        assert label in log_page.text, label


def test_the_audit_page_filters_by_actor_action_and_date_and_pages(rt: Runtime) -> None:
    user(rt, "office", "office")
    tz = rt.settings.tz
    with session_scope(rt.session_factory) as session:
        day = in_zone(session.scalar(select(AuditEntry.at)), tz).date()  # the day the log was written (not "today")
        for i in range(60):
            record(session, Actor("zhao", "web", "10.0.0.1"), AuditAction.LOGIN_FAILED, now=rt.clock.now(),
                   target=f"name{i}")
        record(session, Actor("qian", "cli"), AuditAction.RESEND, now=rt.clock.now(), target="7")
    with TestClient(create_app(rt)) as c:
        login(c, "office")
        first = c.get("/audit")
        assert "共 64 条" in first.text and "第 1 / 2 页" in first.text  # 60 + 1 + 1 + the office's sign-in + adding office
        assert c.get("/audit?page=2").text.count("<tr>") == 64 - 50 + 1  # the header row too
        only = c.get("/audit", params={"actor": "qian"})
        assert "共 1 条" in only.text and "重发消息" in only.text and "name1" not in only.text
        failures = c.get("/audit", params={"action": "login_failed"})
        assert "共 60 条" in failures.text
        both = c.get("/audit", params={"actor": "zhao", "action": "resend"})
        assert "共 0 条" in both.text and "没有符合条件的记录" in both.text
        assert "共 64 条" in c.get("/audit", params={"from": day.isoformat(), "to": day.isoformat()}).text
        assert "共 0 条" in c.get("/audit", params={"from": (day + timedelta(days=1)).isoformat()}).text
        assert "共 0 条" in c.get("/audit", params={"to": (day - timedelta(days=1)).isoformat()}).text
        linked = c.get("/audit", params={"action": "login_failed"}).text
        assert "/audit?action=login_failed&amp;page=2" in linked
