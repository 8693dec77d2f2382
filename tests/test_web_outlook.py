"""The forecast on the web (SPEC §10): the API scoped as every read is, the office's 预警 page and
the section on a leader's home; and the office's 方案试算 page."""

from __future__ import annotations

import html
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from pipeline.db import session_scope
from pipeline.ingest.record import record_batch
from pipeline.rules import SchemeError, load_scheme
from pipeline.runtime import Runtime, set_runtime
from pipeline.tasks.dispatch import apply_inline
from pipeline.web import create_app
from tests.conftest import make_runtime
from tests.factories import code, row
from tests.test_data_path import state
from tests.test_web_views import client  # noqa: F401  (a TestClient of this module's ``rt``)
from tests.web_support import LEADER_A, LEADER_B, UNIT_A, UNIT_B, bearer, login, small_reserve, user

D = date(2024, 12, 31)


@pytest.fixture
def rt(tmp_path: Path) -> Iterator[Runtime]:
    """The small reserve (1 and 3 red already) and two projects planned to start on 2024-12-30:
    one day late now (yellow), yellow again at the end of January, so red on 2025-02-28."""
    runtime = make_runtime(tmp_path, as_of=D)
    small_reserve(runtime)
    late = {"nature": "新开工", "planned_start": date(2024, 12, 30), "actual_start": None, "stats_included_on": None,
            "ytd_completed": Decimal(0), "cumulative_completed": Decimal(0), "as_of": D}
    rows = [row(5, name="将转红甲", unit=UNIT_A, leader=LEADER_A, **late),
            row(6, name="将转红乙", county="沙市区", unit=UNIT_B, leader=LEADER_B, **late)]
    with session_scope(runtime.session_factory) as session:
        batch = record_batch(session, source="file", filename="t.xlsx", content_sha256=None, total_rows=len(rows),
                             rows=rows, errors=[], clock=runtime.clock).batch_id
    apply_inline(runtime, [batch])
    yield runtime
    runtime.dispose()
    set_runtime(None)


def forecast_codes(client: TestClient, token: str, **params: str) -> list[str]:
    answer = client.get("/api/forecast", params=params, headers=bearer(token))
    assert answer.status_code == 200, answer.text
    return [i["code"] for i in answer.json()["items"]]


def test_the_api_answers_within_the_users_scope(rt: Runtime, client: TestClient) -> None:
    office = user(rt, "office", "office")
    answer = client.get("/api/forecast", headers=bearer(office)).json()
    assert (answer["as_of"], answer["review"], answer["red"], answer["yellow"]) == ("2024-12-31", "2025-02-28", 2, 0)
    assert [(i["code"], i["name"], i["leader"], i["flag_now"], i["flag_at_review"]) for i in answer["items"]] == [
        (code(5), "将转红甲", LEADER_A, "yellow", "red"), (code(6), "将转红乙", LEADER_B, "yellow", "red")]
    assert [r["code"] for r in answer["items"][0]["reasons"]] == ["ESCALATED", "START_OVERDUE"]
    assert answer["items"][0]["reasons"][1]["message"] == "计划2024-12-30开工，截至2025-02-28已逾期60天未开工"
    assert forecast_codes(client, office, leader=LEADER_B) == [code(6)]
    # Another review: on 2025-01-31 they are 32 days late, yellow twice running (2024-12-31 too): red.
    january = client.get("/api/forecast", params={"review": "2025-01-31"}, headers=bearer(office)).json()
    assert [m["message"] for m in january["items"][1]["reasons"]] == [
        "上月末（2024-12-31）与截至2025-01-31均为黄牌，连续黄牌升级为红牌", "计划2024-12-30开工，截至2025-01-31已逾期32天未开工"]
    assert forecast_codes(client, office, as_of="2024-12-30", review="2025-02-28") == []  # nothing reported yet

    leader_a = user(rt, "leader-a", "leader", leader=LEADER_A)
    assert forecast_codes(client, leader_a) == [code(5)]
    assert client.get("/api/forecast", params={"leader": LEADER_B}, headers=bearer(leader_a)).status_code == 403
    unit_b = user(rt, "unit-b", "unit", unit=UNIT_B)
    assert forecast_codes(client, unit_b) == [code(6)]
    assert forecast_codes(client, unit_b, leader=LEADER_A) == []

    refused = client.get("/api/forecast", params={"review": "2024-12-31"}, headers=bearer(office))
    assert refused.status_code == 422 and "述职日期 2024-12-31 应晚于截至日期 2024-12-31" in refused.json()["detail"]
    assert client.get("/api/forecast", params={"leader": "无此人"}, headers=bearer(office)).status_code == 404


def test_the_forecast_page_and_the_leader_home(rt: Runtime, client: TestClient) -> None:
    user(rt, "office", "office")
    login(client, "office")
    page = client.get("/forecast")
    assert page.status_code == 200
    assert "述职前将转红（2个）" in page.text and "述职前将转黄（0个）" in page.text
    assert "将转红甲" in page.text and "将转红乙" in page.text and "计划2024-12-30开工，截至2025-02-28已逾期60天未开工" in page.text
    one = client.get("/forecast", params={"leader": LEADER_B, "as_of": "2024-12-31", "review": ""})
    assert "将转红乙" in one.text and "将转红甲" not in one.text
    assert client.get("/forecast", params={"as_of": "2024-13-01"}).status_code == 422
    office_view = client.get(f"/leaders/{LEADER_A}")
    assert 'id="forecast"' in office_view.text and "将转红甲" in office_view.text and "将转红乙" not in office_view.text

    user(rt, "leader-b", "leader", leader=LEADER_B)
    with TestClient(create_app(rt)) as phone:
        login(phone, "leader-b")
        home = phone.get("/").text
        section = home[home.index('id="forecast"'):home.index('id="red"')]
        assert "述职前将转红、转黄（1个）" in section and "将转红乙" in section and "将转红甲" not in section
        assert phone.get("/forecast").status_code == 403


def test_the_backtest_page_tries_an_edited_or_uploaded_scheme(rt: Runtime, client: TestClient,
                                                             tmp_path: Path) -> None:
    user(rt, "office", "office")
    csrf = login(client, "office")
    form = client.get("/backtest")
    assert form.status_code == 200 and "name: jingzhou-2024" in form.text  # prefilled with the scheme in force
    shipped = rt.scheme.source.read_text(encoding="utf-8")
    # START_OVERDUE red only after a year: projects 1 and 3 (305 and 334 days late) turn yellow.
    lenient = shipped.replace("yellow: {min: 1, max: 60}\n    red: {above: 60}",
                              "yellow: {min: 1, max: 365}\n    red: {above: 365}").replace(
        "name: jingzhou-2024", "name: jingzhou-lenient")
    before = state(rt)
    answer = client.post("/backtest", data={"csrf_token": csrf, "text": lenient, "from": "2024-12", "to": "2024-12"})
    assert answer.status_code == 200, answer.text
    months = answer.text[answer.text.index('id="backtest-months"'):]
    assert "2024-12（截至 2024-12-31）" in months
    assert "2 / 2 / 2" in months and "0 / 4 / 2" in months
    changed = answer.text[answer.text.index('id="m-2024-12"'):]
    assert "挂牌颜色变化的项目（2个）" in changed and "测试项目1" in changed and "测试项目2" not in changed
    assert "已逾期305天未开工" in changed
    assert state(rt) == before  # nothing written

    bad = shipped.replace("red: {above: 60}\n    message: \"计划", "red: {above: 50}\n    message: \"计划", 1)
    (tmp_path / "bad.yaml").write_text(bad, encoding="utf-8")
    with pytest.raises(SchemeError) as at_start_up:
        load_scheme(str(tmp_path / "bad.yaml"), config_dir=rt.settings.config_dir)
    refused = client.post("/backtest", data={"csrf_token": csrf, "text": lenient},
                          files={"file": ("bad.yaml", bad.encode("utf-8"), "application/x-yaml")})
    assert refused.status_code == 422
    assert html.escape(str(at_start_up.value).replace(str(tmp_path / "bad.yaml"), "bad.yaml"), quote=False) in refused.text
    assert "方案被拒收" in refused.text and "重叠" in refused.text
    month = client.post("/backtest", data={"csrf_token": csrf, "text": lenient, "from": "2024-13"})
    assert month.status_code == 422 and "起始月份的月份格式应为 YYYY-MM：2024-13" in month.text
    assert client.post("/backtest", data={"text": lenient}).status_code == 403  # no CSRF token

    user(rt, "leader-a", "leader", leader=LEADER_A)
    with TestClient(create_app(rt)) as other:
        login(other, "leader-a")
        assert other.get("/backtest").status_code == 403
