"""Security of the web workspace: sign-in everywhere, roles and unit scoping, escaping, export
neutralisation, upload limits enforced before reading, Chinese 401/403/422 answers, CSRF."""

from __future__ import annotations

import io
import re
import socket
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from openpyxl import load_workbook
from sqlalchemy import func, select
from starlette.routing import Mount, Route

from pipeline.db import session_scope
from pipeline.models import ImportBatch, StatusUpdate
from pipeline.runtime import Runtime, set_runtime
from pipeline.settings import SettingsError, load_settings
from pipeline.web import create_app
from pipeline.web.security import session_secret
from tests.conftest import make_runtime
from tests.factories import ACTOR, code
from tests.web_support import LEADER_A, PASSWORD, UNIT_A, UNIT_B, bearer, login, serve, small_reserve, user

PUBLIC = {("GET", "/login"), ("POST", "/login"), ("GET", "/health")}
CHINESE = re.compile(r"[\u4e00-\u9fff]")


@pytest.fixture
def rt(tmp_path: Path) -> Iterator[Runtime]:
    runtime = make_runtime(tmp_path, as_of=date(2024, 12, 31), max_upload_bytes=64 * 1024)
    yield runtime
    runtime.dispose()
    set_runtime(None)


@pytest.fixture
def client(rt: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(rt)) as c:
        yield c


def all_routes(routes: list[object]) -> Iterator[object]:
    """Every route of the app, the routers' included ones too (FastAPI may wrap an included router)."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from all_routes(inner.routes)
        else:
            yield route


def test_nothing_but_the_login_page_and_health_without_a_session_or_token(rt: Runtime, client: TestClient) -> None:
    small_reserve(rt)
    checked = 0
    for route in all_routes(client.app.routes):  # type: ignore[attr-defined]
        if isinstance(route, Mount):
            assert route.path == "/static"
            continue
        assert isinstance(route, (APIRoute, Route))
        path = re.sub(r"\{[^}]+\}", lambda m: "1" if "id" in m.group(0) else code(1), route.path)
        for method in sorted(route.methods or ()):
            if method == "HEAD":
                continue
            answer = client.request(method, path, follow_redirects=False)
            checked += 1
            if (method, route.path) in PUBLIC:
                assert answer.status_code in (200, 403), (method, route.path, answer.status_code)
                continue
            if answer.status_code == 303:
                assert answer.headers["location"].startswith("/login"), (method, route.path)
            else:
                assert answer.status_code == 401, (method, route.path, answer.status_code, answer.text)
                assert CHINESE.search(answer.json()["detail"]), (method, route.path)
            assert code(1) not in answer.text
    assert checked >= 25
    # static assets only: no way out of the folder
    assert client.get("/static/../models.py").status_code == 404
    assert client.get("/static/%2e%2e/models.py").status_code == 404
    assert client.get("/static/vendor/echarts/echarts.min.js").status_code == 200
    assert client.get("/health").json()["database"] == "ok"


def test_a_bad_or_revoked_token_is_refused_in_chinese(rt: Runtime, client: TestClient) -> None:
    from pipeline.accounts import revoke_tokens

    token = user(rt, "office", "office")
    assert client.get("/api/projects", headers=bearer(token)).status_code == 200
    for header in ({"Authorization": "Bearer nope"}, {"Authorization": "Basic abc"}):
        answer = client.get("/api/projects", headers=header)
        assert answer.status_code == 401 and CHINESE.search(answer.json()["detail"])
    with session_scope(rt.session_factory) as session:
        revoke_tokens(session, username="office", now=rt.clock.now(), actor=ACTOR)
    assert client.get("/api/projects", headers=bearer(token)).status_code == 401


def test_a_units_token_cannot_read_or_write_another_units_project(rt: Runtime, client: TestClient) -> None:
    small_reserve(rt)
    token = user(rt, "unit-a", "unit", unit=UNIT_A)
    own, other = code(1), code(3)

    listed = client.get("/api/projects", headers=bearer(token)).json()
    assert {p["code"] for p in listed["items"]} == {code(1), code(2)} and listed["total"] == 2
    assert client.get(f"/api/projects/{own}", headers=bearer(token)).status_code == 200
    for answer in (
        client.get(f"/api/projects/{other}", headers=bearer(token)),
        client.get(f"/projects/{other}", headers=bearer(token)),
        client.post(f"/api/projects/{other}/acknowledge", json={"note": "x"}, headers=bearer(token)),
        client.post(f"/api/projects/{other}/override", json={"color": "green", "reason": "x", "expires_on": "2025-01-31"},
                    headers=bearer(token)),
    ):
        assert answer.status_code == 403, answer.text
        assert CHINESE.search(answer.text)

    def update(c: str, unit: str, name: str = "测试项目3") -> dict[str, object]:
        return {"code": c, "name": name, "county": "沙市区", "nature": "续建", "total_investment": 50000,
                "as_of": "2025-01-31", "unit": unit, "annual_plan": 12000, "ytd_completed": 100}

    before = _count(rt, StatusUpdate)
    new_without_unit = {k: v for k, v in update(code(9), UNIT_A, "新项目").items() if k != "unit"}
    for body in ([update(other, UNIT_B)], [update(own, UNIT_A), update(other, UNIT_A)],
                 [update(code(9), UNIT_B, "新项目")], [update(own, UNIT_B)], [new_without_unit]):
        answer = client.post("/api/updates", json=body, headers=bearer(token))
        assert answer.status_code == 403, answer.text
        detail = answer.json()
        assert "其他单位" in detail["detail"]
        assert detail["errors"] and detail["errors"][0]["row"] is not None
    assert _count(rt, StatusUpdate) == before  # refused whole: nothing recorded
    ok = client.post("/api/updates", json=[update(own, UNIT_A)], headers=bearer(token))
    assert ok.status_code == 200 and ok.json()["accepted"] == 1
    # a unit may not see the outbox, the alerts page or the metrics
    assert client.get("/api/outbox", headers=bearer(token)).status_code == 403
    assert client.get("/alerts", headers=bearer(token)).status_code == 403
    assert client.get("/metrics", headers=bearer(token)).status_code == 403


def test_a_leader_sees_only_their_projects_and_may_acknowledge_but_not_override(rt: Runtime, client: TestClient) -> None:
    small_reserve(rt)
    token = user(rt, "leader-a", "leader", leader=LEADER_A)
    listed = client.get("/api/projects", headers=bearer(token)).json()
    assert {p["code"] for p in listed["items"]} == {code(1), code(2)}
    assert client.get(f"/api/projects/{code(3)}", headers=bearer(token)).status_code == 403
    assert client.get("/leaders/李明", headers=bearer(token)).status_code == 403
    assert client.get(f"/leaders/{LEADER_A}", headers=bearer(token)).status_code == 200
    refused = client.post(f"/api/projects/{code(1)}/override", headers=bearer(token),
                          json={"color": "green", "reason": "x", "expires_on": "2025-01-31"})
    assert refused.status_code == 403 and "投资科" in refused.json()["detail"]
    acked = client.post(f"/api/projects/{code(1)}/acknowledge", json={"note": "已约谈"}, headers=bearer(token))
    assert acked.status_code == 200, acked.text
    assert client.post("/api/updates", json={}, headers=bearer(token)).status_code == 403


def test_html_in_a_project_name_shows_as_text(rt: Runtime, client: TestClient) -> None:
    evil = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    small_reserve(rt, evil)
    token = user(rt, "office", "office")
    for path in ("/", "/projects", f"/projects/{code(1)}", f"/leaders/{LEADER_A}", "/projects?q=script"):
        page = client.get(path, headers=bearer(token))
        assert page.status_code == 200, path
        assert "<script>alert" not in page.text and "<img src=x" not in page.text, path
        assert "&lt;script&gt;alert(" in page.text, path
    assert "script-src 'self'" in client.get("/", headers=bearer(token)).headers["content-security-policy"]


def test_exported_cells_starting_with_a_formula_character_are_neutralised(rt: Runtime, client: TestClient) -> None:
    names = ['=HYPERLINK("http://evil","点我")', "+1+2", "-3+4", "@SUM(A1)"]
    small_reserve(rt, *names)
    token = user(rt, "office", "office")
    answer = client.get("/projects/export.xlsx?sort=code", headers=bearer(token))
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/vnd.openxmlformats")
    sheet = load_workbook(io.BytesIO(answer.content)).active
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0][:2] == ("项目代码", "项目名称")
    assert [r[1] for r in rows[1:]] == ["'" + n for n in names]
    for r in rows[1:]:
        for cell in r:
            assert not (isinstance(cell, str) and cell[:1] in "=+-@"), r
    # the export follows the current view's filters
    red = load_workbook(io.BytesIO(client.get("/projects/export.xlsx?color=red&county=沙市区",
                                              headers=bearer(token)).content)).active
    assert [r[0] for r in red.iter_rows(min_row=2, values_only=True)] == [code(3)]


def _raw_request(base: str, head: str, body_chunks: list[bytes] = (), wait: float = 10.0) -> tuple[int, str]:
    """Send a raw HTTP request; return (status, answer text). No answer within ``wait`` raises."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=wait) as sock:
        sock.sendall(head.encode("utf-8"))
        for chunk in body_chunks:
            sock.sendall(chunk)
        data = b""
        while b"\r\n\r\n" not in data:
            more = sock.recv(65536)
            if not more:
                break
            data += more
        try:
            sock.settimeout(1)
            while len(data) < 100000:
                more = sock.recv(65536)
                if not more:
                    break
                data += more
        except OSError:
            pass
    status = int(data.split(b" ", 2)[1])
    return status, data.decode("utf-8", "replace")


def test_uploads_over_the_limit_are_refused_before_they_are_read(rt: Runtime) -> None:
    token = user(rt, "office", "office")
    huge = 50 * 1024 * 1024  # declared, never sent: an answer proves the body was not waited for
    with serve(create_app(rt)) as base:
        for path, ctype in (("/api/updates", "application/json"),
                            ("/api/updates", "multipart/form-data; boundary=x"),
                            ("/upload", "multipart/form-data; boundary=x")):
            head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
                    f"Content-Type: {ctype}\r\nContent-Length: {huge}\r\n\r\n")
            status, text = _raw_request(base, head)  # the body is never sent: only a refusal answers
            assert status == 413, (path, text[:300])
            assert "超过大小限制" in text
        # no Content-Length: streamed, and cut off once past the limit
        head = (f"POST /api/updates HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
                "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"x" * 32768
        chunks = [f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"] * 3
        status, text = _raw_request(base, head, chunks)
        assert status == 413, text[:300]
    assert _count(rt, ImportBatch) == 0


def test_unprocessable_answers_name_the_row_and_the_field(rt: Runtime, client: TestClient) -> None:
    token = user(rt, "office", "office")
    good = {"code": code(1), "name": "甲", "county": "荆州区", "nature": "续建", "total_investment": 100,
            "as_of": "2024-12-31"}
    bad = [{**good, "county": "火星区"}, {**good, "code": code(2), "total_investment": -5, "as_of": "2024-13-45"}]
    answer = client.post("/api/updates", json=bad, headers=bearer(token))
    assert answer.status_code == 422, answer.text
    errors = answer.json()["errors"]
    assert {(e["row"], e["field"]) for e in errors} >= {(1, "县市区"), (2, "总投资（万元）"), (2, "报告期")}
    assert all(CHINESE.search(e["message"]) for e in errors)
    assert "第1行" in answer.json()["detail"]
    query = client.get("/api/projects?page=abc&per_page=5000", headers=bearer(token))
    assert query.status_code == 422
    assert {e["field"] for e in query.json()["errors"]} == {"page", "per_page"}
    assert CHINESE.search(query.json()["detail"])
    body = client.post(f"/api/projects/{code(1)}/override", json={"color": "green"}, headers=bearer(token))
    assert body.status_code == 422 and {e["field"] for e in body.json()["errors"]} == {"reason", "expires_on"}
    not_json = client.post("/api/updates", content=b"{oops", headers={**bearer(token), "Content-Type": "application/json"})
    assert not_json.status_code == 422 and "JSON" in not_json.json()["detail"]


def test_session_sign_in_with_csrf_on_every_form(rt: Runtime, client: TestClient) -> None:
    small_reserve(rt)
    user(rt, "office", "office")
    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    wrong = client.post("/login", data={"username": "office", "password": "wrong-password", "csrf_token": token})
    assert wrong.status_code == 401 and "用户名或密码错误" in wrong.text
    no_csrf = client.post("/login", data={"username": "office", "password": PASSWORD})
    assert no_csrf.status_code == 403 and "CSRF" in no_csrf.text
    csrf = login(client, "office")
    cookie = client.cookies.jar
    assert any(c.name == "pipeline_session" for c in cookie)
    refused = client.post(f"/projects/{code(1)}/acknowledge", data={"note": "已约谈"})
    assert refused.status_code == 403
    refused_api = client.post(f"/api/projects/{code(1)}/acknowledge", json={"note": "已约谈"})
    assert refused_api.status_code == 403 and "CSRF" in refused_api.json()["detail"]
    done = client.post(f"/projects/{code(1)}/acknowledge", data={"note": "已约谈", "csrf_token": csrf},
                       follow_redirects=False)
    assert done.status_code == 303
    assert "已约谈" in client.get(f"/projects/{code(1)}").text
    out = client.post("/logout", data={"csrf_token": csrf}, follow_redirects=False)
    assert out.status_code == 303
    assert client.get("/api/projects").status_code == 401


def test_session_cookie_is_http_only_and_same_site(rt: Runtime, client: TestClient) -> None:
    user(rt, "office", "office")
    page = client.get("/login")
    header = page.headers["set-cookie"].lower()
    assert "httponly" in header and "samesite=lax" in header


def test_a_production_installation_must_set_the_secret_key(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, broker_url="redis://127.0.0.1:6379/0")
    with pytest.raises(SettingsError, match="PIPELINE_SECRET_KEY"):
        session_secret(settings)
    with pytest.raises(SettingsError, match="太短"):
        session_secret(load_settings(data_dir=tmp_path, broker_url="redis://x", secret_key="short"))
    embedded = load_settings(data_dir=tmp_path)
    first = session_secret(embedded)
    assert first == session_secret(embedded) and len(first) >= 32  # generated once, kept in data_dir
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0


def test_metrics_need_the_office(rt: Runtime, client: TestClient) -> None:
    small_reserve(rt)
    token = user(rt, "office", "office")
    answer = client.get("/metrics", headers=bearer(token))
    assert answer.status_code == 200
    for name in ("pipeline_updates", "pipeline_rejected_rows", "pipeline_flags", "pipeline_outbox_messages",
                 "pipeline_batch_apply_seconds", "pipeline_http_request_seconds"):
        assert name in answer.text
    assert 'pipeline_flags{color="red"} 2.0' in answer.text


def _count(rt: Runtime, model: object) -> int:
    with session_scope(rt.session_factory) as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)  # type: ignore[arg-type]
