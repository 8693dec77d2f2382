"""Factories for template rows: each test states the data it cares about."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from decimal import Decimal
from typing import Any

from pipeline.audit import Actor
from pipeline.ingest.template import UpdateRow

ACTOR = Actor("tester", "cli")  # the actor of the audited actions tests make directly


def code(n: int, region: str = "421003") -> str:
    return f"2024-{region}-44-01-{n:06d}"


def row(n: int = 1, **fields: Any) -> UpdateRow:
    """A valid 续建 row for project n as of 2024-03-31, with the given fields changed."""
    base = UpdateRow(
        code=code(n),
        name=f"测试项目{n}",
        county="荆州区",
        nature="续建",
        total_investment=Decimal("50000"),
        as_of=date(2024, 3, 31),
        industry="先进制造业",
        lists=("亿元以上项目",),
        annual_plan=Decimal("12000"),
        planned_start=date(2023, 3, 1),
        planned_completion=date(2026, 12, 31),
        actual_start=date(2023, 3, 1),
        stats_included_on=date(2023, 4, 15),
        cumulative_completed=Decimal("20000"),
        ytd_completed=Decimal("3000"),
        leader="王建国",
        unit="荆州区人民政府",
    )
    return replace(base, **fields)
