"""Security headers on every response (a forced 500, 404s, 429, static files, redirects), HSTS only
over https, and the SSO user header believed only from a configured proxy address."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from pipeline.runtime import Runtime
from pipeline.settings import SettingsError, load_settings
from pipeline.web import create_app
from tests.cli_helpers import clean_env, pipeline
from tests.web_support import PASSWORD, bearer, running, serve, try_login, user

EXPECTED = {
    "content-security-policy": "frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
    "permissions-policy": "camera=()",
}


def assert_secured(answer: httpx.Response) -> None:
    for name, part in EXPECTED.items():
        assert part in answer.headers.get(name, ""), (answer.request.url, answer.status_code, name, dict(answer.headers))


@pytest.fixture
def rt(tmp_path: Path) -> Iterator[Runtime]:
    with running(tmp_path, as_of=date(2024, 12, 31), login_max_failures=1) as runtime:
        yield runtime


def app_with_a_fault(rt: Runtime) -> FastAPI:
    app = create_app(rt)

    def boom() -> None:
        raise RuntimeError("forced fault")

    app.add_api_route("/api/boom", boom)
    app.add_api_route("/boom", boom)
    return app


def test_every_kind_of_answer_carries_the_headers(rt: Runtime) -> None:
    token = user(rt, "office", "office")
    with TestClient(app_with_a_fault(rt), raise_server_exceptions=False) as c:
        api_500 = c.get("/api/boom", headers=bearer(token))
        assert api_500.status_code == 500 and "服务器内部错误" in api_500.json()["detail"]
        page_500 = c.get("/boom", headers=bearer(token))
        assert page_500.status_code == 500 and "服务器内部错误" in page_500.text and "forced fault" not in page_500.text
        answers = [
            api_500, page_500,
            c.get("/api/projects/2024-421003-44-01-999999", headers=bearer(token)),  # API 404
            c.get("/no-such-page", headers=bearer(token)),  # page 404
            c.get("/static/no-such-file.js"),  # static 404
            c.get("/static/css/app.css"),  # a static file
            c.get("/projects", follow_redirects=False),  # 303 to the login page
            c.get("/api/projects"),  # 401
            c.get("/login"),
            try_login(c, "office", "wrong-password-here"),  # locked at the first failure here: 429
        ]
    assert [a.status_code for a in answers] == [500, 500, 404, 404, 404, 200, 303, 401, 200, 429]
    for answer in answers:
        assert_secured(answer)
        assert "strict-transport-security" not in answer.headers  # plain http
    assert answers[5].headers.get("cache-control") != "no-store"  # static files may be cached
    assert answers[2].headers["cache-control"] == "no-store"


def test_a_500_over_real_http_carries_the_headers(rt: Runtime) -> None:
    token = user(rt, "office", "office")
    with serve(app_with_a_fault(rt)) as base:
        answer = httpx.get(f"{base}/api/boom", headers=bearer(token))
        missing = httpx.get(f"{base}/api/nothing-here", headers=bearer(token))
    assert answer.status_code == 500 and missing.status_code == 404
    assert_secured(answer)
    assert_secured(missing)


def test_hsts_only_over_https_directly_or_as_a_trusted_proxy_says(tmp_path: Path) -> None:
    with running(tmp_path, trusted_proxies="10.0.0.0/8") as rt:
        app = create_app(rt)
        with TestClient(app, base_url="https://testserver") as tls:
            assert tls.get("/login").headers["strict-transport-security"] == "max-age=31536000"
        with TestClient(app, client=("10.0.0.9", 5000)) as proxy:
            assert proxy.get("/login", headers={"X-Forwarded-Proto": "https"}).headers[
                "strict-transport-security"] == "max-age=31536000"
            assert "strict-transport-security" not in proxy.get("/login").headers
        with TestClient(app, client=("192.0.2.1", 5000)) as direct:  # anyone else's X-Forwarded-Proto is ignored
            assert "strict-transport-security" not in direct.get("/login", headers={"X-Forwarded-Proto": "https"}).headers


@pytest.fixture
def sso(tmp_path: Path) -> Iterator[Runtime]:
    with running(tmp_path, as_of=date(2024, 12, 31), trusted_user_header="X-Remote-User",
                 trusted_proxies="10.0.0.0/8, 192.168.1.1") as runtime:
        user(runtime, "office", "office")
        yield runtime


def test_the_sso_header_is_accepted_from_a_trusted_proxy_only(sso: Runtime, caplog: pytest.LogCaptureFixture) -> None:
    app = create_app(sso)
    with TestClient(app, client=("10.1.2.3", 5000)) as proxy, TestClient(app, client=("192.168.1.1", 5000)) as other:
        assert proxy.get("/api/projects", headers={"X-Remote-User": "office"}).status_code == 200
        assert other.get("/api/projects", headers={"X-Remote-User": "office"}).status_code == 200
        unknown = proxy.get("/api/projects", headers={"X-Remote-User": "nobody"})
        assert unknown.status_code == 401 and "nobody" in unknown.json()["detail"]
    with caplog.at_level(logging.WARNING, logger="pipeline.web.security"), \
            TestClient(app, client=("192.168.1.2", 5000)) as outsider:
        refused = outsider.get("/api/projects", headers={"X-Remote-User": "office"})
        assert refused.status_code == 401
        page = outsider.get("/", headers={"X-Remote-User": "office"}, follow_redirects=False)
        assert page.status_code == 303 and page.headers["location"].startswith("/login")
        # a spoofed X-Forwarded-For does not make a client a proxy
        spoofed = outsider.get("/api/projects", headers={"X-Remote-User": "office", "X-Forwarded-For": "10.0.0.1"})
        assert spoofed.status_code == 401
    assert any("ignored the SSO header X-Remote-User" in r.getMessage() and "192.168.1.2" in r.getMessage()
               for r in caplog.records)


def test_the_sso_header_over_real_http(tmp_path: Path) -> None:
    for proxies, expected in (("127.0.0.1", 200), ("10.0.0.0/8", 401)):
        with running(tmp_path / proxies.replace("/", "_"), trusted_user_header="X-Remote-User",
                     trusted_proxies=proxies) as rt:
            user(rt, "office", "office")
            with serve(create_app(rt)) as base:
                answer = httpx.get(f"{base}/api/projects", headers={"X-Remote-User": "office"})
        assert answer.status_code == expected, (proxies, answer.text)


def test_proxies_are_validated_at_start_up(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="PIPELINE_TRUSTED_PROXIES.*10.0.0.300"):
        load_settings(data_dir=tmp_path, trusted_proxies="10.0.0.1, 10.0.0.300")
    with pytest.raises(SettingsError, match="未设置 PIPELINE_TRUSTED_PROXIES"):
        load_settings(data_dir=tmp_path, trusted_user_header="X-Remote-User")
    served = pipeline(clean_env(tmp_path / "data", PIPELINE_TRUSTED_PROXIES="proxy.example.org"), "serve")
    assert served.returncode == 3 and "PIPELINE_TRUSTED_PROXIES" in served.stderr and "配置错误" in served.stderr
    ok = load_settings(data_dir=tmp_path, trusted_proxies="10.0.0.0/8 ::1,192.168.0.1")
    assert [str(n) for n in ok.trusted_proxies] == ["10.0.0.0/8", "::1/128", "192.168.0.1/32"]


def test_a_session_user_is_still_signed_in_through_the_form_when_sso_is_configured(sso: Runtime) -> None:
    with TestClient(create_app(sso), client=("192.0.2.9", 5000)) as c:
        assert try_login(c, "office", PASSWORD).status_code == 303
        assert c.get("/api/projects", headers={"X-Remote-User": "someone-else"}).status_code == 200
