"""Bad input over HTTP, on SQLite and on PostgreSQL: a 4xx in Chinese or a row error naming the row and
the field, never a 5xx, and the good rows sent beside the bad ones land (counted in the database)."""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from pipeline.db import session_scope
from pipeline.ingest.export import write_template
from pipeline.models import ImportBatch, RejectedRow, StatusUpdate
from pipeline.runtime import Runtime, set_runtime
from pipeline.web import create_app
from tests.conftest import make_runtime
from tests.factories import code, row
from tests.web_support import bearer, user

CHINESE = re.compile(r"[\u4e00-\u9fff]")
HUGE = "7" * 5000
FUZZ_BODIES = 500  # per database: a thousand bodies a run


@pytest.fixture
def api(any_runtime: Runtime) -> Iterator[tuple[Runtime, TestClient, dict[str, str]]]:
    token = user(any_runtime, "office", "office")
    with TestClient(create_app(any_runtime), raise_server_exceptions=False) as client:
        yield any_runtime, client, bearer(token)


def good(n: int, **changes: Any) -> dict[str, Any]:
    return {"code": code(n), "name": f"测试项目{n}", "county": "荆州区", "nature": "续建", "total_investment": 50000,
            "ytd_completed": 100, "cumulative_completed": 300, "as_of": "2024-12-31", **changes}


def landed(rt: Runtime, batch_id: int | None = None) -> int:
    with session_scope(rt.session_factory) as session:
        q = select(func.count()).select_from(StatusUpdate)
        return session.scalar(q.where(StatusUpdate.batch_id == batch_id) if batch_id is not None else q) or 0


def post_raw(client: TestClient, headers: dict[str, str], text: str) -> Any:
    return client.post("/api/updates", content=text.encode("utf-8", "surrogatepass"),
                       headers={**headers, "Content-Type": "application/json"})


def test_cells_no_database_keeps_are_row_errors_and_the_good_rows_land(api: tuple[Runtime, TestClient, dict]) -> None:
    rt, client, auth = api
    body = json.dumps([good(1), good(2, name="甲\x00乙"), good(3, name="\ud800"), good(4, total_investment=0),
                       good(5, unit="单位\x00"), {**good(6), "\udfff键": 1}, good(7)])
    answer = post_raw(client, auth, body.replace('"total_investment": 0', f'"total_investment": {HUGE}'))
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert (result["accepted"], result["rejected"]) == (2, 5)
    assert [(e["row"], e["field"]) for e in result["errors"]] == [
        (2, "项目名称"), (3, "项目名称"), (4, "总投资（万元）"), (5, "责任单位"), (6, "\ufffd键")]
    assert all(CHINESE.search(e["message"]) for e in result["errors"])
    assert landed(rt, result["batch_id"]) == 2
    with session_scope(rt.session_factory) as session:
        stored = session.scalars(select(RejectedRow).where(RejectedRow.batch_id == result["batch_id"])
                                 .order_by(RejectedRow.row_number)).all()
        assert [r.raw_value for r in stored][:2] == ["甲␀乙", "\ufffd"]


def test_a_file_with_nul_and_future_reports_lands_its_good_rows(api: tuple[Runtime, TestClient, dict],
                                                               tmp_path: Path) -> None:
    rt, client, auth = api
    path = write_template([row(1, as_of=row(1).as_of.replace(year=2024, month=12, day=31)), row(2), row(3)],
                          tmp_path / "m.csv")
    text = path.read_text(encoding="utf-8-sig").replace("测试项目2", "测试\x00项目2").replace("2024-03-31", "2099-06-30")
    path.write_text(text, encoding="utf-8")
    answer = client.post("/api/updates", files={"file": ("m.csv", path.read_bytes())}, headers=auth)
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["accepted"] == 1 and result["hidden_rows"] == 0
    assert {(e["row"], e["field"]) for e in result["errors"]} == {(3, "项目名称"), (3, "报告期"), (4, "报告期")}
    assert landed(rt, result["batch_id"]) == 1


def test_json_bodies_are_bounded_in_size_depth_and_count(any_runtime: Runtime) -> None:
    rt = any_runtime
    rt.settings.api_max_body_bytes = 4096
    rt.settings.api_max_records = 3
    token = user(rt, "office", "office")
    with TestClient(create_app(rt), raise_server_exceptions=False) as client:
        auth = bearer(token)
        big = client.post("/api/updates", json=[good(n, problems="长" * 300) for n in range(1, 6)], headers=auth)
        assert big.status_code == 413 and "PIPELINE_API_MAX_BODY_BYTES" in big.json()["detail"]
        deep = post_raw(client, auth, "[" * 100 + "]" * 100)  # deeper than allowed, not than Python parses
        assert deep.status_code == 422 and "嵌套过深" in deep.json()["detail"]
        many = client.post("/api/updates", json=[good(n) for n in range(1, 5)], headers=auth)
        assert many.status_code == 413 and "超过上限 3 条" in many.json()["detail"]
        assert "PIPELINE_API_MAX_RECORDS" in many.json()["detail"]
        for answer in (big, deep, many):
            assert CHINESE.search(answer.json()["detail"])
        ok = client.post("/api/updates", json=[good(n) for n in range(1, 4)], headers=auth)
        assert ok.status_code == 200 and ok.json()["accepted"] == 3
    with session_scope(rt.session_factory) as session:
        assert session.scalar(select(func.count()).select_from(ImportBatch)) == 1


def test_ids_and_pages_past_the_database_range_are_refused_in_chinese(api: tuple[Runtime, TestClient, dict]) -> None:
    _, client, auth = api
    huge = str(2**63)
    for answer in (client.get("/api/outbox", params={"page": huge}, headers=auth),
                   client.get("/api/projects", params={"page": huge}, headers=auth),
                   client.get("/api/projects", params={"page": "9" * 5000}, headers=auth),
                   client.post(f"/api/outbox/{huge}/resend", headers=auth),
                   client.post(f"/api/outbox/{'9' * 5000}/resend", headers=auth),
                   client.get("/alerts", params={"page": huge}, headers=auth)):
        assert answer.status_code == 422, answer.text
        assert CHINESE.search(answer.text)
    nul = [client.get("/api/projects/2024%00", headers=auth), client.get("/api/projects", params={"county": "沙\x00"},
                                                                         headers=auth)]
    assert [a.status_code for a in nul] == [400, 400] and all("空字符" in a.json()["detail"] for a in nul)
    assert client.post("/api/outbox/12345/resend", headers=auth).status_code in (404, 409)


# ---------------------------------------------------------------- generated bodies

_serials = itertools.count(1)
_text = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), min_size=1, max_size=60).filter(
    lambda s: bool(s.strip()) and not s.lstrip().startswith("=") and len(s.strip()) <= 50
)
BAD_CELLS: list[tuple[str, Any]] = [
    ("name", "甲\x00乙"), ("name", "\ud800"), ("name", ["甲", "乙"]), ("name", {"a": 1}), ("name", "长" * 201),
    ("name", True), ("total_investment", HUGE), ("total_investment", "1e400"), ("total_investment", -5),
    ("total_investment", True), ("total_investment", "五万"), ("total_investment", float("nan")),
    ("total_investment", 10**13), ("as_of", "2099-06-30"), ("as_of", "2024-02-30"), ("as_of", 12), ("as_of", [1]),
    ("county", "火星区"), ("nature", "在建"), ("lists", ["不存在的清单"]), ("lists", [1, 2]), ("code", "2024-01"),
    ("code", "=1+1"), ("needs_coordination", "可能"), ("phone", "1"), ("ytd_completed", 500),
    ("actual_start", "2025-06-01"), ("unit", "x" * 201), ("source_id", "\x00"), ("problems", "\ud83d"),
]


@st.composite
def bodies(draw: st.DrawFn) -> tuple[list[Any], int]:
    """A JSON body of good records beside bad ones of every kind; how many good records it carries."""
    records: list[Any] = []
    good_count = 0
    for _ in range(draw(st.integers(1, 6))):
        serial = next(_serials)
        choice = draw(st.integers(0, len(BAD_CELLS) + 2))
        if choice >= len(BAD_CELLS):
            records.append(good(serial, name=draw(_text), leader=draw(st.none() | _text), problems=draw(st.none() | _text)))
            good_count += 1
        elif draw(st.booleans()) and choice % 7 == 0:
            records.append(draw(st.sampled_from(["not an object", 5, None, [good(serial)]])))
        else:
            field, value = BAD_CELLS[choice]
            records.append(good(serial, **{field: value}))
    return records, good_count


def _encode(records: list[Any]) -> str:
    return json.dumps(records, ensure_ascii=True).replace(f'"{HUGE}"', HUGE)  # a JSON integer of 5,000 digits


@pytest.fixture(params=["sqlite", "postgres"])
def queued_api(request: pytest.FixtureRequest, tmp_path: Path, redis_url: str) -> Iterator[tuple[Runtime, TestClient, dict]]:
    """The production shape: arrivals recorded, then queued on a real broker for the workers."""
    database = {} if request.param == "sqlite" else {"database_url": request.getfixturevalue("pg_url")}
    rt = make_runtime(tmp_path, as_of=date(2024, 12, 31), broker_url=redis_url, secret_key="k" * 40, **database)
    token = user(rt, "office", "office")
    with TestClient(create_app(rt), raise_server_exceptions=False) as client:
        yield rt, client, bearer(token)
    rt.dispose()
    set_runtime(None)


@pytest.mark.timeout(900)
@settings(max_examples=FUZZ_BODIES, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(body=bodies())
def test_generated_bodies_never_fail_and_their_good_records_land(
    queued_api: tuple[Runtime, TestClient, dict], body: tuple[list[Any], int]
) -> None:
    rt, client, auth = queued_api
    records, good_count = body
    answer = post_raw(client, auth, _encode(records))
    assert answer.status_code in (200, 422), answer.text
    result = answer.json()
    assert CHINESE.search(result.get("detail", "")) or answer.status_code == 200
    assert result["accepted"] == good_count, result
    assert landed(rt, result["batch_id"]) == good_count
    assert result["rejected"] == len(records) - good_count
    assert all(e["row"] is not None and CHINESE.search(e["message"]) for e in result["errors"])


def test_json_nested_a_hundred_thousand_deep_is_refused_before_it_is_parsed(api: tuple[Runtime, TestClient, dict]) -> None:
    rt, client, auth = api
    answer = post_raw(client, auth, '{"updates": ' + "[" * 100_000 + "]" * 100_000 + "}")
    assert answer.status_code == 422 and "嵌套过深" in answer.json()["detail"] and "PIPELINE_API_MAX_DEPTH" in answer.text
    assert landed(rt) == 0


def test_the_upload_page_shows_hidden_rows_and_names_the_sheet_of_a_refused_row(tmp_path: Path) -> None:
    from openpyxl import load_workbook

    from pipeline.ingest.template import HEADERS
    from tests.test_web_security import login

    rt = make_runtime(tmp_path, as_of=date(2024, 12, 31))
    user(rt, "office", "office")
    path = write_template([row(1, as_of=date(2024, 11, 30)), row(2, as_of=date(2024, 11, 30))], tmp_path / "两个月.xlsx")
    workbook = load_workbook(path)
    workbook.active.title = "11月"
    workbook.active.row_dimensions[3].hidden = True
    december = workbook.create_sheet("12月")
    december.append(list(HEADERS))
    december.append([code(1), "测试项目1", "火星区", None, None, "续建", 50000, None, None, None, None, None, None,
                     None, None, None, None, None, None, "2024-12-31"])
    workbook.save(path)
    with TestClient(create_app(rt)) as client:
        csrf = login(client, "office")
        page = client.post("/upload", data={"csrf_token": csrf}, files={"file": (path.name, path.read_bytes())})
    assert page.status_code == 200, page.text
    assert "其中 1 行在 Excel 中是隐藏行" in page.text
    assert "工作表“12月”第2行" in page.text and "不在配置的县市区中" in page.text
    rt.dispose()
    set_runtime(None)
