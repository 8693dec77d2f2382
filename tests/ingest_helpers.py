"""Helpers for the ingest tests: the configured reference, raw template rows, raw csv/xlsx writers.

The writers here put cells in a file exactly as given (formulas, bad encodings, odd headers), which
``write_template`` deliberately will not do.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any

import polars as pl

from pipeline.ingest.frame import frame_to_rows
from pipeline.ingest.parse import parse_file, parse_records
from pipeline.ingest.template import HEADERS, RowError, UpdateRow
from pipeline.reference import Reference, load_reference

CONFIG_DIR = Path(__file__).resolve().parents[1] / "config"
MAX_BYTES = 5 * 1024 * 1024
TODAY = date(2025, 1, 31)  # the clock the parse tests read: any 报告期 up to 2025-03-03 is accepted


@lru_cache(maxsize=1)
def reference() -> Reference:
    return load_reference(CONFIG_DIR)


def code(n: int, year: int = 2024, region: str = "421003") -> str:
    return f"{year}-{region}-44-01-{n:06d}"


def good_cells(n: int, **changes: Any) -> dict[str, Any]:
    """A valid 续建 row for project n as raw cells keyed by Chinese header, with the given changes."""
    cells: dict[str, Any] = {
        "项目代码": code(n),
        "项目名称": f"测试项目{n}",
        "县市区": "荆州区",
        "行业": "先进制造业",
        "所属清单": "亿元以上项目",
        "建设性质": "续建",
        "总投资（万元）": "50000",
        "年度计划投资（万元）": "12000",
        "计划开工日期": "2023-03-01",
        "计划竣工日期": "2026-12-31",
        "实际开工日期": "2023-03-01",
        "实际竣工日期": "",
        "入统日期": "2023-04-15",
        "累计完成投资（万元）": "20000",
        "本年完成投资（万元）": "3000",
        "包保领导": "王建国",
        "责任单位": "荆州区人民政府",
        "存在问题": "",
        "需协调": "否",
        "报告期": "2024-03-31",
    }
    cells.update(changes)
    return cells


def write_csv(
    path: Path, rows: Sequence[dict[str, Any]], *, headers: Sequence[str] = HEADERS, encoding: str = "utf-8"
) -> Path:
    with path.open("w", encoding=encoding, newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(headers)
        for cells in rows:
            writer.writerow(["" if cells.get(h) is None else cells.get(h) for h in headers])
    return path


def write_xlsx(
    path: Path, rows: Sequence[dict[str, Any]], *, headers: Sequence[str] = HEADERS, blank_rows_above: int = 0
) -> Path:
    """A real workbook (openpyxl, normal mode): a str starting with '=' becomes a real formula cell."""
    from openpyxl import Workbook

    workbook = Workbook()
    sheet = workbook.active
    for _ in range(blank_rows_above):
        sheet.append([])
    sheet.append(list(headers))
    for cells in rows:
        sheet.append([None if cells.get(h) in (None, "") else cells.get(h) for h in headers])
    workbook.save(path)
    return path


@dataclass(frozen=True)
class Parsed:
    """What parsing gave, with the accepted updates also as UpdateRows for easy comparison."""

    filename: str
    sha256: str
    total_rows: int
    updates: pl.DataFrame
    rows: list[UpdateRow]
    errors: list[RowError]
    hidden_rows: int = 0


def parse(path: Path, *, max_bytes: int = MAX_BYTES, **options: Any) -> Parsed:
    options.setdefault("today", TODAY)
    parsed = parse_file(path, reference=reference(), max_bytes=max_bytes, **options)
    return Parsed(parsed.filename, parsed.sha256, parsed.total_rows, parsed.updates, frame_to_rows(parsed.updates),
                  parsed.errors, parsed.hidden_rows)


def parse_json(records: Sequence[Mapping[str, Any]], **options: Any) -> Parsed:
    options.setdefault("today", TODAY)
    parsed = parse_records(records, reference=reference(), **options)
    return Parsed("", "", parsed.total_rows, parsed.updates, frame_to_rows(parsed.updates), parsed.errors)


def has_chinese(text: str) -> bool:
    return any("\u4e00" <= ch <= "\u9fff" for ch in text)
