"""The project list's current view as an xlsx file, with spreadsheet formula injection neutralised
(the same ``safe_cell`` as the digests' Excel attachments)."""

from __future__ import annotations

import io
from collections.abc import Iterable
from typing import Any

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Font

from pipeline.alerts.workbook import safe_cell
from pipeline.web.queries import COLOR_NAMES, ProjectRow

HEADERS = ("项目代码", "项目名称", "县市区", "行业", "建设性质", "包保领导", "责任单位", "挂牌", "计算挂牌", "人工调整",
           "总投资（万元）", "年度计划投资（万元）", "本年完成投资（万元）", "报告期", "挂牌原因")
MAX_ROWS = 100_000
neutralise = safe_cell  # text starting with = + - @ (or a tab/CR) gets a leading ', as in the digests' workbooks


def _values(r: ProjectRow) -> list[Any]:
    return [
        r.code, r.name, r.county, r.industry, r.nature, r.leader, r.unit, COLOR_NAMES.get(r.color or "", ""),
        COLOR_NAMES.get(r.computed_color or "", ""), "是" if r.overridden else "否",
        float(r.total_investment) if r.total_investment is not None else None,
        float(r.annual_plan) if r.annual_plan is not None else None,
        float(r.ytd_completed) if r.ytd_completed is not None else None,
        r.as_of.isoformat() if r.as_of else None,
        "；".join(x.get("message", "") for x in r.reasons),
    ]


def projects_xlsx(rows: Iterable[ProjectRow], *, title: str) -> bytes:
    wb = Workbook(write_only=True)
    ws = wb.create_sheet("项目清单")
    ws.freeze_panes = "A2"
    head = []
    for h in HEADERS:
        cell = WriteOnlyCell(ws, value=h)
        cell.font = Font(bold=True)
        head.append(cell)
    ws.append(head)
    for r in rows:
        ws.append([neutralise(v) for v in _values(r)])
    wb.properties.title = neutralise(title)
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()
