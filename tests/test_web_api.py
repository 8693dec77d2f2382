"""The HTTP API over the same domain calls as the CLI: updates in, projects, rates, reviews, outbox out."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date, datetime, timezone
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import insert, select

from pipeline.db import session_scope
from pipeline.ingest.export import write_template
from pipeline.models import OutboxMessage, Project, ProjectFlag
from pipeline.rates import compute_rates
from pipeline.runtime import Runtime, set_runtime
from pipeline.web import create_app
from tests.conftest import make_runtime
from tests.factories import code
from tests.rates_oracle import subjects_as_of
from tests.web_support import LEADER_A, UNIT_A, bearer, small_reserve, user


@pytest.fixture
def rt(tmp_path: Path) -> Iterator[Runtime]:
    runtime = make_runtime(tmp_path, as_of=date(2024, 12, 31))
    yield runtime
    runtime.dispose()
    set_runtime(None)


@pytest.fixture
def office(rt: Runtime) -> Iterator[tuple[TestClient, dict[str, str]]]:
    token = user(rt, "office", "office")
    with TestClient(create_app(rt)) as c:
        yield c, bearer(token)


def update(n: int, **fields: object) -> dict[str, object]:
    body: dict[str, object] = {
        "code": code(n), "name": f"测试项目{n}", "county": "荆州区", "nature": "续建", "total_investment": "50,000",
        "annual_plan": 12000, "planned_start": "2023/3/1", "actual_start": "2023-03-01",
        "stats_included_on": "2023年4月15日", "ytd_completed": 11800, "cumulative_completed": 30000,
        "leader": LEADER_A, "unit": UNIT_A, "as_of": "2024-12-31",
    }
    body.update(fields)
    return body


def test_json_updates_land_once_and_are_applied(rt: Runtime, office: tuple[TestClient, dict[str, str]]) -> None:
    c, auth = office
    one = c.post("/api/updates", json=update(1), headers=auth)
    assert one.status_code == 200, one.text
    assert one.json() | {"batch_id": 0} == {"batch_id": 0, "total": 1, "accepted": 1, "duplicates": 0, "rejected": 0,
                                             "already_received": False, "errors": []}
    batch = c.post("/api/updates", json={"updates": [update(1), update(2, county="沙市区", name="乙")]}, headers=auth)
    assert batch.json()["accepted"] == 1 and batch.json()["duplicates"] == 1
    detail = c.get(f"/api/projects/{code(2)}", headers=auth).json()
    assert detail["name"] == "乙" and detail["county"] == "沙市区" and detail["flag"] == "green"
    assert detail["updates"][0]["status"] == "applied" and detail["total_investment"] == 50000
    assert detail["scheme"] == "jingzhou-2024" and [e["kind"] for e in detail["timeline"]] == ["month", "flag"]


def test_some_rows_refused_the_others_land(rt: Runtime, office: tuple[TestClient, dict[str, str]]) -> None:
    c, auth = office
    answer = c.post("/api/updates", json=[update(1), update(2, nature="在建"), update(3)], headers=auth)
    assert answer.status_code == 200
    body = answer.json()
    assert (body["accepted"], body["rejected"]) == (2, 1)
    assert [(e["row"], e["field"]) for e in body["errors"]] == [(2, "建设性质")]
    assert c.get("/api/projects", headers=auth).json()["total"] == 2


def test_an_xlsx_upload_reports_bad_rows_by_row_and_header(rt: Runtime, office: tuple[TestClient, dict[str, str]],
                                                          tmp_path: Path) -> None:
    c, auth = office
    path = write_template([update(1), update(2, county="火星区"), update(3, as_of="2024-02-30")], tmp_path / "月报.xlsx")
    with path.open("rb") as fh:
        answer = c.post("/api/updates", files={"file": ("月报.xlsx", fh, "application/octet-stream")}, headers=auth)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["total"], body["accepted"], body["rejected"]) == (3, 1, 2)
    assert [(e["row"], e["field"]) for e in body["errors"]] == [(3, "县市区"), (4, "报告期")]
    again = c.post("/api/updates", files={"file": ("月报.xlsx", path.read_bytes())}, headers=auth)
    assert again.json()["already_received"] is True
    refused = c.post("/api/updates", files={"file": ("x.xlsx", b"not a workbook")}, headers=auth)
    assert refused.status_code == 422 and "文件被拒收" in refused.json()["detail"]
    wrong_type = c.post("/api/updates", files={"file": ("x.exe", b"MZ")}, headers=auth)
    assert wrong_type.status_code == 415


def test_project_list_filters_sorts_and_pages(rt: Runtime, office: tuple[TestClient, dict[str, str]]) -> None:
    small_reserve(rt)
    c, auth = office
    get = lambda **q: c.get("/api/projects", params=q, headers=auth).json()  # noqa: E731
    assert get()["total"] == 4
    assert [p["code"] for p in get(color="red")["items"]] == [code(1), code(3)]
    assert [p["code"] for p in get(color="红", county="沙市区")["items"]] == [code(3)]
    assert get(leader=LEADER_A)["total"] == 2 and get(leader="无此人")["total"] == 0
    assert get(list="亿元以上项目")["total"] == 4 and get(list="国债和专项债项目")["total"] == 0
    assert get(industry="先进制造业")["total"] == 4
    assert [p["code"] for p in get(q="测试项目2")["items"]] == [code(2)]
    assert [p["code"] for p in get(q=code(3)[:-1] + "3")["items"]] == [code(3)]
    assert get(q="100%")["total"] == 0  # LIKE wildcards are matched literally
    page = get(per_page=3, page=2, sort="code", desc=True)
    assert page["total"] == 4 and [p["code"] for p in page["items"]] == [code(1)]
    assert [p["flag"] for p in get(sort="flag")["items"]] == ["red", "red", "green", "green"]
    red = get(color="red")["items"][0]
    assert red["reasons"][0]["code"] == "START_OVERDUE" and "逾期" in red["reasons"][0]["message"]
    assert red["reasons"][0]["values"]["overdue_days"] == 305
    bad = c.get("/api/projects", params={"color": "purple"}, headers=auth)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "color"


def test_acknowledge_and_override_through_the_api(rt: Runtime, office: tuple[TestClient, dict[str, str]]) -> None:
    small_reserve(rt)
    c, auth = office
    ack = c.post(f"/api/projects/{code(1)}/acknowledge", json={"note": "已约谈责任单位"}, headers=auth)
    assert ack.status_code == 200, ack.text
    detail = c.get(f"/api/projects/{code(1)}", headers=auth).json()
    assert detail["acknowledgements"][0]["note"] == "已约谈责任单位"
    assert any(e["kind"] == "ack" and e["note"] == "已约谈责任单位" for e in detail["timeline"])
    again = c.post(f"/api/projects/{code(1)}/acknowledge", json={"note": "再次"}, headers=auth)
    assert again.status_code == 409 and "已由" in again.json()["detail"]
    green = c.post(f"/api/projects/{code(2)}/acknowledge", json={"note": "x"}, headers=auth)
    assert green.status_code == 409 and "不是红牌" in green.json()["detail"]

    set_ = c.post(f"/api/projects/{code(1)}/override", headers=auth,
                  json={"color": "黄", "reason": "已开工，月报滞后", "expires_on": "2025-01-31"})
    assert set_.status_code == 200 and set_.json()["flag"] == "yellow"
    detail = c.get(f"/api/projects/{code(1)}", headers=auth).json()
    assert (detail["flag"], detail["computed_flag"], detail["overridden"]) == ("yellow", "red", True)
    assert detail["override"]["reason"] == "已开工，月报滞后" and detail["override"]["set_by"] == "office"
    revoked = c.delete(f"/api/projects/{code(1)}/override", headers=auth)
    assert revoked.status_code == 200
    assert c.get(f"/api/projects/{code(1)}", headers=auth).json()["flag"] == "red"
    missing = c.get("/api/projects/2024-421003-44-01-999999", headers=auth)
    assert missing.status_code == 404 and "不存在" in missing.json()["detail"]


def test_rates_are_the_domains_rates(rt: Runtime, office: tuple[TestClient, dict[str, str]]) -> None:
    small_reserve(rt)
    c, auth = office
    answer = c.get("/api/rates", params={"by": "county"}, headers=auth).json()
    with session_scope(rt.session_factory) as session:
        expected = compute_rates(subjects_as_of(session, date(2024, 12, 31)), as_of=date(2024, 12, 31),
                                 by="county")
    assert [{k: g[k] for k in expected[0].to_json()} for g in answer["groups"]] == \
        [json.loads(json.dumps(e.to_json())) for e in expected]
    assert answer["as_of"] == "2024-12-31" and answer["time_progress"] == "100.0%"
    city = c.get("/api/rates", params={"as_of": "2024-06-30"}, headers=auth).json()
    assert city["groups"][0]["group"] == "全市" and city["groups"][0]["display"]["start_rate"] == "—"
    assert c.get("/api/rates", params={"by": "planet"}, headers=auth).status_code == 422


def test_reviews_come_from_the_calendar(office: tuple[TestClient, dict[str, str]]) -> None:
    c, auth = office
    reviews = c.get("/api/reviews", params={"count": 3}, headers=auth).json()
    assert [r["date"] for r in reviews] == ["2024-12-31", "2025-02-28", "2025-04-30"]
    assert reviews[0]["days_left"] == 0 and reviews[1]["days_left"] == 59
    assert reviews[1]["digest_at"].startswith("2025-02-21T09:00:00")


def test_the_outbox_and_resending_a_failed_message(rt: Runtime, office: tuple[TestClient, dict[str, str]]) -> None:
    c, auth = office
    now = datetime(2024, 12, 31, 9, tzinfo=timezone.utc)
    with session_scope(rt.session_factory) as session:
        failed_id = session.scalar(insert(OutboxMessage).values(
            key="k1", kind="red_notice", channel="email", recipient="leader@example.org", recipient_name="王建国",
            subject="红牌提醒", body_text="…", payload={}, status="failed", attempts=8, next_attempt_at=now,
            last_error="SMTP 连接被拒绝", created_at=now,
        ).returning(OutboxMessage.id))
        session.execute(insert(OutboxMessage).values(
            key="k2", kind="leader_digest", channel="email", recipient="b@example.org", subject="述职提醒",
            body_text="…", payload={}, status="sent", attempts=1, next_attempt_at=now, created_at=now, sent_at=now,
        ))
    listed = c.get("/api/outbox", params={"status": "failed"}, headers=auth).json()
    assert listed["total"] == 1 and listed["items"][0]["last_error"] == "SMTP 连接被拒绝"
    assert c.get("/api/outbox", headers=auth).json()["total"] == 2
    answer = c.post(f"/api/outbox/{failed_id}/resend", headers=auth)
    assert answer.status_code == 200, answer.text
    with session_scope(rt.session_factory) as session:
        row = session.get(OutboxMessage, failed_id)
        assert row.status in ("sent", "pending") and row.attempts <= 1  # re-queued, and sent to the .eml folder
    sent = c.post(f"/api/outbox/{failed_id}/resend", headers=auth)
    assert sent.status_code == 409 and "只有发送失败" in sent.json()["detail"]
    assert c.get("/api/outbox", params={"status": "lost"}, headers=auth).status_code == 422


def test_the_alerts_page_says_what_sending_promises(rt: Runtime, office: tuple[TestClient, dict[str, str]]) -> None:
    from pipeline.alerts.outbox import DELIVERY_PROMISE

    c, auth = office
    page = c.get("/alerts", headers=auth)
    assert page.status_code == 200
    assert DELIVERY_PROMISE in page.text and "最长 24 小时" in page.text
    assert "只发一次" not in page.text


def test_health_checks_the_database_and_the_broker(tmp_path: Path) -> None:
    rt = make_runtime(tmp_path, broker_url="redis://127.0.0.1:1/0", secret_key="k" * 40)
    try:
        with TestClient(create_app(rt)) as c:
            answer = c.get("/health")
        assert answer.status_code == 503
        assert answer.json()["database"] == "ok" and answer.json()["broker"].startswith("error")
        assert "127.0.0.1" not in answer.text
    finally:
        rt.dispose()
        set_runtime(None)


def test_openapi_document_and_docs_are_served_locally(office: tuple[TestClient, dict[str, str]]) -> None:
    c, auth = office
    doc = c.get("/api/openapi.json", headers=auth).json()
    assert {"/api/updates", "/api/projects", "/api/projects/{code}", "/api/rates", "/api/reviews", "/api/outbox",
            "/api/projects/{code}/override", "/api/projects/{code}/acknowledge",
            "/api/outbox/{message_id}/resend"} <= set(doc["paths"])
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    page = c.get("/api/docs", headers=auth)
    assert "/static/vendor/swagger-ui/swagger-ui-bundle.js" in page.text and "http" not in page.text.split("<body>")[1]


def test_the_effective_flag_shows_in_the_project_counts(rt: Runtime, office: tuple[TestClient, dict[str, str]]) -> None:
    small_reserve(rt)
    c, auth = office
    with session_scope(rt.session_factory) as session:
        colours = dict(session.execute(select(Project.code, ProjectFlag.effective_color)
                                       .join(ProjectFlag, ProjectFlag.project_id == Project.id)).tuples().all())
    page = c.get("/", headers=auth)
    assert page.status_code == 200
    assert f'<b>{list(colours.values()).count("red")}</b><span>红牌</span>' in page.text


def test_cli_user_add_token_create_and_serve(tmp_path: Path) -> None:
    import socket
    import subprocess
    import sys
    import time

    import httpx

    from tests.cli_helpers import clean_env, pipeline
    from tests.web_support import free_port

    env = clean_env(tmp_path / "data")
    made = pipeline(env, "user", "add", "ma", "--role", "leader", "--leader", "马敏刚", "--password", "long-enough-pw")
    assert made.returncode == 0, made.stderr
    assert "已创建账号 ma" in made.stdout
    generated = pipeline(env, "user", "add", "unit1", "--role", "unit", "--unit", "监利市人民政府")
    assert generated.returncode == 0 and "初始密码" in generated.stdout
    twice = pipeline(env, "user", "add", "ma", "--role", "office", "--password", "long-enough-pw")
    assert twice.returncode == 1 and "用户名已存在" in twice.stderr
    bad = pipeline(env, "user", "add", "x", "--role", "unit", "--password", "long-enough-pw")
    assert bad.returncode == 1 and "--unit" in bad.stderr
    token = pipeline(env, "token", "create", "ma")
    assert token.returncode == 0 and token.stdout.strip().startswith("ppm_")
    listed = pipeline(env, "user", "list")
    assert "马敏刚" in listed.stdout and "包保领导" in listed.stdout

    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "pipeline", "serve", "--host", "127.0.0.1", "--port", str(port)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, server.stdout.read() if server.stdout else ""
                time.sleep(0.2)
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/health").json()["status"] == "ok"
        assert httpx.get(f"{base}/api/projects").status_code == 401
        mine = httpx.get(f"{base}/api/projects", headers=bearer(token.stdout.strip()))
        assert mine.status_code == 200 and mine.json()["total"] == 0
    finally:
        server.terminate()
        server.wait(timeout=20)


def test_overview_rates_follow_imports(rt: Runtime, office: tuple[TestClient, dict[str, str]]) -> None:
    import time

    small_reserve(rt)
    c, auth = office
    first = c.get("/", headers=auth)
    assert first.status_code == 200 and "正在重新计算" not in first.text
    before = c.get("/api/rates", headers=auth).json()["groups"][0]["projects"]
    assert c.post("/api/updates", json=update(7), headers=auth).json()["accepted"] == 1
    # the API answers exactly at once; the page may show the previous figures while they are recomputed
    assert c.get("/api/rates", headers=auth).json()["groups"][0]["projects"] == before + 1
    deadline = time.monotonic() + 20
    while "正在重新计算" in c.get("/", headers=auth).text:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    page = c.get("/", headers=auth).text
    assert "正在重新计算" not in page
    charts = json.loads(page.split('id="chart-data">')[1].split("</script>")[0])
    assert charts["rates"]["groups"] == ["沙市区", "荆州区"]
    assert charts["colors"]["green"] + charts["colors"]["red"] == before + 1
