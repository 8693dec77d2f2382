"""The office's Excel round trip: the project list exported from the workspace goes back in through
`pipeline import` unchanged (nothing refused, every update equal to the original), and the refused
rows of an upload come back as a file with 问题说明 that, once fixed, lands whole.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

import openpyxl
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session
from sqlalchemy import create_engine, select

from pipeline.db import session_scope
from pipeline.ingest.export import write_template
from pipeline.ingest.template import HEADERS
from pipeline.models import ImportBatch, ProjectState, StatusUpdate
from pipeline.runtime import Runtime, set_runtime
from pipeline.web import create_app
from tests.cli_helpers import clean_env, pipeline
from tests.web_support import demo_runtime, login, user

AS_OF = "2024-12-31"


def filename_of(answer: object) -> str:
    header = answer.headers["content-disposition"]  # type: ignore[attr-defined]
    return unquote(header.split("filename*=UTF-8''")[1])


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    rt = demo_runtime(tmp_path_factory.mktemp("round-trip"))
    user(rt, "office", "office")
    yield rt
    rt.dispose()
    set_runtime(None)


def current_payloads(url: str) -> dict[str, dict[str, object]]:
    """code → the stored update that is each project's current state."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = Session(conn).scalars(select(StatusUpdate)
                                         .join(ProjectState, ProjectState.update_id == StatusUpdate.id)).all()
            return {u.project_code: u.payload for u in rows}
    finally:
        engine.dispose()


def test_the_exported_list_reimports_unchanged(demo: Runtime, tmp_path: Path) -> None:
    with TestClient(create_app(demo)) as client:
        login(client, "office")
        answer = client.get("/projects/export.xlsx")
        assert answer.status_code == 200
        assert filename_of(answer) == "项目清单_20241231.xlsx"
        narrowed = client.get("/projects/export.xlsx", params={"county": "监利市", "color": "red"})
        assert filename_of(narrowed) == "项目清单_监利市_红牌_20241231.xlsx"
    exported = tmp_path / "项目清单.xlsx"
    exported.write_bytes(answer.content)

    book = openpyxl.load_workbook(exported)
    sheet = book["项目清单"]
    header = [c.value for c in sheet[1]]
    assert tuple(header[:len(HEADERS)]) == HEADERS  # every template column, in the template's order
    assert sheet.freeze_panes == "A2" and sheet.auto_filter.ref == f"A1:{openpyxl.utils.get_column_letter(len(header))}1464"
    assert sheet.column_dimensions["B"].width >= 30
    second = {h: c for h, c in zip(header, sheet[2])}
    assert second["报告期"].is_date and second["报告期"].number_format == "yyyy-mm-dd"
    assert isinstance(second["总投资（万元）"].value, (int, float)) and second["总投资（万元）"].number_format == "#,##0.00"
    assert second["挂牌"].value in ("红牌", "黄牌", "绿牌")

    # the same reserve: every row is an update it already holds (same content, same key), none refused
    original = current_payloads(demo.settings.effective_database_url)
    demo.dispose()
    env = clean_env(demo.settings.data_dir, PIPELINE_AS_OF=AS_OF)
    again = pipeline(env, "import", str(exported))
    assert again.returncode == 0, again.stderr
    assert "共 1463 行，接收 0 行，重复 1463 行" in again.stdout and "拒收" not in again.stdout + again.stderr

    # an empty reserve: it takes every row, and the stored updates equal the originals field by field
    fresh = clean_env(tmp_path / "fresh", PIPELINE_AS_OF=AS_OF)
    into_fresh = pipeline(fresh, "import", str(exported))
    assert into_fresh.returncode == 0, into_fresh.stderr
    assert "共 1463 行，接收 1463 行" in into_fresh.stdout and "拒收" not in into_fresh.stdout + into_fresh.stderr
    copied = current_payloads(f"sqlite:///{tmp_path / 'fresh' / 'pipeline.sqlite3'}")
    assert copied.keys() == original.keys()
    differing = [code for code in original if copied[code] != original[code]]
    assert not differing, [(c, original[c], copied[c]) for c in differing[:3]]


def test_refused_rows_download_fix_and_upload_again(demo: Runtime, tmp_path: Path) -> None:
    good = {"code": "2024-421088-44-01-880001", "name": "回传测试项目", "county": "监利市", "nature": "续建",
            "total_investment": 30000, "annual_plan": 6000, "planned_start": "2023-05-01",
            "actual_start": "2023-05-02", "stats_included_on": "2023-06-01", "ytd_completed": 5900,
            "cumulative_completed": 12000, "lists": "亿元以上项目", "leader": "马敏刚", "unit": "监利市人民政府",
            "problems": "=1+1 不是公式", "as_of": AS_OF}
    rows = [good,
            {**good, "code": "2024-421088-44-01-880002", "county": "火星区"},
            {**good, "code": "2024-421088-44-01-880003", "nature": "在建", "ytd_completed": -5},
            {**good, "code": "2024-421088-44-01-880004", "as_of": "2024年13月1日"}]
    path = write_template(rows, tmp_path / "十二月月报.xlsx")
    with TestClient(create_app(demo)) as client:
        csrf = login(client, "office")
        with path.open("rb") as fh:
            answer = client.post("/upload", data={"csrf_token": csrf},
                                 files={"file": (path.name, fh, "application/octet-stream")}, follow_redirects=False)
        assert answer.status_code == 303
        report = client.get(answer.headers["location"])
        assert "接收 <b>1</b> 行" in report.text and "拒收 <b class=\"bad\">3</b> 行" in report.text
        batch = int(answer.headers["location"].split("=")[1])
        download = client.get(f"/upload/{batch}/rejected.xlsx")
        assert download.status_code == 200 and filename_of(download) == "十二月月报_问题行.xlsx"

        book = openpyxl.load_workbook(io.BytesIO(download.content))
        sheet = book.active
        header = [c.value for c in sheet[1]]
        assert header[0] == "问题说明" and tuple(header[1:]) == HEADERS
        data = [[c for c in r] for r in sheet.iter_rows(min_row=2)]
        assert len(data) == 3
        explain = [r[0].value for r in data]
        assert "原第3行" in explain[0] and "「县市区」" in explain[0] and "火星区" in explain[0]
        assert "「建设性质」" in explain[1] and "「本年完成投资（万元）」" in explain[1]
        assert "「报告期」" in explain[2]
        column = {h: i for i, h in enumerate(header)}
        assert data[0][column["县市区"]].fill.fgColor.rgb.endswith("F4C7C3")  # the faulty cell is marked
        assert data[0][column["项目名称"]].value == "回传测试项目"  # the rest of the row as it was sent
        assert data[0][column["存在问题"]].value == "'=1+1 不是公式" and data[0][column["存在问题"]].data_type == "s"

        # the office fixes the cells in the downloaded file and uploads that file again
        data[0][column["县市区"]].value = "监利市"
        data[1][column["建设性质"]].value = "续建"
        data[1][column["本年完成投资（万元）"]].value = 5000
        data[2][column["报告期"]].value = AS_OF
        fixed = tmp_path / "十二月月报_问题行_已改.xlsx"
        book.save(fixed)
        with fixed.open("rb") as fh:
            again = client.post("/upload", data={"csrf_token": csrf},
                                files={"file": (fixed.name, fh, "application/octet-stream")}, follow_redirects=False)
        assert again.status_code == 303
        second = int(again.headers["location"].split("=")[1])
    with session_scope(demo.session_factory) as session:
        batch_row = session.get(ImportBatch, second)
        assert (batch_row.total_rows, batch_row.accepted_rows, batch_row.rejected_rows) == (3, 3, 0)
        assert batch_row.status == "applied"
        landed = {u.project_code: u.payload for u in session.scalars(
            select(StatusUpdate).where(StatusUpdate.project_code.like("2024-421088-44-01-88000%")))}
    assert sorted(landed) == [f"2024-421088-44-01-88000{n}" for n in (1, 2, 3, 4)]
    assert landed["2024-421088-44-01-880002"]["county"] == "监利市"
    assert landed["2024-421088-44-01-880003"]["ytd_completed"] == "5000"
    assert landed["2024-421088-44-01-880004"]["as_of"] == AS_OF
    assert landed["2024-421088-44-01-880002"]["problems"] == "=1+1 不是公式"  # text stays text, both ways


def test_a_unit_sees_only_the_batches_it_uploaded(demo: Runtime, tmp_path: Path) -> None:
    user(demo, "unit-a", "unit", unit="监利市人民政府")
    with session_scope(demo.session_factory) as session:
        someone_elses = session.scalar(select(ImportBatch.id).order_by(ImportBatch.id).limit(1))
    with TestClient(create_app(demo)) as client:
        login(client, "unit-a")
        assert client.get(f"/upload?batch={someone_elses}").status_code == 403
        assert client.get(f"/upload/{someone_elses}/rejected.xlsx").status_code == 403
        template = client.get("/upload/template.xlsx")
        assert template.status_code == 200 and filename_of(template) == "项目月报导入模板.xlsx"
