"""Server-side sessions: logout, a password change and disabling an account end sign-ins at once
(a copied cookie is worth nothing afterwards); disabled users' tokens stop working; sessions lapse
after the idle time and the maximum age; CSRF still guards every form."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest
import time_machine
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from pipeline.db import session_scope
from pipeline.models import AuditEntry, WebSession
from pipeline.runtime import Runtime
from pipeline.web import create_app
from tests.cli_helpers import clean_env, pipeline
from tests.web_support import PASSWORD, bearer, csrf_in, login, running, user

NEW_PASSWORD = "a-brand-new-passphrase"


@pytest.fixture
def rt(tmp_path: Path) -> Iterator[Runtime]:
    with running(tmp_path, as_of=date(2024, 12, 31)) as runtime:
        yield runtime


@pytest.fixture
def app(rt: Runtime) -> FastAPI:
    return create_app(rt)


def browser(app: FastAPI) -> TestClient:
    return TestClient(app)


def cookie_of(client: TestClient) -> str:
    return client.cookies["pipeline_session"]


def replay(app: FastAPI, cookie: str) -> int:
    """The status of an API read by a fresh client carrying only this copied cookie."""
    with TestClient(app, cookies={"pipeline_session": cookie}) as other:
        return other.get("/api/projects").status_code


def test_logout_ends_the_session_even_for_a_copied_cookie(rt: Runtime, app: FastAPI) -> None:
    user(rt, "office", "office")
    with browser(app) as c:
        csrf = login(c, "office")
        copied = cookie_of(c)
        assert replay(app, copied) == 200
        assert c.post("/logout", data={"csrf_token": csrf}, follow_redirects=False).status_code == 303
        assert c.get("/api/projects").status_code == 401
    assert replay(app, copied) == 401  # the stolen cookie died with the logout
    with session_scope(rt.session_factory) as session:
        assert session.scalars(select(WebSession)).all() == []
        assert [e.action for e in session.scalars(select(AuditEntry).order_by(AuditEntry.id))][-2:] == ["login", "logout"]


def test_the_cookie_holds_a_random_id_and_the_database_only_its_hash(rt: Runtime, app: FastAPI) -> None:
    user(rt, "office", "office")
    with browser(app) as c:
        login(c, "office")
        data = json.loads(base64.b64decode(cookie_of(c).split(".")[0] + "=="))
    assert set(data) == {"sid", "csrf"} and len(data["sid"]) >= 40
    with session_scope(rt.session_factory) as session:
        row = session.scalars(select(WebSession)).one()
        assert row.token_sha256 == hashlib.sha256(data["sid"].encode()).hexdigest() != data["sid"]
        assert row.client == "testclient" and row.user_agent


def test_a_password_change_ends_the_users_other_sessions_but_not_this_one(rt: Runtime, app: FastAPI) -> None:
    user(rt, "office", "office")
    user(rt, "other", "office")
    with browser(app) as here, browser(app) as there, browser(app) as someone_else:
        csrf = login(here, "office")
        login(there, "office")
        login(someone_else, "other")
        page = here.get("/account/password")
        assert page.status_code == 200 and "至少 10 个字符" in page.text
        form = {"current": PASSWORD, "new": NEW_PASSWORD, "again": NEW_PASSWORD, "csrf_token": csrf}
        assert here.post("/account/password", data={**form, "csrf_token": "forged"}).status_code == 403
        wrong = here.post("/account/password", data={**form, "current": "not-my-password"})
        assert wrong.status_code == 422 and "当前密码不正确" in wrong.text
        weak = here.post("/account/password", data={**form, "new": "short", "again": "short"})
        assert weak.status_code == 422 and "至少需要 10 个字符" in weak.text
        assert there.get("/api/projects").status_code == 200  # nothing ended by refused changes
        done = here.post("/account/password", data=form)
        assert done.status_code == 200 and "1 个登录已退出" in done.text
        assert here.get("/api/projects").status_code == 200
        assert there.get("/api/projects").status_code == 401
        assert someone_else.get("/api/projects").status_code == 200
    with browser(app) as fresh:
        login(fresh, "office", NEW_PASSWORD)


def test_cli_passwd_ends_every_session_of_the_user(rt: Runtime, app: FastAPI, tmp_path: Path) -> None:
    user(rt, "office", "office")
    with browser(app) as c:
        login(c, "office")
        changed = pipeline(clean_env(tmp_path / "data"), "user", "passwd", "office", "--password", NEW_PASSWORD)
        assert changed.returncode == 0, changed.stderr
        assert "1 个网页登录已退出" in changed.stdout
        assert c.get("/api/projects").status_code == 401


def test_disabling_ends_sessions_and_tokens_at_once_and_enabling_lets_them_back(
        rt: Runtime, app: FastAPI, tmp_path: Path) -> None:
    token = user(rt, "unit-a", "unit", unit="荆州区人民政府")
    user(rt, "office", "office")
    env = clean_env(tmp_path / "data")
    with browser(app) as unit_browser:
        login(unit_browser, "unit-a")
        assert unit_browser.get("/api/projects").status_code == 200
        off = pipeline(env, "user", "disable", "unit-a")
        assert off.returncode == 0 and "1 个网页登录已退出" in off.stdout, off.stderr
        assert unit_browser.get("/api/projects").status_code == 401
        assert unit_browser.get("/api/projects", headers=bearer(token)).status_code == 401
        refused = unit_browser.post("/login", data={"username": "unit-a", "password": PASSWORD,
                                                    "csrf_token": csrf_in(unit_browser.get("/login").text)})
        assert refused.status_code == 401
        listed = pipeline(env, "user", "list")
        assert "停用" in listed.stdout
        on = pipeline(env, "user", "enable", "unit-a")
        assert on.returncode == 0, on.stderr
        assert unit_browser.get("/api/projects", headers=bearer(token)).status_code == 200
        login(unit_browser, "unit-a")
    # the office disables on the web: the unit's browser is signed out at once
    with browser(app) as office, browser(app) as unit_browser:
        csrf = login(office, "office")
        login(unit_browser, "unit-a")
        answer = office.post("/users/unit-a/disable", data={"csrf_token": csrf}, follow_redirects=False)
        assert answer.status_code == 303
        assert "已停用账号 unit-a" in office.get("/users").text
        assert unit_browser.get("/api/projects").status_code == 401
        assert office.get("/api/projects", headers=bearer(token)).status_code == 401
        # an office account cannot disable itself, nor the last office account
        own = office.post("/users/office/disable", data={"csrf_token": csrf})
        assert "不能停用自己" in own.text
        last = pipeline(env, "user", "disable", "office")
        assert last.returncode == 1 and "最后一个启用的投资科账号" in last.stderr


def test_sessions_lapse_after_the_idle_time_and_the_maximum_age(tmp_path: Path) -> None:
    with running(tmp_path, session_idle_seconds=1800, session_max_age=4 * 3600) as rt:
        user(rt, "office", "office")
        app = create_app(rt)
        with time_machine.travel("2025-01-06 09:00 +0800", tick=False) as traveller, browser(app) as c:
            login(c, "office")
            for _ in range(8):  # busy: a request every 29 minutes keeps it alive ...
                traveller.shift(timedelta(minutes=29))
                assert c.get("/api/projects").status_code == 200
            traveller.shift(timedelta(minutes=29))  # ... until 4 hours after sign-in
            assert c.get("/api/projects").status_code == 401
            login(c, "office")
            traveller.shift(timedelta(minutes=31))  # idle past 30 minutes
            assert c.get("/api/projects").status_code == 401


def test_forms_still_need_the_csrf_token_of_the_session(rt: Runtime, app: FastAPI) -> None:
    user(rt, "office", "office")
    with browser(app) as c:
        csrf = login(c, "office")
        assert c.post("/logout", data={"csrf_token": "x" * 43}).status_code == 403
        assert c.post("/users", data={"username": "u1", "role": "office"}).status_code == 403
        assert c.get("/api/projects").status_code == 200  # the refused logout ended nothing
        assert c.post("/logout", data={"csrf_token": csrf}, follow_redirects=False).status_code == 303


def test_guessing_the_current_password_on_the_change_form_is_throttled_like_the_login(tmp_path: Path) -> None:
    with running(tmp_path, login_max_failures=2) as rt:
        user(rt, "office", "office")
        app = create_app(rt)
        with browser(app) as stolen, browser(app) as owner:
            csrf = login(stolen, "office")
            form = {"new": NEW_PASSWORD, "again": NEW_PASSWORD, "csrf_token": csrf}
            first = stolen.post("/account/password", data={**form, "current": "guess-number-1"})
            assert first.status_code == 422 and "当前密码不正确" in first.text and "分钟后再试" not in first.text
            second = stolen.post("/account/password", data={**form, "current": "guess-number-2"})
            assert "登录失败次数过多，请在3分钟后再试" in second.text
            right = stolen.post("/account/password", data={**form, "current": PASSWORD})
            assert right.status_code == 422 and "登录失败次数过多" in right.text  # locked: not even checked
            assert owner.post("/login", data={"username": "office", "password": PASSWORD, "csrf_token": csrf_in(
                owner.get("/login").text)}).status_code == 429
        with session_scope(rt.session_factory) as session:
            contexts = [e.detail.get("context") for e in session.scalars(
                select(AuditEntry).where(AuditEntry.action == "login_failed"))]
        assert contexts == ["修改密码", "修改密码"]
