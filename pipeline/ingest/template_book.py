"""The import template as an Excel workbook for the counties and departments to fill in.

Sheet 导入模板 (the first, the one read on import): the headers, each with a note giving its rule,
required columns marked, column formats (dates, 万元 with two decimals, codes as text) and drop-down
lists for 县市区, 建设性质, 所属清单 and 需协调 from the configuration. Sheet 填表说明: what each
column means, its type and rule, and a filled-in sample row. Sheet 选项 (hidden) holds the lists.
"""

from __future__ import annotations

import io
from datetime import date
from pathlib import Path
from typing import Any

from openpyxl import Workbook
from openpyxl.comments import Comment
from openpyxl.styles import Font, PatternFill
from openpyxl.utils import get_column_letter, quote_sheetname
from openpyxl.worksheet.datavalidation import DataValidation

from pipeline.ingest.sheet_format import HEADER_FILL, HEADER_FONT, WIDTHS, WRAP, number_format
from pipeline.ingest.template import NATURE_CONTINUING, NATURE_NEW, TEMPLATE_FIELDS, FieldType
from pipeline.reference import Reference

DATA_SHEET = "导入模板"
GUIDE_SHEET = "填表说明"
CHOICES_SHEET = "选项"
VALIDATED_ROWS = 5000  # drop-downs and checks on the first 5,000 data rows
REQUIRED_FILL = PatternFill("solid", fgColor="FCE8B2")

# What each column holds, as the 填表说明 says it (SPEC §2).
RULES: dict[str, str] = {
    "code": "必填。全国投资项目统一代码，24位：年份-行政区划-部门-类别-流水号，如 2024-421003-44-01-000123",
    "name": "必填。项目全称",
    "county": "必填。从下拉列表选择县市区",
    "industry": "选填。行业",
    "lists": "选填。所属清单，可填多个，用英文分号“;”分隔",
    "nature": "必填。新开工 或 续建",
    "total_investment": "必填。单位：万元，大于0",
    "annual_plan": "单位：万元，不小于0",
    "planned_start": "新开工项目必填。日期",
    "planned_completion": "日期，不早于计划开工日期",
    "actual_start": "日期，不晚于报告期",
    "actual_completion": "日期，不早于实际开工日期、不晚于报告期",
    "stats_included_on": "纳入固定资产投资统计的日期，不早于实际开工日期、不晚于报告期",
    "cumulative_completed": "单位：万元，不小于本年完成投资",
    "ytd_completed": "单位：万元，不小于0",
    "leader": "包保市领导姓名",
    "unit": "责任单位全称",
    "problems": "选填。项目推进中存在的问题",
    "needs_coordination": "是 或 否，不填为否",
    "as_of": "必填。本行数据所描述的日期，一般为月末，如 2024-03-31",
}
TYPE_NAMES = {FieldType.TEXT: "文本", FieldType.NUMBER: "数字（万元）", FieldType.DATE: "日期", FieldType.NATURE: "新开工/续建",
              FieldType.YES_NO: "是/否", FieldType.LISTS: "清单名称，分号分隔"}


def sample_row(reference: Reference) -> dict[str, Any]:
    """A filled-in example that passes every check (shown in 填表说明, never on the data sheet)."""
    county = reference.counties[1] if len(reference.counties) > 1 else reference.counties[0]
    return {
        "code": f"2024-{county.code}-44-01-000123", "name": "示例：某某产业园基础设施项目", "county": county.name,
        "industry": reference.industries[0] if reference.industries else None,
        "lists": ";".join(reference.lists[:2]), "nature": NATURE_NEW, "total_investment": 50000,
        "annual_plan": 12000, "planned_start": date(2024, 3, 1), "planned_completion": date(2026, 12, 31),
        "actual_start": date(2024, 3, 15), "actual_completion": None, "stats_included_on": date(2024, 4, 20),
        "cumulative_completed": 9000, "ytd_completed": 9000, "leader": "张三", "unit": f"{county.name}人民政府",
        "problems": "征地拆迁进度偏慢", "needs_coordination": "是", "as_of": date(2024, 9, 30),
    }


def _choices(book: Workbook, reference: Reference) -> dict[str, str]:
    """The hidden sheet of drop-down lists; alias → the range a list validation refers to."""
    sheet = book.create_sheet(CHOICES_SHEET)
    columns = {"county": [c.name for c in reference.counties], "nature": [NATURE_NEW, NATURE_CONTINUING],
               "lists": list(reference.lists), "needs_coordination": ["是", "否"]}
    ranges = {}
    for index, (alias, values) in enumerate(columns.items(), start=1):
        letter = get_column_letter(index)
        sheet.cell(row=1, column=index, value=alias)
        for row, value in enumerate(values, start=2):
            sheet.cell(row=row, column=index, value=value)
        ranges[alias] = f"{quote_sheetname(CHOICES_SHEET)}!${letter}$2:${letter}${len(values) + 1}"
    sheet.sheet_state = "hidden"
    return ranges


def _validation(alias: str, kind: FieldType, ranges: dict[str, str]) -> DataValidation | None:
    header = next(f.header for f in TEMPLATE_FIELDS if f.alias == alias)
    if alias in ranges:
        strict = alias != "lists"  # a project may be on several lists: the drop-down helps, it does not refuse
        dv = DataValidation(type="list", formula1=ranges[alias], allow_blank=True, showErrorMessage=strict,
                            errorTitle=header, error=f"请从下拉列表中选择{header}")
    elif kind is FieldType.DATE:
        dv = DataValidation(type="date", operator="between", formula1="DATE(1990,1,1)", formula2="DATE(2100,12,31)",
                            allow_blank=True, showErrorMessage=True, errorTitle=header,
                            error="请填写日期，如 2024-03-31")
    elif kind is FieldType.NUMBER:
        dv = DataValidation(type="decimal", operator="greaterThan" if alias == "total_investment" else "greaterThanOrEqual",
                            formula1="0", allow_blank=True, showErrorMessage=True, errorTitle=header,
                            error="请填写数字（单位：万元），" + ("大于0" if alias == "total_investment" else "不小于0"))
    else:
        return None
    dv.promptTitle, dv.prompt, dv.showInputMessage = header, RULES[alias][:255], True
    return dv


def _data_sheet(book: Workbook, reference: Reference) -> None:
    sheet = book.active
    sheet.title = DATA_SHEET
    ranges = _choices(book, reference)
    for index, f in enumerate(TEMPLATE_FIELDS, start=1):
        letter = get_column_letter(index)
        cell = sheet.cell(row=1, column=index, value=f.header)
        cell.font, cell.fill = HEADER_FONT, REQUIRED_FILL if f.required else HEADER_FILL
        cell.comment = Comment(RULES[f.alias], "投资科")
        column = sheet.column_dimensions[letter]
        column.width = WIDTHS[f.alias]
        fmt = number_format(f.alias)
        if fmt:
            column.number_format = fmt
        dv = _validation(f.alias, f.type, ranges)
        if dv is not None:
            sheet.add_data_validation(dv)
            dv.add(f"{letter}2:{letter}{VALIDATED_ROWS + 1}")
    sheet.freeze_panes = "A2"
    sheet.auto_filter.ref = f"A1:{get_column_letter(len(TEMPLATE_FIELDS))}1"


def _guide_sheet(book: Workbook, reference: Reference) -> None:
    sheet = book.create_sheet(GUIDE_SHEET)
    for letter, width in zip("ABCDE", (22, 22, 10, 18, 70)):
        sheet.column_dimensions[letter].width = width
    sheet.append(["重大项目月报导入模板 · 填表说明"])
    sheet["A1"].font = Font(bold=True, size=14)
    for line in (
        "1. 在“导入模板”工作表填写，每个项目每个报告期一行；请勿修改、删除第一行的列名，列的顺序可以调整。",
        "2. 橙色列名为必填项；日期填为 2024-03-31 或 Excel 日期；金额单位为万元，可带两位小数。",
        f"3. 县市区从下拉列表选择（{'、'.join(c.name for c in reference.counties)}）。",
        f"4. 所属清单可填多个，用英文分号“;”分隔（{'；'.join(reference.lists)}）。",
        "5. 有问题的行上传后逐行列出原因、不入库，其余行照常入库；可下载“问题行”文件，改正后重新上传。",
        "6. 同一数据重复上传只入库一次；同一项目同一报告期以后上传的为准。",
    ):
        sheet.append([line])
    sheet.append([])
    sheet.append(["列名", "英文别名（接口、CSV 亦可用）", "是否必填", "类型", "填写要求"])
    header_row = sheet.max_row
    for f in TEMPLATE_FIELDS:
        required = "必填" if f.required else ("新开工必填" if f.alias == "planned_start" else "")
        sheet.append([f.header, f.alias, required, TYPE_NAMES[f.type], RULES[f.alias]])
    for cell in sheet[header_row]:
        cell.font, cell.fill = HEADER_FONT, HEADER_FILL
    sheet.append([])
    sheet.append(["示例（一行完整的数据，可照此填写）"])
    sheet.cell(row=sheet.max_row, column=1).font = Font(bold=True)
    example = sample_row(reference)
    sheet.append([f.header for f in TEMPLATE_FIELDS])
    for cell in sheet[sheet.max_row]:
        cell.font, cell.fill = HEADER_FONT, HEADER_FILL
    sheet.append([example[f.alias] for f in TEMPLATE_FIELDS])
    for f, cell in zip(TEMPLATE_FIELDS, sheet[sheet.max_row]):
        fmt = number_format(f.alias)
        if fmt and cell.value is not None:
            cell.number_format = fmt
    for row in sheet.iter_rows(min_row=2, max_row=header_row + len(TEMPLATE_FIELDS)):
        for cell in row:
            cell.alignment = WRAP


def import_template(reference: Reference) -> bytes:
    """The template workbook's bytes."""
    book = Workbook()
    _data_sheet(book, reference)
    _guide_sheet(book, reference)
    book.move_sheet(GUIDE_SHEET, offset=-1)  # 导入模板, 填表说明, then the hidden 选项
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def write_import_template(path: Path, reference: Reference) -> Path:
    path = Path(path)
    path.write_bytes(import_template(reference))
    return path
