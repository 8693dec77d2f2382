"""A reason's numbers as a reader sees them: Chinese labels, units, sensible rounding.

A reason keeps its metric values raw (``{"pace_ratio": 0.3305, "pace_percent": 33.05, ...}``) so
that nothing is lost; pages and messages show them through ``shown_values``: each value once, with
its label and unit (完成比 33.1%), the evaluation date and values already said twice left out.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

EMPTY = "—"


def _number(value: Any, places: int) -> str:
    """Rounded half up (33.05 → 33.1, as a reader rounds), thousands separated, no trailing zeros."""
    exact = Decimal(str(value)).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    text = f"{exact:,.{places}f}"
    if places and "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def days(value: Any) -> str:
    return f"{int(value)} 天"


def money(value: Any) -> str:
    return f"{_number(value, 2)} 万元"


def percent(value: Any) -> str:
    return f"{_number(value, 1)}%"


def points(value: Any) -> str:
    return f"{_number(value, 1)} 个百分点"


def month_of_delay(value: Any) -> str:
    return f"第 {int(value)} 个月"


def plain(value: Any) -> str:
    if isinstance(value, bool):
        return "是" if value else "否"
    return str(value)


@dataclass(frozen=True)
class ValueFormat:
    label: str
    show: Callable[[Any], str]


# key → how it is shown, in the order a reader wants them.
VALUE_FORMATS: dict[str, ValueFormat] = {
    "planned_start": ValueFormat("计划开工", plain),
    "planned_completion": ValueFormat("计划竣工", plain),
    "actual_start": ValueFormat("实际开工", plain),
    "overdue_days": ValueFormat("逾期", days),
    "delay_month": ValueFormat("延误", month_of_delay),
    "days_since_start": ValueFormat("开工以来", days),
    "ytd_completed": ValueFormat("本年完成投资", money),
    "annual_plan": ValueFormat("年度计划投资", money),
    "target": ValueFormat("序时目标", money),
    "time_progress": ValueFormat("序时进度", percent),
    "pace_percent": ValueFormat("完成比（占序时目标）", percent),
    "pace_gap": ValueFormat("进度差", points),
    "report_date": ValueFormat("最近报告期", plain),
    "days_since_report": ValueFormat("未更新", days),
    "previous_month_end": ValueFormat("上月末", plain),
}
# Said elsewhere: the evaluation date (beside the flag), the ratio (as 完成比 in percent), the problems (in the message).
HIDDEN_VALUES = frozenset({"as_of", "pace_ratio", "problems"})


def shown_values(values: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """(label, text) for each value worth showing, in a fixed order; unknown keys last, as given."""
    values = values or {}
    known = [(key, fmt) for key, fmt in VALUE_FORMATS.items() if key in values]
    out = [(fmt.label, EMPTY if values[key] is None else fmt.show(values[key])) for key, fmt in known]
    for key, value in values.items():
        if key not in VALUE_FORMATS and key not in HIDDEN_VALUES:
            out.append((key, EMPTY if value is None else plain(value)))
    return out


def rule_names(rules: Any) -> dict[str, str]:
    """code → Chinese name (未按期开工) for a scheme's rules."""
    return {rule.code: rule.name for rule in rules}
