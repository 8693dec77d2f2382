"""Good paths of reading and validating: every accepted date, number and yes/no form, header variants,
encodings, row numbers as Excel shows them, JSON records, progress, and the export round trip."""

from __future__ import annotations

import hashlib
import json
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from pipeline.ingest.export import write_template
from pipeline.ingest.parse import parse_file
from pipeline.ingest.template import HEADERS, TEMPLATE_FIELDS, UpdateRow
from tests.factories import row as factory_row
from tests.ingest_helpers import MAX_BYTES, TODAY, code, good_cells, parse, parse_json, reference, write_csv, write_xlsx

ASOF = "报告期"
TOTAL = "总投资（万元）"


def only_row(path: Path) -> UpdateRow:
    parsed = parse(path)
    assert parsed.errors == [], [e.describe() for e in parsed.errors]
    [row] = parsed.rows
    return row


# ---------------------------------------------------------------- dates


@pytest.mark.parametrize(
    "text",
    ["2024-03-31", "2024/3/31", "2024年3月31日", "2024.3.31", "2024-3-31", " 2024/03/31 ", "2024-03-31 00:00:00",
     "2024-03-31T00:00:00", "２０２４－０３－３１", "2024年3月31", "45382"],
)
def test_accepted_date_texts(text: str, tmp_path: Path) -> None:
    row = only_row(write_csv(tmp_path / "t.csv", [good_cells(1, **{ASOF: text})]))
    assert row.as_of == date(2024, 3, 31)


@pytest.mark.parametrize(
    "cell", [date(2024, 3, 31), datetime(2024, 3, 31, 0, 0), datetime(2024, 3, 31, 17, 45), 45382, 45382.0, "2024/3/31"]
)
def test_accepted_excel_date_cells(cell: Any, tmp_path: Path) -> None:
    row = only_row(write_xlsx(tmp_path / "t.xlsx", [good_cells(1, **{ASOF: cell, "实际开工日期": date(2023, 3, 1)})]))
    assert row.as_of == date(2024, 3, 31)
    assert row.actual_start == date(2023, 3, 1)


def test_leap_day_is_a_date(tmp_path: Path) -> None:
    row = only_row(write_csv(tmp_path / "t.csv", [good_cells(1, **{ASOF: "2024年2月29日"})]))
    assert row.as_of == date(2024, 2, 29)


# ---------------------------------------------------------------- numbers


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1,234.5", "1234.5"), ("12,345,678", "12345678"), ("50000", "50000"), (" 50000 ", "50000"),
     ("50000.00", "50000"), ("1234.567", "1234.57"), ("1234.565", "1234.57"), ("0.5", "0.5"), (".5", "0.5"),
     ("+7", "7"), ("１２３４５", "12345"), ("１，２３４．５", "1234.5")],
)
def test_accepted_number_texts(text: str, expected: str, tmp_path: Path) -> None:
    row = only_row(write_csv(tmp_path / "t.csv", [good_cells(1, **{TOTAL: text})]))
    assert row.total_investment == Decimal(expected)
    assert str(row.total_investment) == expected  # canonical: no trailing zeros, no exponent


@pytest.mark.parametrize(("cell", "expected"), [(1234.5, "1234.5"), (50000, "50000"), (0.1 + 0.2, "0.3"), ("1,234.5", "1234.5")])
def test_accepted_number_cells_in_xlsx(cell: Any, expected: str, tmp_path: Path) -> None:
    row = only_row(write_xlsx(tmp_path / "t.xlsx", [good_cells(1, **{TOTAL: cell})]))
    assert str(row.total_investment) == expected


def test_zero_is_allowed_where_only_negatives_are_forbidden(tmp_path: Path) -> None:
    cells = good_cells(1, **{"年度计划投资（万元）": "0", "累计完成投资（万元）": "0", "本年完成投资（万元）": "0"})
    row = only_row(write_csv(tmp_path / "t.csv", [cells]))
    assert (row.annual_plan, row.cumulative_completed, row.ytd_completed) == (0, 0, 0)


# ---------------------------------------------------------------- yes/no, lists, choices


@pytest.mark.parametrize(
    ("text", "expected"),
    [("是", True), ("否", False), ("", False), ("1", True), ("0", False), ("Y", True), ("n", False),
     ("true", True), ("FALSE", False), ("yes", True), ("No", False), (" 是 ", True)],
)
def test_accepted_yes_no(text: str, expected: bool, tmp_path: Path) -> None:
    row = only_row(write_csv(tmp_path / "t.csv", [good_cells(1, 需协调=text)]))
    assert row.needs_coordination is expected


@pytest.mark.parametrize("cell", [True, 1])
def test_yes_no_cells_in_xlsx(cell: Any, tmp_path: Path) -> None:
    assert only_row(write_xlsx(tmp_path / "t.xlsx", [good_cells(1, 需协调=cell)])).needs_coordination is True


@pytest.mark.parametrize(
    "text", ["亿元以上项目;省市重点项目", "亿元以上项目；省市重点项目", "亿元以上项目、省市重点项目", " 亿元以上项目 ; 省市重点项目; ",
             "亿元以上项目;省市重点项目;亿元以上项目"],
)
def test_list_separators(text: str, tmp_path: Path) -> None:
    row = only_row(write_csv(tmp_path / "t.csv", [good_cells(1, 所属清单=text)]))
    assert row.lists == ("亿元以上项目", "省市重点项目")


def test_text_is_stripped_and_codes_and_counties_normalised(tmp_path: Path) -> None:
    cells = good_cells(1, 项目代码=" ２０２４－421003-44-01-000001 ", 县市区=" 荆州区 ", 项目名称="  新厂房  ", 行业="")
    row = only_row(write_csv(tmp_path / "t.csv", [cells]))
    assert (row.code, row.county, row.name, row.industry) == (code(1), "荆州区", "新厂房", None)


def test_a_new_start_with_a_planned_start_and_no_actual_dates(tmp_path: Path) -> None:
    cells = good_cells(1, 建设性质="新开工", 计划开工日期="2024-06-01", 实际开工日期="", 入统日期="")
    row = only_row(write_csv(tmp_path / "t.csv", [cells]))
    assert (row.nature, row.planned_start, row.actual_start) == ("新开工", date(2024, 6, 1), None)


# ---------------------------------------------------------------- headers


def test_aliases_and_chinese_headers_mixed_with_variants(tmp_path: Path) -> None:
    variants = {"项目代码": "code", "项目名称": " 项目名称 ", "县市区": "County", TOTAL: "总投资(万元)",
                "本年完成投资（万元）": "本年完成投资 ( 万元 )", ASOF: "as_of"}
    headers = ["序号", *[variants.get(h, h) for h in HEADERS], "备注"]
    cells = good_cells(1)
    rows = [{variants.get(h, h): v for h, v in cells.items()} | {"序号": "1", "备注": "任意内容"}]
    row = only_row(write_csv(tmp_path / "t.csv", rows, headers=headers))
    assert row == UpdateRow(**{**_expected_fields(), "row_number": 2})


def _expected_fields() -> dict[str, Any]:
    return dict(
        code=code(1), name="测试项目1", county="荆州区", nature="续建", total_investment=Decimal(50000),
        as_of=date(2024, 3, 31), industry="先进制造业", lists=("亿元以上项目",), annual_plan=Decimal(12000),
        planned_start=date(2023, 3, 1), planned_completion=date(2026, 12, 31), actual_start=date(2023, 3, 1),
        stats_included_on=date(2023, 4, 15), cumulative_completed=Decimal(20000), ytd_completed=Decimal(3000),
        leader="王建国", unit="荆州区人民政府",
    )


def test_optional_columns_may_be_left_out(tmp_path: Path) -> None:
    required = [f.header for f in TEMPLATE_FIELDS if f.required]
    row = only_row(write_csv(tmp_path / "t.csv", [good_cells(1)], headers=required))
    assert (row.annual_plan, row.lists, row.needs_coordination) == (None, (), False)


def test_source_id_column(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "t.csv", [good_cells(1, 来源编号="JZ-0001"), good_cells(2, 来源编号="")],
                     headers=(*HEADERS, "来源编号"))
    parsed = parse(path)
    assert [r.source_id for r in parsed.rows] == ["JZ-0001", None]


# ---------------------------------------------------------------- encodings and row numbers


@pytest.mark.parametrize("encoding", ["gb18030", "utf-8-sig", "utf-8"])
def test_csv_encodings(encoding: str, tmp_path: Path) -> None:
    cells = good_cells(1, 项目名称="荆州港盐卡港区综合码头（二期）", 存在问题="征地拆迁滞后、资金缺口")
    path = write_csv(tmp_path / "t.csv", [cells, good_cells(2, 县市区="监利市")], encoding=encoding)
    parsed = parse(path)
    assert parsed.errors == []
    assert [r.name for r in parsed.rows] == ["荆州港盐卡港区综合码头（二期）", "测试项目2"]
    assert parsed.rows[0].problems == "征地拆迁滞后、资金缺口"
    assert parsed.rows[1].county == "监利市"


def test_row_numbers_are_excel_rows_with_blank_rows_and_a_title_above(tmp_path: Path) -> None:
    rows = [good_cells(1), {}, good_cells(2), good_cells(3, **{TOTAL: "abc"}), {}, {}]
    path = write_xlsx(tmp_path / "t.xlsx", rows, blank_rows_above=2)  # header on Excel row 3
    parsed = parse(path)
    assert [r.row_number for r in parsed.rows] == [4, 6]
    assert [(e.row_number, e.header) for e in parsed.errors] == [(7, TOTAL)]
    assert parsed.total_rows == 3


def test_a_title_row_above_the_header_is_skipped(tmp_path: Path) -> None:
    from openpyxl import load_workbook

    path = write_xlsx(tmp_path / "t.xlsx", [good_cells(1), good_cells(2, **{TOTAL: "-1"})])
    workbook = load_workbook(path)
    sheet = workbook.active
    sheet.insert_rows(1, amount=2)
    sheet["A1"] = "荆州市重大项目调度表（2024年3月）"
    sheet["T2"] = "填报单位：荆州区发改局"
    workbook.save(path)
    parsed = parse(path)
    assert [r.row_number for r in parsed.rows] == [4]
    assert [(e.row_number, e.header) for e in parsed.errors] == [(5, TOTAL)]


def test_csv_row_numbers_count_records_and_skip_blank_lines(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "t.csv", [good_cells(1, 存在问题="第一行\n第二行"), {}, good_cells(2, **{TOTAL: "-1"})])
    parsed = parse(path)
    assert parsed.rows[0].problems == "第一行\n第二行"
    assert [(e.row_number, e.header) for e in parsed.errors] == [(4, TOTAL)]


def test_jsonl_line_numbers_and_keys(tmp_path: Path) -> None:
    first = {"code": code(1), "name": "甲", "county": "沙市区", "nature": "续建", "total_investment": 100,
             "as_of": "2024-03-31", "needs_coordination": True, "lists": ["亿元以上项目", "省市重点项目"]}
    second = {"项目代码": code(2), "项目名称": "乙", "县市区": "沙市区", "建设性质": "续建", "总投资(万元)": "1,000",
              "报告期": "2024/3/31", "id": 7}
    third = {**first, "code": code(3), "total_investment": -5}
    path = tmp_path / "u.jsonl"
    path.write_text("\n".join([json.dumps(first), "", json.dumps(second, ensure_ascii=False), json.dumps(third)]) + "\n",
                    encoding="utf-8")
    parsed = parse(path)
    assert [(r.row_number, r.code) for r in parsed.rows] == [(1, code(1)), (3, code(2))]
    assert parsed.rows[0].needs_coordination is True and parsed.rows[0].lists == ("亿元以上项目", "省市重点项目")
    assert parsed.rows[1].source_id == "7" and parsed.rows[1].total_investment == 1000
    assert [(e.row_number, e.header) for e in parsed.errors] == [(4, TOTAL)]


# ---------------------------------------------------------------- formulas


def test_formulas_in_the_ignored_number_column_do_not_refuse_a_row(tmp_path: Path) -> None:
    headers = ("序号", *HEADERS)
    rows = [good_cells(1, 序号="=ROW()-1"), good_cells(2, 序号="=ROW()-1")]
    parsed = parse(write_xlsx(tmp_path / "t.xlsx", rows, headers=headers))
    assert parsed.errors == [] and len(parsed.rows) == 2


def test_formulas_on_another_sheet_do_not_matter(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "t.xlsx", [good_cells(1)])
    from openpyxl import load_workbook

    workbook = load_workbook(path)
    workbook.create_sheet("汇总")["A1"] = "=SUM(导入模板!G:G)"
    workbook.save(path)
    assert only_row(path).code == code(1)


def test_real_formula_cells_are_found_among_many_rows(tmp_path: Path) -> None:
    rows = [good_cells(n) for n in range(1, 301)]
    rows[149] = good_cells(150, **{"本年完成投资（万元）": "=1000+2000"})
    rows[299] = good_cells(300, **{TOTAL: "=G2*2"})
    parsed = parse(write_xlsx(tmp_path / "t.xlsx", rows))
    assert [(e.row_number, e.header, e.raw_value) for e in parsed.errors] == [
        (151, "本年完成投资（万元）", "=1000+2000"), (301, TOTAL, "=G2*2"),
    ]
    assert len(parsed.rows) == 298


# ---------------------------------------------------------------- API records, progress, hash


def test_parse_records_with_source_ids_and_row_numbers() -> None:
    base = {"code": code(1), "name": "甲", "county": "沙市区", "nature": "续建", "total_investment": 100.5,
            "as_of": "2024-03-31"}
    records = [
        {**base, "source_id": "S1"},
        {**base, "code": code(2), "id": "S2", "ytd_completed": 5, "cumulative_completed": 4},
        {**base, "code": code(3), "phone": "123"},
        {**base, "code": code(4), "source_id": "x", "id": "y"},
    ]
    parsed = parse_json(records, first_row_number=10)
    assert parsed.total_rows == 4
    assert [(r.row_number, r.source_id, r.total_investment) for r in parsed.rows] == [(10, "S1", Decimal("100.5"))]
    assert [(e.row_number, e.header) for e in parsed.errors] == [(11, "累计完成投资（万元）"), (12, "phone"), (13, "id")]


def test_parse_records_refuses_what_is_not_an_object() -> None:
    parsed = parse_json(["not an object"])  # type: ignore[list-item]
    [error] = parsed.errors
    assert error.row_number == 1 and "JSON 对象" in error.message


def test_progress_is_reported_up_to_the_total(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "t.csv", [good_cells(n) for n in range(1, 451)])
    calls: list[tuple[int, int]] = []
    parse_file(path, reference=reference(), today=TODAY, max_bytes=MAX_BYTES,
               progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (450, 450)
    assert len(calls) >= 3 and [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_sha256_and_filename(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "2024-03.csv", [good_cells(1)])
    parsed = parse(path)
    assert parsed.filename == "2024-03.csv"
    assert parsed.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------- export


@pytest.mark.parametrize("suffix", [".xlsx", ".csv", ".jsonl"])
def test_export_round_trip(suffix: str, tmp_path: Path) -> None:
    rows = [
        factory_row(1),
        factory_row(2, problems="-资金未到位\n+征地滞后 _x0041_ _x000D_", leader="@张三", unit="'=1+1", needs_coordination=True,
                    lists=("省市重点项目", "亿元以上项目"), source_id="S-2"),
        factory_row(3, nature="新开工", planned_start=date(2024, 6, 1), actual_start=None, stats_included_on=None,
                    annual_plan=None, cumulative_completed=Decimal("0.01"), ytd_completed=Decimal(0), industry=None,
                    lists=(), total_investment=Decimal("123456789.99")),
    ]
    parsed = parse(write_template(rows, tmp_path / f"out{suffix}"))
    assert parsed.errors == []
    assert parsed.rows == rows
    assert [r.row_number for r in parsed.rows] == ([1, 2, 3] if suffix == ".jsonl" else [2, 3, 4])


def test_export_neutralises_formula_text_and_writes_real_dates(tmp_path: Path) -> None:
    from openpyxl import load_workbook

    rows = [factory_row(1, problems="=HYPERLINK(\"http://evil\")", leader="+86", unit="@单位")]
    sheet = load_workbook(write_template(rows, tmp_path / "out.xlsx")).active
    header = [c.value for c in sheet[1]]
    values = {h: c for h, c in zip(header, sheet[2], strict=True)}
    assert header == list(HEADERS)
    assert values["存在问题"].value == "'=HYPERLINK(\"http://evil\")" and values["存在问题"].data_type == "s"
    assert values["包保领导"].value == "'+86" and values["责任单位"].value == "'@单位"
    assert values["报告期"].is_date and values["报告期"].value.date() == date(2024, 3, 31)
    assert values[TOTAL].value == 50000
    csv_text = write_template(rows, tmp_path / "out.csv").read_text(encoding="utf-8-sig")
    assert "'=HYPERLINK" in csv_text and ",'+86," in csv_text


def test_export_accepts_mappings_by_alias_or_header(tmp_path: Path) -> None:
    rows = [{"code": code(1), "name": "甲", "县市区": "沙市区", "nature": "续建", TOTAL: Decimal(10), "as_of": date(2024, 3, 31)}]
    row = only_row(write_template(rows, tmp_path / "m.xlsx"))
    assert (row.code, row.county, row.total_investment) == (code(1), "沙市区", 10)
    with pytest.raises(ValueError):
        write_template([{"phone": "1"}], tmp_path / "bad.csv")
    with pytest.raises(ValueError):
        write_template([], tmp_path / "bad.txt")


def test_an_amount_hashes_alike_whatever_its_trailing_zeros() -> None:
    """19109.50 written by a program and 19109.5 read from a spreadsheet are one update (one key)."""
    from dataclasses import replace

    from pipeline.ingest.keys import idempotency_key, update_payload

    written = factory_row(1, ytd_completed=Decimal("19109.50"), cumulative_completed=Decimal("30000.00"))
    read_back = replace(written, ytd_completed=Decimal("19109.5"), cumulative_completed=Decimal("3E+4"))
    assert update_payload(written) == update_payload(read_back)
    assert update_payload(written)["ytd_completed"] == "19109.5"
    assert idempotency_key(written) == idempotency_key(read_back)
