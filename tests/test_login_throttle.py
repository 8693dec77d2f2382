"""Login throttling: per account and per client address, a lock that backs off and is capped, reset
by a success, kept in the database (SQLite and PostgreSQL) so that it holds across server processes
and restarts. Times are fixed datetimes passed in, never the wall clock."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from pipeline.audit import AuditAction
from pipeline.db import session_scope
from pipeline.login_sessions import SessionPolicy
from pipeline.login_throttle import ADDRESS, ThrottlePolicy
from pipeline.models import AuditEntry, LoginThrottle, WebSession
from pipeline.runtime import Runtime
from pipeline.sign_in import SignIn, sign_in
from pipeline.web import create_app
from tests.cli_helpers import clean_env, pipeline
from tests.web_support import PASSWORD, running, serve_process, try_login, user

TZ = ZoneInfo("Asia/Shanghai")
T0 = datetime(2025, 1, 6, 9, 0, tzinfo=TZ)
POLICY = ThrottlePolicy(max_failures_account=3, max_failures_address=5, lock=timedelta(minutes=3),
                        max_lock=timedelta(minutes=20), window=timedelta(minutes=15))
WRONG = "not-the-password"


def attempt(rt: Runtime, password: str, at: datetime, *, username: str = "office", client: str = "10.0.0.1") -> SignIn:
    with session_scope(rt.session_factory) as session:
        result = sign_in(session, username=username, password=password, client=client, user_agent="pytest", now=at,
                         tz=TZ, throttle=POLICY, sessions=SessionPolicy())
        session.expunge_all()
    return result


def actions(rt: Runtime) -> list[str]:
    with session_scope(rt.session_factory) as session:
        return list(session.scalars(select(AuditEntry.action).order_by(AuditEntry.id)))


def throttle_rows(rt: Runtime) -> dict[tuple[str, str], int]:
    with session_scope(rt.session_factory) as session:
        return {(r.scope, r.subject): r.failures for r in session.scalars(select(LoginThrottle))}


def test_the_lock_backs_off_is_capped_refuses_the_right_password_and_a_success_resets_it(any_runtime: Runtime) -> None:
    rt = any_runtime
    user(rt, "office", "office")
    for i in range(2):
        assert attempt(rt, WRONG, T0 + timedelta(seconds=i)).locked_seconds == 0
    third = attempt(rt, WRONG, T0 + timedelta(seconds=2))
    assert third.locked_seconds == 180 and third.locked_message == "登录失败次数过多，请在3分钟后再试"
    # locked: the right password is refused too, and each further attempt lengthens the lock, up to the cap
    waits = [attempt(rt, PASSWORD, T0 + timedelta(seconds=3 + i)).locked_seconds for i in range(4)]
    assert waits == [360, 720, 1200, 1200]
    last = T0 + timedelta(seconds=6)
    # a second before the lock ends: still refused, and the lock starts again at the cap
    assert attempt(rt, PASSWORD, last + timedelta(seconds=1199)).locked_seconds == 1200
    signed_in = attempt(rt, PASSWORD, last + timedelta(seconds=1199 + 1200 + 1))
    assert signed_in.started is not None and signed_in.locked_seconds == 0
    assert throttle_rows(rt) == {}  # the success cleared the account's count; the address's was forgotten
    assert actions(rt).count(AuditAction.LOGIN_FAILED) == 3
    assert actions(rt).count(AuditAction.LOGIN_LOCKED) == 1
    assert actions(rt)[-1] == AuditAction.LOGIN


def test_a_success_clears_the_accounts_count_but_not_the_addresss(any_runtime: Runtime) -> None:
    rt = any_runtime
    user(rt, "office", "office")
    attempt(rt, WRONG, T0)
    attempt(rt, WRONG, T0 + timedelta(seconds=1))
    assert attempt(rt, PASSWORD, T0 + timedelta(seconds=2)).started is not None
    # a sprayer holding one valid account cannot reset the address's count by signing in with it
    assert throttle_rows(rt) == {(ADDRESS, "10.0.0.1"): 2}
    assert attempt(rt, WRONG, T0 + timedelta(seconds=3)).locked_seconds == 0  # the account starts from zero


def test_failures_after_a_lock_lock_again_at_once_and_are_forgotten_after_the_window(any_runtime: Runtime) -> None:
    rt = any_runtime
    user(rt, "office", "office")
    for i in range(3):
        attempt(rt, WRONG, T0 + timedelta(seconds=i))
    after_lock = T0 + timedelta(minutes=4)  # the 3-minute lock is over, the count is not forgotten
    assert attempt(rt, WRONG, after_lock).locked_seconds == 360  # the 4th failure: locked again, twice as long
    forgotten = after_lock + timedelta(minutes=6) + POLICY.window + timedelta(seconds=1)
    fresh = attempt(rt, WRONG, forgotten, client="10.0.0.2")
    assert fresh.locked_seconds == 0
    assert throttle_rows(rt) == {("account", "office"): 1, (ADDRESS, "10.0.0.2"): 1}  # old rows deleted


def test_one_address_trying_many_accounts_is_locked_and_unknown_names_count_too(any_runtime: Runtime) -> None:
    rt = any_runtime
    user(rt, "office", "office")
    for i in range(5):  # five different names (none of them real), one wrong try each
        result = attempt(rt, WRONG, T0 + timedelta(seconds=i), username=f"guess{i}", client="192.0.2.7")
    assert result.locked_seconds == 180
    refused = attempt(rt, PASSWORD, T0 + timedelta(seconds=10), client="192.0.2.7")
    assert refused.locked_seconds > 0 and refused.started is None
    elsewhere = attempt(rt, PASSWORD, T0 + timedelta(seconds=11), client="192.0.2.8")
    assert elsewhere.started is not None
    # a name that does not exist is counted and locked like a real one: the answers do not tell them apart
    for i in range(3):
        nobody = attempt(rt, WRONG, T0 + timedelta(seconds=20 + i), username="nobody", client=f"198.51.100.{i}")
    assert nobody.locked_seconds == 180


@pytest.fixture(params=["sqlite", "postgres"])
def served_env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    extra = {"PIPELINE_LOGIN_MAX_FAILURES": "3"}
    if request.param == "postgres":
        extra["PIPELINE_DATABASE_URL"] = request.getfixturevalue("pg_url")
    env = clean_env(tmp_path / "data", **extra)
    made = pipeline(env, "user", "add", "office", "--role", "office", "--password", PASSWORD)
    assert made.returncode == 0, made.stderr
    return env


def test_over_http_the_lock_is_shared_by_two_server_processes_and_survives_a_restart(served_env: dict[str, str]) -> None:
    with serve_process(served_env) as a, serve_process(served_env) as b, \
            httpx.Client(base_url=a) as ca, httpx.Client(base_url=b) as cb:
        assert try_login(ca, "office", WRONG).status_code == 401
        assert try_login(cb, "office", WRONG).status_code == 401
        locked = try_login(ca, "office", WRONG)  # the third failure, counted across both processes
        assert locked.status_code == 429
        assert "登录失败次数过多，请在3分钟后再试" in locked.text
        assert 0 < int(locked.headers["retry-after"]) <= 180
        assert locked.headers["x-frame-options"] == "DENY" and "content-security-policy" in locked.headers
        assert try_login(cb, "office", PASSWORD).status_code == 429  # the right password, on the other process
        assert cb.get("/api/projects").status_code == 401
    with serve_process(served_env) as again, httpx.Client(base_url=again) as c:  # both stopped, one started anew
        after_restart = try_login(c, "office", PASSWORD)
        assert after_restart.status_code == 429, after_restart.text
        assert "分钟后再试" in after_restart.text


def test_thirty_fast_wrong_passwords_then_the_right_one_is_refused(tmp_path: Path) -> None:
    """The attack that was reproduced: 30 wrong passwords in a row, then the right one."""
    with running(tmp_path) as rt:
        user(rt, "office", "office")
        with TestClient(create_app(rt)) as c:
            answers = [try_login(c, "office", f"guess-number-{i}").status_code for i in range(30)]
            assert answers[:4] == [401] * 4 and set(answers[4:]) == {429}
            assert try_login(c, "office", PASSWORD).status_code == 429


@pytest.fixture
def behind_proxy(tmp_path: Path) -> Iterator[Runtime]:
    with running(tmp_path, trusted_proxies="10.0.0.0/8", login_max_failures=100,
                 login_max_failures_per_address=3) as rt:
        user(rt, "office", "office")
        yield rt


@pytest.fixture
def proxied(behind_proxy: Runtime) -> Iterator[Callable[[str], TestClient]]:
    """Test clients of one app, each connecting from the given peer address."""
    app = create_app(behind_proxy)
    clients: list[TestClient] = []

    def client_from(peer: str) -> TestClient:
        c = TestClient(app, client=(peer, 40000))
        clients.append(c)
        return c

    yield client_from
    for c in clients:
        c.close()


def test_behind_a_trusted_proxy_each_forwarded_address_is_counted_by_itself(proxied: Callable[[str], TestClient]) -> None:
    proxy = proxied("10.0.0.5")
    for i in range(3):
        last = try_login(proxy, f"name{i}", WRONG, headers={"X-Forwarded-For": "203.0.113.9"})
    assert last.status_code == 429
    # the same proxy, another client behind it: not locked
    other = try_login(proxy, "office", PASSWORD, headers={"X-Forwarded-For": "203.0.113.10"})
    assert other.status_code == 303
    # a client may prepend anything to the header; the proxy's own entry (the rightmost) is what counts
    spoofed = try_login(proxy, "office", PASSWORD, headers={"X-Forwarded-For": "1.2.3.4, 203.0.113.9"})
    assert spoofed.status_code == 429


def test_a_forwarded_address_from_anyone_else_is_ignored(proxied: Callable[[str], TestClient],
                                                         behind_proxy: Runtime) -> None:
    direct = proxied("192.0.2.50")  # not a trusted proxy: its X-Forwarded-For proves nothing
    for i in range(3):
        last = try_login(direct, f"name{i}", WRONG, headers={"X-Forwarded-For": f"198.51.100.{i}"})
    assert last.status_code == 429
    again = try_login(direct, "office", PASSWORD, headers={"X-Forwarded-For": "198.51.100.99"})
    assert again.status_code == 429  # still the peer's lock
    with session_scope(behind_proxy.session_factory) as session:
        subjects = set(session.scalars(select(LoginThrottle.subject).where(LoginThrottle.scope == ADDRESS)))
        live = session.scalar(select(func.count()).select_from(WebSession))
    assert subjects == {"192.0.2.50"} and live == 0
