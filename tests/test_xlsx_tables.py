"""The direct xlsx writer: what openpyxl and python-calamine read back is what was written."""

from __future__ import annotations

import io
from datetime import date, datetime
from decimal import Decimal

import openpyxl
from python_calamine import CalamineWorkbook

from pipeline.xlsx_tables import Table, TableColumn, column_letter, write_tables

COLUMNS = (
    TableColumn("项目代码", 26), TableColumn("名称<&>", 30, wrap=True), TableColumn("挂牌", 10, filled=True),
    TableColumn("日期", 12, "yyyy-mm-dd"), TableColumn("比率", 10, "0.0%"), TableColumn("金额", 16, "#,##0.00"),
    TableColumn("是否", 6),
)
ROWS = [
    ("2024-421003-44-01-000001", "A & B <c> 'x' \"y\"\n第二行", "红牌", date(2024, 6, 21), 0.5, Decimal("1234.50"), True),
    ("2024-421003-44-01-000002", "'=1+1", "黄牌", datetime(2024, 1, 1, 12, 0), None, 7, False),
    ("2024-421003-44-01-000003", "  空格  ", "绿牌", None, 1, Decimal("0"), None),
]


def book() -> openpyxl.Workbook:
    content = write_tables([Table("红黄牌项目", COLUMNS, ROWS, lambda row: {"红牌": "F4C7C3", "黄牌": "FCE8B2"}.get(row[2])),
                            Table("空表", COLUMNS[:2], [])])
    return openpyxl.load_workbook(io.BytesIO(content))


def test_values_come_back_typed() -> None:
    sheet = book()["红黄牌项目"]
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0] == tuple(c.header for c in COLUMNS)
    assert rows[1] == ("2024-421003-44-01-000001", "A & B <c> 'x' \"y\"\n第二行", "红牌", datetime(2024, 6, 21), 0.5,
                       1234.5, True)
    assert rows[2] == ("2024-421003-44-01-000002", "'=1+1", "黄牌", datetime(2024, 1, 1, 12, 0), None, 7, False)
    assert rows[3] == ("2024-421003-44-01-000003", "  空格  ", "绿牌", None, 1, 0, None)
    assert sheet["B3"].data_type == "s"  # a string that looks like a formula stays a string


def test_formats_fills_widths_frozen_header_and_filter() -> None:
    wb = book()
    sheet = wb["红黄牌项目"]
    assert wb.sheetnames == ["红黄牌项目", "空表"]
    assert sheet.freeze_panes == "A2" and sheet.auto_filter.ref == "A1:G4"
    assert sheet["D2"].number_format == "yyyy-mm-dd" and sheet["E2"].number_format == "0.0%"
    assert sheet["F2"].number_format == "#,##0.00"
    assert sheet["A1"].font.b and not sheet["A2"].font.b
    assert sheet["C2"].fill.fgColor.rgb == "FFF4C7C3" and sheet["C3"].fill.fgColor.rgb == "FFFCE8B2"
    assert sheet["C4"].fill.patternType is None
    assert sheet["B2"].alignment.wrap_text and not sheet["A2"].alignment.wrap_text
    assert sheet.column_dimensions["B"].width == 30
    empty = wb["空表"]
    assert list(empty.iter_rows(values_only=True)) == [("项目代码", "名称<&>")] and empty.freeze_panes == "A2"


def test_calamine_reads_it_too() -> None:
    content = write_tables([Table("表", COLUMNS, ROWS)])
    rows = CalamineWorkbook.from_filelike(io.BytesIO(content)).get_sheet_by_name("表").to_python()
    assert rows[1][0] == "2024-421003-44-01-000001" and rows[1][1].startswith("A & B <c>")


def test_column_letters() -> None:
    assert [column_letter(i) for i in (1, 26, 27, 52, 53, 702, 703)] == ["A", "Z", "AA", "AZ", "BA", "ZZ", "AAA"]


class Counted:
    """A sized sequence of rows made as they are read (as the digests' sheets are)."""

    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __iter__(self):  # type: ignore[no-untyped-def]
        return ((f"代码{i}", i, date(2024, 1, 1 + i % 28)) for i in range(self.n))


def test_a_sheet_of_many_blocks_is_written_whole_from_a_lazy_sequence_or_a_generator() -> None:
    import pipeline.xlsx_tables as xlsx_tables

    n = 2 * xlsx_tables.ROWS_PER_WRITE + 7  # three blocks of rows into the compressed sheet
    columns = (TableColumn("代码", 10), TableColumn("数", 8), TableColumn("日期", 12, "yyyy-mm-dd"))
    expected = [("代码", "数", "日期"), *((f"代码{i}", i, datetime(2024, 1, 1 + i % 28)) for i in range(n))]
    for rows in (Counted(n), iter(Counted(n))):
        sheet = openpyxl.load_workbook(io.BytesIO(write_tables([Table("表", columns, rows)])))["表"]
        assert list(sheet.iter_rows(values_only=True)) == expected
        assert sheet.auto_filter.ref == f"A1:C{n + 1}"
