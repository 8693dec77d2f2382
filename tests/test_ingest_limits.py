"""Bad input never crashes, never loses the good rows beside it, never takes unbounded memory.

Workbooks that inflate to a gigabyte (honestly declared or not), cells far apart, more rows than
allowed; NUL, lone surrogates, 5,000-digit integers and deep JSON in cells; a 报告期 in the future;
workbooks with several sheets or hidden rows; a unit's progress-only rows.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest
from openpyxl import load_workbook

from pipeline.ingest.parse import FileRejected, ImportLimits
from pipeline.ingest.template import HEADERS
from tests.ingest_helpers import code, good_cells, parse, write_csv, write_xlsx
from tests.xlsx_forge import blank_chunks, forge_xlsx, row_xml, sheet_xml, template_rows

TOTAL, ASOF, NAME = "总投资（万元）", "报告期", "项目名称"
GIB = 1 << 30


def refusal(path: Path, **options: object) -> str:
    with pytest.raises(FileRejected) as refused:
        parse(path, **options)
    message = str(refused.value)
    assert path.name in message
    return message


@pytest.fixture(scope="module")
def gigabyte_bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1 MB on disk, a sheet of 1 GiB once inflated, its size declared honestly."""
    return forge_xlsx(tmp_path_factory.mktemp("bomb") / "bomb.xlsx", [("导入模板", blank_chunks(GIB))])


@pytest.fixture(scope="module")
def lying_bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same sheet, its zip entry claiming to inflate to 2 kB."""
    return forge_xlsx(tmp_path_factory.mktemp("bomb") / "lying.xlsx", [("导入模板", blank_chunks(GIB))],
                      declared={0: 2048})


# ---------------------------------------------------------------- workbooks past their limits


def test_a_gigabyte_sheet_is_refused_by_its_declared_size_before_anything_reads_it(
    gigabyte_bomb: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fastexcel

    assert gigabyte_bomb.stat().st_size < 4 * 1024 * 1024
    monkeypatch.setattr(fastexcel, "read_excel", lambda *a, **k: pytest.fail("the workbook was read"))
    message = refusal(gigabyte_bomb, max_bytes=20 * 1024 * 1024)
    assert "解压后超过上限 256 MB" in message and "PIPELINE_XLSX_MAX_INFLATED_BYTES" in message
    assert "声明 1024 MB" in message  # refused on what the zip declares, before inflating a byte


# The child reports its own peak (VmHWM): ru_maxrss would carry over the peak of the test process
# that started it (Linux keeps it across exec), hundreds of MB late in a full run.
_MEASURED = """
import json, sys
from datetime import date
from pathlib import Path
from pipeline.ingest.parse import FileRejected, parse_file
from pipeline.reference import load_reference
reference = load_reference(Path(sys.argv[2]))
try:
    parse_file(Path(sys.argv[1]), reference=reference, today=date(2025, 1, 31), max_bytes=20 * 1024 * 1024)
    outcome = "read"
except FileRejected as exc:
    outcome = str(exc)
print(json.dumps({"outcome": outcome, "rss_mb": int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM:')).split()[1]) / 1024}))
"""


def test_a_sheet_lying_about_its_size_is_refused_while_inflating_in_bounded_memory(lying_bomb: Path) -> None:
    config = Path(__file__).resolve().parents[1] / "config"
    done = subprocess.run([sys.executable, "-c", _MEASURED, str(lying_bomb), str(config)],
                          capture_output=True, text=True, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert "解压后超过上限 256 MB" in result["outcome"] and "xl/worksheets/sheet1.xml" in result["outcome"]
    assert result["rss_mb"] < 400, result  # inflated in chunks: not the gigabyte, nor the 256 MB allowed


def test_the_inflated_size_limit_is_a_setting(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "t.xlsx", [good_cells(n) for n in range(1, 200)])
    assert len(parse(path).rows) == 199
    message = refusal(path, limits=ImportLimits(max_inflated_bytes=20_000))
    assert "解压后超过上限" in message


def test_cells_far_apart_are_refused_before_calamine_lays_them_out(tmp_path: Path) -> None:
    header_and_one = template_rows([good_cells(1)])
    tall = forge_xlsx(tmp_path / "tall.xlsx", [("导入模板", sheet_xml([*header_and_one, row_xml(1048576, ["x"])]))])
    assert "第1行至第1048576行" in refusal(tall) and "PIPELINE_IMPORT_MAX_ROWS" in refusal(tall)
    wide = forge_xlsx(tmp_path / "wide.xlsx",
                      [("导入模板", sheet_xml([*header_and_one, row_xml(3, ["x"], first_column=16383)]))])
    assert "在第 AZ 列之后还有数据" in refusal(wide)
    unplaced = forge_xlsx(tmp_path / "unplaced.xlsx",
                          [("导入模板", sheet_xml([*header_and_one, '<row r="3">' + "<c><v>1</v></c>" * 20000 + "</row>"]))])
    assert "缺少位置信息" in refusal(unplaced)


def test_more_rows_than_allowed_are_refused_in_every_format(tmp_path: Path) -> None:
    rows = [good_cells(n) for n in range(1, 13)]
    limits = ImportLimits(max_rows=10)
    xlsx = write_xlsx(tmp_path / "t.xlsx", rows)
    assert "超过 10 行" in refusal(xlsx, limits=limits) and "PIPELINE_IMPORT_MAX_ROWS" in refusal(xlsx, limits=limits)
    assert "超过 10 行" in refusal(write_csv(tmp_path / "t.csv", rows), limits=limits)
    jsonl = tmp_path / "t.jsonl"
    jsonl.write_text("\n".join(json.dumps({"code": code(n)}) for n in range(12)), encoding="utf-8")
    assert "超过 10 行" in refusal(jsonl, limits=limits)
    assert len(parse(xlsx, limits=ImportLimits(max_rows=13)).rows) == 12  # header + 12 rows


# ---------------------------------------------------------------- cells no database keeps


def _jsonl(path: Path, records: list[dict[str, object] | str]) -> Path:
    lines = (r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in records)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _record(n: int, **changes: object) -> dict[str, object]:
    base = {"code": code(n), "name": f"测试项目{n}", "county": "荆州区", "nature": "续建", "total_investment": 500,
            "as_of": "2024-12-31"}
    return {**base, **changes}


def test_nul_in_a_cell_is_a_row_error_and_the_rows_beside_it_land(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "t.csv", [good_cells(1), good_cells(2, **{NAME: "甲\x00乙"}), good_cells(3)])
    parsed = parse(path)
    [error] = parsed.errors
    assert (error.row_number, error.header, error.raw_value) == (3, NAME, "甲␀乙")
    assert "空字符" in error.message
    assert [r.row_number for r in parsed.rows] == [2, 4]
    lines = _jsonl(tmp_path / "t.jsonl", [_record(1), _record(2, unit="x\u0000"), _record(3, source_id="S\u0000")])
    parsed = parse(lines)
    assert [(e.row_number, e.header) for e in parsed.errors] == [(2, "责任单位"), (3, "来源编号")]
    assert [r.code for r in parsed.rows] == [code(1)]


def test_a_csv_of_nul_is_still_refused_as_not_text(tmp_path: Path) -> None:
    path = tmp_path / "utf16.csv"
    path.write_bytes(",".join(HEADERS).encode("utf-16-le"))
    assert "不是可读的文本文件" in refusal(path)


def test_lone_surrogates_are_row_errors(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "t.jsonl", [_record(1), json.dumps(_record(2, name="\ud800断")), _record(3)])
    parsed = parse(path)
    [error] = parsed.errors
    assert (error.row_number, error.header, error.raw_value) == (2, NAME, "\ufffd断")
    assert "代理项" in error.message
    assert [r.code for r in parsed.rows] == [code(1), code(3)]
    keyed = _jsonl(tmp_path / "k.jsonl", [json.dumps({**_record(1), "\udfff": 1})])
    assert "无法识别的字段：\ufffd" in refusal(keyed)  # a jsonl file's keys are its headers


def test_integers_of_five_thousand_digits_are_row_errors(tmp_path: Path) -> None:
    digits = "7" * 5000
    dumps = lambda record: json.dumps(record, ensure_ascii=False)  # noqa: E731
    lines = [dumps(_record(1)),
             dumps(_record(2)).replace('"total_investment": 500', f'"total_investment": {digits}'),
             dumps(_record(3)).replace('"name": "测试项目3"', f'"name": {digits}'),
             dumps(_record(4)).replace('"as_of": "2024-12-31"', f'"as_of": {digits}'),
             dumps(_record(5, annual_plan="99999999999999"))]
    parsed = parse(_jsonl(tmp_path / "t.jsonl", lines))
    found = {(e.row_number, e.header): e.message for e in parsed.errors}
    assert "数值过大" in found[(2, TOTAL)] and "内容过长" in found[(3, NAME)]
    assert "日期" in found[(4, ASOF)] and "数值过大" in found[(5, "年度计划投资（万元）")]
    assert all(len(e.raw_value or "") <= 201 for e in parsed.errors)
    assert [r.code for r in parsed.rows] == [code(1)]
    csv = parse(write_csv(tmp_path / "t.csv", [good_cells(1, **{TOTAL: digits}), good_cells(2)]))
    assert [(e.row_number, e.header) for e in csv.errors] == [(2, TOTAL)] and len(csv.rows) == 1


def test_the_largest_amount_is_kept_and_one_more_is_refused(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "t.csv", [good_cells(1, **{TOTAL: "999999999999.99"}),
                                          good_cells(2, **{TOTAL: "1000000000000"})])
    parsed = parse(path)
    assert [str(r.total_investment) for r in parsed.rows] == ["999999999999.99"]
    assert [(e.row_number, e.header) for e in parsed.errors] == [(3, TOTAL)]


def test_json_nested_too_deep_is_a_row_error_in_a_jsonl_file(tmp_path: Path) -> None:
    deep = '{"code": ' + "[" * 100_000 + "]" * 100_000 + "}"
    parsed = parse(_jsonl(tmp_path / "t.jsonl", [_record(1), deep, _record(3)]))
    [error] = parsed.errors
    assert error.row_number == 2 and "嵌套过深" in error.message
    assert len(parsed.rows) == 2


# ---------------------------------------------------------------- a 报告期 in the future


def test_a_report_from_the_future_is_refused_counted_from_today(tmp_path: Path) -> None:
    rows = [good_cells(1, **{ASOF: "2025-01-31"}), good_cells(2, **{ASOF: "2025-02-01"}),
            good_cells(3, **{ASOF: "2099-06-30"})]
    parsed = parse(write_csv(tmp_path / "t.csv", rows), today=date(2024, 12, 31))
    assert [r.code for r in parsed.rows] == [code(1)]
    assert [(e.row_number, e.header) for e in parsed.errors] == [(3, ASOF), (4, ASOF)]
    assert "报告期（2099-06-30）晚于今天（2024-12-31）超过31天" in parsed.errors[1].message
    strict = parse(write_csv(tmp_path / "s.csv", rows[:1]), today=date(2025, 1, 30),
                   limits=ImportLimits(max_future_days=0))
    assert [(e.row_number, e.header) for e in strict.errors] == [(2, ASOF)]


# ---------------------------------------------------------------- several sheets, hidden rows


def test_every_sheet_with_the_template_headers_is_read_and_rows_say_which_sheet(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "t.xlsx", [good_cells(1), good_cells(2, **{TOTAL: "-1"})])
    workbook = load_workbook(path)
    workbook.active.title = "11月"
    december = workbook.create_sheet("12月")
    december.append(list(HEADERS))
    for cells in (good_cells(3, **{ASOF: "2024-12-31"}), good_cells(1), good_cells(4, **{"县市区": "火星区"})):
        december.append([cells.get(h) or None for h in HEADERS])
    workbook.create_sheet("填表说明")["A1"] = "请按模板填写，金额单位为万元"
    workbook.save(path)
    parsed = parse(path)
    assert [(r.code, r.row_number) for r in parsed.rows] == [(code(1), 2), (code(3), 2)]
    assert [(e.sheet, e.row_number, e.header) for e in parsed.errors] == [
        ("11月", 3, TOTAL), ("12月", 3, "项目代码"), ("12月", 4, "县市区")]
    assert parsed.errors[0].describe().startswith("工作表“11月”第3行「总投资（万元）」：")
    assert "与工作表“11月”第2行重复" in parsed.errors[1].message


def test_a_workbook_without_template_headers_is_refused_naming_what_it_found(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "t.xlsx", [{"编号": "1", "名称": "x"}], headers=("编号", "名称"))
    assert "缺少必填列" in refusal(path)


def test_hidden_rows_are_imported_and_counted(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "t.xlsx", [good_cells(n) for n in range(1, 6)])
    workbook = load_workbook(path)
    for row in (3, 5):
        workbook.active.row_dimensions[row].hidden = True
    workbook.active.column_dimensions["B"].hidden = True  # a hidden column is not a hidden row
    workbook.save(path)
    parsed = parse(path)
    assert len(parsed.rows) == 5 and parsed.hidden_rows == 2
    forged = forge_xlsx(tmp_path / "f.xlsx", [("a", sheet_xml(template_rows([good_cells(1)], hidden=[2]))),
                                              ("b", sheet_xml(template_rows([good_cells(2), good_cells(3)])))],
                        hidden_sheets=[1])
    assert parse(forged).hidden_rows == 3  # one hidden row, and the two rows of a hidden sheet


# ---------------------------------------------------------------- a unit's progress-only rows


def test_a_units_rows_may_leave_the_master_data_out(tmp_path: Path) -> None:
    headers = ("项目代码", "报告期", "实际开工日期", "累计完成投资（万元）", "本年完成投资（万元）")
    progress = [{"项目代码": code(1), "报告期": "2024-12-31", "实际开工日期": "2024-03-01",
                 "累计完成投资（万元）": "300", "本年完成投资（万元）": "200"},
                {"项目代码": code(2), "报告期": "2024-12-31", "累计完成投资（万元）": "100", "本年完成投资（万元）": "200"}]
    path = write_csv(tmp_path / "p.csv", progress, headers=headers)
    parsed = parse(path, progress_only=True)
    [row] = parsed.rows
    assert (row.code, row.name, row.county, row.nature, row.total_investment, row.cumulative_completed) == (
        code(1), None, None, None, None, 300)
    assert [(e.row_number, e.header) for e in parsed.errors] == [(3, "累计完成投资（万元）")]
    assert "缺少必填列：项目名称、县市区、建设性质、总投资（万元）" in refusal(path)  # the office's rows need them


def test_a_units_master_values_are_still_checked_when_given(tmp_path: Path) -> None:
    rows = [good_cells(1, 县市区="火星区"), good_cells(2, 建设性质="新开工", 计划开工日期=""),
            good_cells(3, 计划竣工日期="2020-01-01"), good_cells(4, **{NAME: "", TOTAL: ""})]
    parsed = parse(write_csv(tmp_path / "t.csv", rows), progress_only=True)
    assert [(e.row_number, e.header) for e in parsed.errors] == [(2, "县市区"), (4, "计划竣工日期")]
    assert [r.code for r in parsed.rows] == [code(2), code(4)]


def test_the_limits_are_validated_settings(tmp_path: Path) -> None:
    from pipeline.settings import SettingsError, load_settings

    settings = load_settings(data_dir=tmp_path, import_max_rows=5, xlsx_max_inflated_bytes=1000, max_future_days=0)
    assert ImportLimits.from_settings(settings) == ImportLimits(max_rows=5, max_inflated_bytes=1000, max_future_days=0)
    for name, value in (("import_max_rows", 0), ("max_future_days", -1), ("api_max_depth", 1)):
        with pytest.raises(SettingsError, match=f"PIPELINE_{name.upper()}"):
            load_settings(data_dir=tmp_path, **{name: value})
