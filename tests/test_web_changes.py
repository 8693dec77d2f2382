"""变更申请 on the web and in the API: a unit's update holds its master data for the office; the office
approves or rejects on the page (CSRF) and in the API; units and leaders see theirs, read-only."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from pipeline.db import session_scope
from pipeline.models import Leader, Project
from pipeline.runtime import Runtime
from pipeline.web import create_app
from tests.factories import code
from tests.test_web_views import rt  # noqa: F401  (small_reserve on SQLite, as of 2024-12-31)
from tests.web_support import LEADER_A, LEADER_B, UNIT_A, UNIT_B, bearer, login, user


@pytest.fixture
def tokens(rt: Runtime) -> dict[str, dict[str, str]]:
    return {name: bearer(user(rt, name, role, **scope)) for name, role, scope in (
        ("office", "office", {}), ("unit", "unit", {"unit": UNIT_A}), ("unit_b", "unit", {"unit": UNIT_B}),
        ("leader", "leader", {"leader": LEADER_A}), ("leader_b", "leader", {"leader": LEADER_B}))}


def project_of(rt: Runtime, n: int) -> tuple[str, str]:
    with session_scope(rt.session_factory) as s:
        p = s.scalar(select(Project).where(Project.code == code(n)))
        return p.county, s.scalar(select(Leader.name).where(Leader.id == p.leader_id))


def send_update(c: TestClient, auth: dict[str, str], **fields: object) -> None:
    body = {"code": code(2), "as_of": "2024-12-31", "ytd_completed": 1000, "cumulative_completed": 31000, **fields}
    answer = c.post("/api/updates", json=body, headers=auth)
    assert answer.status_code == 200 and answer.json()["accepted"] == 1, answer.text


def held(c: TestClient, auth: dict[str, str], **params: object) -> dict[str, dict[str, object]]:
    answer = c.get("/api/change-requests", params=params, headers=auth)
    assert answer.status_code == 200, answer.text
    return {r["field"]: r for r in answer.json()["items"]}


def test_the_api_holds_a_units_master_data_and_scopes_who_sees_and_decides(
        rt: Runtime, tokens: dict[str, dict[str, str]]) -> None:
    with TestClient(create_app(rt)) as c:
        send_update(c, tokens["unit"])  # progress only: applied, nothing held
        assert held(c, tokens["office"]) == {}
        send_update(c, tokens["unit"], as_of="2025-01-31", leader="李四", county="沙市区")
        assert project_of(rt, 2) == ("荆州区", LEADER_A)
        office = held(c, tokens["office"], status="pending")
        assert set(office) == {"leader", "county"}
        assert (office["leader"]["current"], office["leader"]["proposed"], office["leader"]["unit"]) == (
            LEADER_A, "李四", UNIT_A)
        assert set(held(c, tokens["unit"])) == {"leader", "county"}  # its own
        assert set(held(c, tokens["leader"])) == {"leader", "county"}  # about its project
        assert held(c, tokens["unit_b"]) == {} and held(c, tokens["leader_b"]) == {}

        ids = {"ids": [office["leader"]["id"]]}
        for who in ("unit", "leader"):
            refused = c.post("/api/change-requests/approve", json=ids, headers=tokens[who])
            assert refused.status_code == 403, refused.text
        assert c.post("/api/change-requests/reject", json={**ids, "note": "x"}, headers=tokens["unit"]).status_code == 403
        assert project_of(rt, 2) == ("荆州区", LEADER_A)

        done = c.post("/api/change-requests/approve", json=ids, headers=tokens["office"])
        assert done.status_code == 200, done.text
        assert done.json()["decided"] == ids["ids"] and "已批准" in done.json()["message"]
        assert project_of(rt, 2) == ("荆州区", "李四")
        again = c.post("/api/change-requests/approve", json=ids, headers=tokens["office"]).json()
        assert (again["decided"], again["unchanged"]) == ([], ids["ids"])
        assert c.get("/api/projects", params={"leader": "李四"}, headers=tokens["office"]).json()["total"] == 1

        county = {"ids": [office["county"]["id"]]}
        no_note = c.post("/api/change-requests/reject", json=county, headers=tokens["office"])
        assert no_note.status_code == 409 and "驳回理由" in no_note.json()["detail"]
        rejected = c.post("/api/change-requests/reject", json={**county, "note": "县市区以立项为准"}, headers=tokens["office"])
        assert rejected.status_code == 200 and project_of(rt, 2) == ("荆州区", "李四")
        seen = held(c, tokens["unit"], status="rejected")["county"]
        assert (seen["status"], seen["note"], seen["decided_by"]) == ("rejected", "县市区以立项为准", "office")

        bad = c.get("/api/change-requests", params={"status": "done"}, headers=tokens["office"])
        assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "status"
        for body in ({"ids": [2**63]}, {"ids": []}, {"ids": ["x"]}):
            assert c.post("/api/change-requests/approve", json=body, headers=tokens["office"]).status_code == 422
        missing = c.post("/api/change-requests/approve", json={"ids": [99999]}, headers=tokens["office"])
        assert missing.status_code == 409 and "不存在" in missing.json()["detail"]


def test_a_stale_request_is_refused_by_the_api(rt: Runtime, tokens: dict[str, dict[str, str]]) -> None:
    with TestClient(create_app(rt)) as c:
        send_update(c, tokens["unit"], leader="李四")
        request_id = held(c, tokens["office"])["leader"]["id"]
        office_row = {"code": code(2), "name": "测试项目2", "county": "荆州区", "nature": "续建",
                      "total_investment": 50000, "leader": "赵六", "unit": UNIT_A, "as_of": "2025-01-31"}
        assert c.post("/api/updates", json=office_row, headers=tokens["office"]).json()["accepted"] == 1
        shown = held(c, tokens["office"])["leader"]
        assert shown["stale"] and shown["reserve"] == "赵六"
        refused = c.post("/api/change-requests/approve", json={"ids": [request_id]}, headers=tokens["office"])
        assert refused.status_code == 409 and "已过期" in refused.json()["detail"]
        assert project_of(rt, 2)[1] == "赵六"


def test_the_office_decides_on_the_page_and_a_unit_only_reads(rt: Runtime, tokens: dict[str, dict[str, str]]) -> None:
    with TestClient(create_app(rt)) as api:
        send_update(api, tokens["unit"], leader="李四", county="沙市区")
        ids = {k: v["id"] for k, v in held(api, tokens["office"]).items()}
    with TestClient(create_app(rt)) as office:
        csrf = login(office, "office")
        page = office.get("/changes")
        assert page.status_code == 200
        html = page.text
        assert 'class="badge"' in html and ">2</span>" in html  # the menu's count of pending requests
        assert "包保领导" in html and LEADER_A in html and "李四" in html and UNIT_A in html
        assert f'action="/changes/{ids["leader"]}/approve"' in html
        assert "待审核的变更申请（2 条）" in office.get(f"/projects/{code(2)}").text  # beside the values in force
        assert "待审核的变更申请" not in office.get(f"/projects/{code(1)}").text
        assert "共 0 条" in office.get("/changes", params={"code": code(1)}).text
        assert "共 2 条" in office.get("/changes", params={"code": code(2)}).text
        forged = office.post(f"/changes/{ids['leader']}/approve", data={"csrf_token": "wrong"}, follow_redirects=False)
        assert forged.status_code == 403 and project_of(rt, 2)[1] == LEADER_A
        done = office.post(f"/changes/{ids['leader']}/approve", data={"csrf_token": csrf}, follow_redirects=False)
        assert done.status_code == 303 and project_of(rt, 2)[1] == "李四"
        assert f"已批准变更申请 {ids['leader']}" in office.get(done.headers["location"]).text
        refused = office.post(f"/changes/{ids['county']}/reject", data={"csrf_token": csrf}, follow_redirects=True)
        assert "请填写驳回理由" in refused.text
        office.post(f"/changes/{ids['county']}/reject", data={"csrf_token": csrf, "note": "以立项为准"})
        assert project_of(rt, 2)[0] == "荆州区"
        assert "以立项为准" in office.get("/changes?status=rejected").text
        assert 'class="badge"' not in office.get("/changes").text  # none pending now

    with TestClient(create_app(rt)) as unit:
        csrf = login(unit, "unit")
        html = unit.get("/changes?status=all").text
        assert "待审核的变更申请" not in unit.get(f"/projects/{code(2)}").text  # decided by now
        assert "李四" in html and "以立项为准" in html and "/approve" not in html and "<form method=\"post\" action=\"/changes" not in html
        refused = unit.post(f"/changes/{ids['county']}/approve", data={"csrf_token": csrf}, follow_redirects=False)
        assert refused.status_code == 403
    with TestClient(create_app(rt)) as other:
        login(other, "unit_b")
        assert "李四" not in other.get("/changes?status=all").text
