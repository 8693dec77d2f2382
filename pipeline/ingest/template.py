"""The import template of SPEC §2: headers, English aliases, types; and a validated row."""

from __future__ import annotations

from dataclasses import dataclass, field
from collections.abc import Mapping
from datetime import date
from decimal import Decimal
from enum import Enum
from typing import Any

from pipeline.facts import ProjectFacts


class FieldType(str, Enum):
    TEXT = "text"
    NUMBER = "number"
    DATE = "date"
    NATURE = "nature"  # 新开工 / 续建
    YES_NO = "yes_no"  # 是 / 否
    LISTS = "lists"  # ;-separated list names


@dataclass(frozen=True)
class TemplateField:
    header: str  # the Chinese header
    alias: str  # the English alias (also the JSON key)
    type: FieldType
    required: bool = False
    # Master data (SPEC §3) belongs to the office: a unit's progress-only row may leave it out.
    master: bool = False


TEMPLATE_FIELDS: tuple[TemplateField, ...] = (
    TemplateField("项目代码", "code", FieldType.TEXT, required=True),
    TemplateField("项目名称", "name", FieldType.TEXT, required=True, master=True),
    TemplateField("县市区", "county", FieldType.TEXT, required=True, master=True),
    TemplateField("行业", "industry", FieldType.TEXT, master=True),
    TemplateField("所属清单", "lists", FieldType.LISTS, master=True),
    TemplateField("建设性质", "nature", FieldType.NATURE, required=True, master=True),
    TemplateField("总投资（万元）", "total_investment", FieldType.NUMBER, required=True, master=True),
    TemplateField("年度计划投资（万元）", "annual_plan", FieldType.NUMBER, master=True),
    TemplateField("计划开工日期", "planned_start", FieldType.DATE, master=True),
    TemplateField("计划竣工日期", "planned_completion", FieldType.DATE, master=True),
    TemplateField("实际开工日期", "actual_start", FieldType.DATE),
    TemplateField("实际竣工日期", "actual_completion", FieldType.DATE),
    TemplateField("入统日期", "stats_included_on", FieldType.DATE),
    TemplateField("累计完成投资（万元）", "cumulative_completed", FieldType.NUMBER),
    TemplateField("本年完成投资（万元）", "ytd_completed", FieldType.NUMBER),
    TemplateField("包保领导", "leader", FieldType.TEXT, master=True),
    TemplateField("责任单位", "unit", FieldType.TEXT, master=True),
    TemplateField("存在问题", "problems", FieldType.TEXT),
    TemplateField("需协调", "needs_coordination", FieldType.YES_NO),
    TemplateField("报告期", "as_of", FieldType.DATE, required=True),
)

FIELDS_BY_ALIAS: dict[str, TemplateField] = {f.alias: f for f in TEMPLATE_FIELDS}
HEADERS: tuple[str, ...] = tuple(f.header for f in TEMPLATE_FIELDS)
MASTER_ALIASES: frozenset[str] = frozenset(f.alias for f in TEMPLATE_FIELDS if f.master)

# An optional column carrying the source's own id for an update (its idempotency key).
SOURCE_ID_HEADER = "来源编号"
SOURCE_ID_ALIAS = "source_id"

# Columns the workspace's own files add beside the template's: the list export's flag columns and
# the rejected-rows report's explanation. The import ignores them, so those files go back in as they are.
EXPORT_ONLY_HEADERS: tuple[str, ...] = ("挂牌", "计算挂牌", "人工调整", "红牌确认", "挂牌原因")
PROBLEM_HEADER = "问题说明"

NATURE_NEW = "新开工"
NATURE_CONTINUING = "续建"


@dataclass(frozen=True)
class UpdateRow:
    """One validated template row: a status update about one project as of one date.

    The master fields are None only in a unit's progress-only row (SPEC §3), never in the office's.
    """

    code: str
    name: str | None
    county: str | None
    nature: str | None
    total_investment: Decimal | None
    as_of: date
    industry: str | None = None
    lists: tuple[str, ...] = ()
    annual_plan: Decimal | None = None
    planned_start: date | None = None
    planned_completion: date | None = None
    actual_start: date | None = None
    actual_completion: date | None = None
    stats_included_on: date | None = None
    cumulative_completed: Decimal | None = None
    ytd_completed: Decimal | None = None
    leader: str | None = None
    unit: str | None = None
    problems: str | None = None
    needs_coordination: bool = False
    source_id: str | None = None
    row_number: int | None = field(default=None, compare=False)

    def facts(self) -> ProjectFacts:
        return ProjectFacts(
            code=self.code,
            as_of=self.as_of,
            nature=self.nature,
            annual_plan=self.annual_plan,
            planned_start=self.planned_start,
            planned_completion=self.planned_completion,
            actual_start=self.actual_start,
            actual_completion=self.actual_completion,
            stats_included_on=self.stats_included_on,
            cumulative_completed=self.cumulative_completed,
            ytd_completed=self.ytd_completed,
            needs_coordination=self.needs_coordination,
            problems=self.problems,
        )


@dataclass(frozen=True)
class RowError:
    """Why one row (or one cell) was refused: row number, header, raw value, Chinese message.

    ``sheet`` names the worksheet when a workbook's rows come from more than one sheet.
    """

    row_number: int | None
    header: str | None
    raw_value: str | None
    message: str
    # The whole row as read (alias → cell), kept so the office can download the refused rows and fix them.
    cells: Mapping[str, Any] | None = field(default=None, compare=False)
    sheet: str | None = None

    @property
    def place(self) -> str:
        """Where the row is, as a user finds it: 「工作表“12月”第5行」, 「第5行」 or 「文件」."""
        sheet = f"工作表“{self.sheet}”" if self.sheet else ""
        if self.row_number is None:
            return sheet or "文件"
        return f"{sheet}第{self.row_number}行"

    def describe(self) -> str:
        where = self.place
        if self.header:
            where += f"「{self.header}」"
        return f"{where}：{self.message}"
