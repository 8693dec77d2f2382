"""What the rules and the rates read about one project as of one report (one template row)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal


# The progress fields of a report (one template row), in the order the database and the frames
# carry them: the one list of them (models.ProgressColumns has the columns).
FACT_FIELDS: tuple[str, ...] = (
    "as_of", "annual_plan", "planned_start", "planned_completion", "actual_start", "actual_completion",
    "stats_included_on", "cumulative_completed", "ytd_completed", "needs_coordination", "problems",
)


@dataclass(frozen=True, slots=True)
class ProjectFacts:
    """The progress fields of one project's row, plain values, no ORM."""

    code: str
    as_of: date  # 报告期 of the row
    nature: str = "续建"  # 新开工 / 续建
    annual_plan: Decimal | None = None  # 年度计划投资（万元）
    planned_start: date | None = None
    planned_completion: date | None = None
    actual_start: date | None = None
    actual_completion: date | None = None
    stats_included_on: date | None = None
    cumulative_completed: Decimal | None = None
    ytd_completed: Decimal | None = None
    needs_coordination: bool = False
    problems: str | None = None

    @property
    def started(self) -> bool:
        return self.actual_start is not None

    @property
    def completed(self) -> bool:
        return self.actual_completion is not None
