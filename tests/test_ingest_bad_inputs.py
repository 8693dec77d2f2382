"""Bad inputs: each bad row is refused with its row number, header, raw value and a Chinese message,
while the good rows of the same file still come through; bad files are refused whole."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pipeline.ingest.parse import FileRejected
from pipeline.ingest.template import HEADERS, TEMPLATE_FIELDS
from pipeline.ingest.values import display
from tests.ingest_helpers import code, good_cells, has_chinese, parse, write_csv, write_xlsx

ALIAS_OF = {f.header: f.alias for f in TEMPLATE_FIELDS}


@dataclass(frozen=True)
class BadRow:
    id: str
    changes: dict[str, Any]
    header: str | None  # the header the error must name
    phrase: str  # a key phrase of the Chinese message
    fmt: str = "csv"  # csv | xlsx | jsonl
    raw_line: str | None = None  # jsonl only: the bad line as written
    raw_value: Any = field(default=None)  # the raw value the error must show, when not the changed cell

    def expected_raw(self) -> str | None:
        if self.raw_value is not None:
            return self.raw_value
        if self.header in self.changes:
            return display(self.changes[self.header])
        return None


TOTAL, PLAN, YTD, CUM = "总投资（万元）", "年度计划投资（万元）", "本年完成投资（万元）", "累计完成投资（万元）"
PS, PC, AS, AC, STATS, ASOF = "计划开工日期", "计划竣工日期", "实际开工日期", "实际竣工日期", "入统日期", "报告期"

CASES = [
    # wrong types
    BadRow("text-in-number", {TOTAL: "五万"}, TOTAL, "应为数字"),
    BadRow("text-in-date", {ASOF: "三月底"}, ASOF, "应为日期"),
    BadRow("bad-thousands-grouping", {PLAN: "1,23,4"}, PLAN, "应为数字"),
    BadRow("two-decimal-points", {YTD: "30.0.1"}, YTD, "应为数字"),
    BadRow("xlsx-text-in-date-cell", {PS: "下个月"}, PS, "应为日期", fmt="xlsx"),
    BadRow("xlsx-serial-out-of-range", {ASOF: 12}, ASOF, "Excel 日期序号", fmt="xlsx"),
    BadRow("xlsx-boolean-in-number", {TOTAL: True}, TOTAL, "应为数字", fmt="xlsx"),
    BadRow("jsonl-boolean-in-number", {TOTAL: True}, TOTAL, "应为数字", fmt="jsonl"),
    BadRow("jsonl-list-in-text", {"项目名称": ["甲", "乙"]}, "项目名称", "应为文本", fmt="jsonl"),
    BadRow("jsonl-line-not-json", {}, None, "不是有效的 JSON", fmt="jsonl", raw_line='{"code": "2024-'),
    BadRow("jsonl-line-not-object", {}, None, "JSON 对象", fmt="jsonl", raw_line="[1, 2, 3]"),
    # money
    BadRow("negative-total", {TOTAL: "-100"}, TOTAL, "必须大于0"),
    BadRow("zero-total", {TOTAL: "0"}, TOTAL, "必须大于0"),
    BadRow("negative-annual-plan", {PLAN: "-5"}, PLAN, "不能为负数"),
    BadRow("negative-ytd", {YTD: "-1.5"}, YTD, "不能为负数"),
    BadRow("negative-cumulative", {CUM: "-20", YTD: "0"}, CUM, "不能为负数"),
    BadRow("cumulative-below-ytd", {CUM: "2,000", YTD: "3000"}, CUM, "不能小于本年完成投资"),
    BadRow("nan", {TOTAL: "NaN"}, TOTAL, "NaN"),
    BadRow("infinity", {PLAN: "inf"}, PLAN, "无穷大"),
    BadRow("jsonl-nan-number", {YTD: float("nan")}, YTD, "NaN", fmt="jsonl", raw_value="nan"),
    BadRow("absurdly-large", {TOTAL: "1e400"}, TOTAL, "应为数字"),
    BadRow("too-large-amount", {TOTAL: "99999999999999"}, TOTAL, "数值过大"),
    # dates out of order
    BadRow("planned-completion-before-start", {PC: "2022-12-31"}, PC, "早于计划开工日期"),
    BadRow("actual-completion-before-start", {AC: "2023-02-01"}, AC, "早于实际开工日期"),
    BadRow("stats-before-start", {STATS: "2023-02-28"}, STATS, "早于实际开工日期"),
    BadRow("actual-start-after-as-of", {AS: "2024-04-01", STATS: ""}, AS, "晚于报告期"),
    BadRow("actual-completion-after-as-of", {AC: "2024-05-01"}, AC, "晚于报告期"),
    BadRow("stats-after-as-of", {STATS: "2024/4/1"}, STATS, "晚于报告期"),
    BadRow("stats-without-start", {AS: ""}, STATS, "未填实际开工日期"),
    BadRow("new-start-without-planned-start", {"建设性质": "新开工", PS: ""}, PS, "必须填写计划开工日期"),
    # invalid dates
    BadRow("february-30", {ASOF: "2024-02-30"}, ASOF, "不是有效的日期"),
    BadRow("february-29-non-leap", {PS: "2023年2月29日"}, PS, "不是有效的日期"),
    BadRow("month-13", {PC: "2026/13/01"}, PC, "不是有效的日期"),
    BadRow("year-out-of-range", {PS: "1899-01-01", AS: "", STATS: ""}, PS, "合理范围"),
    # reference data
    BadRow("unknown-county", {"县市区": "火星区"}, "县市区", "不在配置的县市区"),
    BadRow("unknown-list", {"所属清单": "亿元以上项目;省级重点项目"}, "所属清单", "省级重点项目"),
    # project code
    BadRow("code-too-short", {"项目代码": "2024-421003-44-01-00012"}, "项目代码", "格式应为"),
    BadRow("code-with-letters", {"项目代码": "2024-421003-AB-01-000123"}, "项目代码", "格式应为"),
    BadRow("code-wrong-separators", {"项目代码": "2024_421003_44_01_000123"}, "项目代码", "格式应为"),
    BadRow("code-no-separators", {"项目代码": "202442100344010001230000"}, "项目代码", "格式应为"),
    BadRow("code-year-too-old", {"项目代码": code(2, year=1899)}, "项目代码", "年份"),
    BadRow("code-year-too-new", {"项目代码": code(2, year=2999)}, "项目代码", "年份"),
    # duplicates inside one file
    BadRow("duplicate-code-and-as-of", {"项目代码": code(1)}, "项目代码", "与第2行重复"),
    # missing required values
    BadRow("missing-code", {"项目代码": ""}, "项目代码", "必填项为空"),
    BadRow("missing-name", {"项目名称": "  "}, "项目名称", "必填项为空", raw_value="  "),
    BadRow("missing-county", {"县市区": ""}, "县市区", "必填项为空"),
    BadRow("missing-nature", {"建设性质": ""}, "建设性质", "必填项为空"),
    BadRow("missing-total", {TOTAL: ""}, TOTAL, "必填项为空"),
    BadRow("missing-as-of", {ASOF: ""}, ASOF, "必填项为空"),
    # enumerations and text
    BadRow("bad-nature", {"建设性质": "新建"}, "建设性质", "建设性质应为"),
    BadRow("bad-yes-no", {"需协调": "可能"}, "需协调", "应为“是”或“否”"),
    BadRow("name-too-long", {"项目名称": "长" * 201}, "项目名称", "内容过长"),
    # formulas
    BadRow("string-formula-csv", {TOTAL: "=SUM(A1:A2)"}, TOTAL, "粘贴为数值"),
    BadRow("string-formula-in-text-csv", {"项目名称": '=HYPERLINK("http://x","点我")'}, "项目名称", "公式"),
    BadRow("real-formula-xlsx", {YTD: "=SUM(1000,2000)"}, YTD, "粘贴为数值", fmt="xlsx"),
    BadRow("jsonl-string-formula", {"存在问题": "=cmd|'/c calc'!A1"}, "存在问题", "公式", fmt="jsonl"),
]


def _write_jsonl(path: Path, rows: list[dict[str, Any]], bad_line: str | None) -> Path:
    lines = []
    for cells in rows:
        lines.append(json.dumps({ALIAS_OF[h]: v for h, v in cells.items() if v not in ("", None)}, ensure_ascii=False))
    if bad_line is not None:
        lines[1] = bad_line
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_a_bad_row_is_refused_and_the_good_rows_land(case: BadRow, tmp_path: Path) -> None:
    rows = [good_cells(1), good_cells(2, **case.changes), good_cells(3)]
    if case.fmt == "csv":
        path, bad_row, good_numbers = write_csv(tmp_path / "t.csv", rows), 3, [2, 4]
    elif case.fmt == "xlsx":
        path, bad_row, good_numbers = write_xlsx(tmp_path / "t.xlsx", rows), 3, [2, 4]
    else:
        path, bad_row, good_numbers = _write_jsonl(tmp_path / "t.jsonl", rows, case.raw_line), 2, [1, 3]

    parsed = parse(path)

    assert parsed.total_rows == 3
    assert parsed.errors, "the bad row was not refused"
    assert {e.row_number for e in parsed.errors} == {bad_row}
    matching = [e for e in parsed.errors if e.header == case.header and case.phrase in e.message]
    assert matching, [e.describe() for e in parsed.errors]
    assert all(has_chinese(e.message) for e in parsed.errors)
    expected_raw = case.expected_raw()
    if expected_raw is not None:
        assert matching[0].raw_value == expected_raw
    assert [r.row_number for r in parsed.rows] == good_numbers
    assert [r.code for r in parsed.rows] == [code(1), code(3)]
    assert all(r.name != rows[1]["项目名称"] for r in parsed.rows)


def test_every_error_of_a_row_is_reported_not_just_the_first(tmp_path: Path) -> None:
    bad = good_cells(2, **{"县市区": "火星区", TOTAL: "-1", ASOF: "2024-02-30", "需协调": "也许"})
    parsed = parse(write_csv(tmp_path / "t.csv", [good_cells(1), bad]))
    assert {e.header for e in parsed.errors} == {"县市区", TOTAL, ASOF, "需协调"}
    assert [r.row_number for r in parsed.rows] == [2]


def test_a_duplicate_names_the_earlier_row_even_with_a_different_date_format(tmp_path: Path) -> None:
    rows = [good_cells(1), good_cells(2), good_cells(1, **{ASOF: "2024年3月31日", "项目名称": "改名"})]
    parsed = parse(write_csv(tmp_path / "t.csv", rows))
    [error] = parsed.errors
    assert (error.row_number, error.header) == (4, "项目代码")
    assert "第2行" in error.message
    assert [r.name for r in parsed.rows] == ["测试项目1", "测试项目2"]


def test_the_same_project_in_two_reporting_periods_is_not_a_duplicate(tmp_path: Path) -> None:
    rows = [good_cells(1), good_cells(1, **{ASOF: "2024-04-30"})]
    parsed = parse(write_csv(tmp_path / "t.csv", rows))
    assert parsed.errors == [] and len(parsed.rows) == 2


def test_a_repeated_source_id_is_refused(tmp_path: Path) -> None:
    headers = (*HEADERS, "来源编号")
    rows = [good_cells(1, 来源编号="A-1"), good_cells(2, 来源编号="A-1")]
    parsed = parse(write_csv(tmp_path / "t.csv", rows, headers=headers))
    [error] = parsed.errors
    assert (error.row_number, error.header, error.raw_value) == (3, "来源编号", "A-1")
    assert "第2行" in error.message
    assert [r.source_id for r in parsed.rows] == ["A-1"]


# ---------------------------------------------------------------- whole files


def _text_file(name: str, content: bytes) -> Callable[[Path], Path]:
    def build(folder: Path) -> Path:
        path = folder / name
        path.write_bytes(content)
        return path

    return build


def _csv_with_headers(headers: tuple[str, ...]) -> Callable[[Path], Path]:
    def build(folder: Path) -> Path:
        rows = [{h: good_cells(1).get(h, "x") for h in headers}]
        return write_csv(folder / "h.csv", rows, headers=headers)

    return build


def _zip_of(name: str, members: dict[str, bytes]) -> Callable[[Path], Path]:
    def build(folder: Path) -> Path:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            for member, content in members.items():
                archive.writestr(member, content)
        path = folder / name
        path.write_bytes(buffer.getvalue())
        return path

    return build


def _truncated_xlsx(folder: Path) -> Path:
    good = write_xlsx(folder / "good.xlsx", [good_cells(1)])
    path = folder / "broken.xlsx"
    path.write_bytes(good.read_bytes()[:600])
    return path


def _empty_workbook(folder: Path) -> Path:
    from openpyxl import Workbook

    path = folder / "empty.xlsx"
    Workbook().save(path)
    return path


def _header_only_xlsx(folder: Path) -> Path:
    return write_xlsx(folder / "h.xlsx", [])


def _header_only_csv(folder: Path) -> Path:
    return write_csv(folder / "h.csv", [])


def _data_without_header_cell(folder: Path) -> Path:
    path = write_csv(folder / "t.csv", [good_cells(1)], headers=(*HEADERS, ""))
    text = path.read_text(encoding="utf-8").splitlines()
    text[1] += "神秘数据"
    path.write_text("\n".join(text) + "\n", encoding="utf-8")
    return path


MISSING_CODE = tuple(h for h in HEADERS if h != "项目代码")
WHOLE_FILE_CASES: list[tuple[str, Callable[[Path], Path], list[str]]] = [
    ("empty-csv", _text_file("empty.csv", b""), ["空文件"]),
    ("blank-csv", _text_file("blank.csv", b" \r\n\r\n  \n"), ["空文件"]),
    ("empty-jsonl", _text_file("empty.jsonl", b"\n\n"), ["空文件"]),
    ("empty-xlsx-bytes", _text_file("empty.xlsx", b""), ["空文件"]),
    ("workbook-without-cells", _empty_workbook, ["空文件"]),
    ("header-only-csv", _header_only_csv, ["只有表头"]),
    ("header-only-xlsx", _header_only_xlsx, ["只有表头"]),
    ("wrong-headers", _csv_with_headers(("编号", "名称", "地区")), ["缺少必填列", "项目代码", "无法识别的列", "编号"]),
    ("missing-required-header", _csv_with_headers(MISSING_CODE), ["缺少必填列：项目代码"]),
    ("unknown-extra-header", _csv_with_headers((*HEADERS, "联系电话")), ["无法识别的列：联系电话"]),
    ("repeated-header", _csv_with_headers((*HEADERS, "code")), ["重复的列"]),
    ("data-under-an-empty-header", _data_without_header_cell, ["无表头"]),
    ("text-renamed-xlsx", _text_file("report.xlsx", "项目代码,项目名称\n1,2\n".encode()), ["不是有效的 Excel"]),
    ("old-xls-format", _text_file("report.xls", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 600), [".xls", "另存为"]),
    ("corrupt-zip", _truncated_xlsx, ["已损坏"]),
    ("zip-of-something-else", _zip_of("photos.xlsx", {"a.txt": b"hello"}), ["不是 Excel"]),
    ("xlsx-as-csv", _zip_of("report.csv", {"a.txt": b"hello"}), ["Excel 文件而不是 CSV"]),
    ("binary-csv", _text_file("report.csv", b"\x00\x01\x02\xff\xfe\x00abc"), ["不是可读的文本文件"]),
    ("unknown-extension", _text_file("report.pdf", b"%PDF-1.4 ..."), ["不受支持", ".pdf"]),
    ("no-extension", _text_file("report", b"a,b\n"), ["不受支持"]),
    ("jsonl-that-is-not-json", _text_file("r.jsonl", "项目代码,项目名称\n1,2\n".encode()), ["不是有效的 JSONL"]),
    ("jsonl-unknown-keys", _text_file("r.jsonl", b'{"code": "x", "phone": "1"}\n'), ["无法识别的字段：phone"]),
]


@pytest.mark.parametrize(
    ("build", "phrases"), [(b, p) for _, b, p in WHOLE_FILE_CASES], ids=[i for i, _, _ in WHOLE_FILE_CASES]
)
def test_a_bad_file_is_refused_whole_with_a_message_naming_it(
    build: Callable[[Path], Path], phrases: list[str], tmp_path: Path
) -> None:
    path = build(tmp_path)
    with pytest.raises(FileRejected) as refused:
        parse(path)
    message = str(refused.value)
    assert path.name in message
    assert has_chinese(message)
    for phrase in phrases:
        assert phrase in message, message


def test_a_file_over_the_limit_is_refused_before_it_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "huge.xlsx"
    path.write_bytes(b"this is not even a workbook " * 2000)  # 56 kB of garbage

    def no_reading(*args: object, **kwargs: object) -> None:
        raise AssertionError("the file was opened")

    monkeypatch.setattr(Path, "open", no_reading)
    monkeypatch.setattr(Path, "read_bytes", no_reading)
    with pytest.raises(FileRejected) as refused:
        parse(path, max_bytes=50_000)
    assert "超过上限" in str(refused.value) and "huge.xlsx" in str(refused.value)


def test_a_file_just_under_the_limit_is_read(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "t.csv", [good_cells(1)])
    parsed = parse(path, max_bytes=path.stat().st_size)
    assert len(parsed.rows) == 1
