"""The command line as a person meets it: it starts without loading the database layer, its
tables stay readable on an 80-column terminal, `pipeline import` shows its progress on a terminal
and keeps quiet in a pipe, and `pipeline template` writes the import template."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import date
from decimal import Decimal
from pathlib import Path

import openpyxl
from rich.cells import cell_len

from pipeline.ingest.export import write_template
from pipeline.ingest.frame import frame_to_rows
from pipeline.ingest.parse import parse_file
from pipeline.ingest.template import HEADERS, TEMPLATE_FIELDS
from pipeline.reference import load_reference
from pipeline.settings import REPO_ROOT
from tests.cli_helpers import clean_env, on_a_terminal, pipeline
from tests.factories import code, row

HEAVY = ("sqlalchemy", "celery", "kombu", "polars", "openpyxl", "fastapi", "uvicorn", "alembic", "pydantic_settings")
LONG_NAME = "荆州市城区至监利市高速公路连接线及沿线配套基础设施建设工程（一期）"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")


def modules_after(*args: str) -> list[str]:
    """The heavy modules loaded once `pipeline ARGS` has run (in a fresh interpreter)."""
    probe = (
        "import sys\n"
        f"sys.argv = ['pipeline', *{list(args)!r}]\n"
        "from pipeline.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    return json.loads(done.stderr.strip().splitlines()[-1].replace("'", '"'))


def test_help_loads_no_database_queue_spreadsheet_or_web_module() -> None:
    assert modules_after("--help") == []
    assert modules_after("import", "--help") == []
    assert modules_after("flags", "--help") == []
    assert modules_after("forecast", "--help") == []
    assert modules_after("backtest", "--help") == []
    assert modules_after("alerts", "digest", "--help") == []
    assert modules_after("batches", "retry", "--help") == []


def _reserve(tmp_path: Path) -> dict[str, str]:
    env = clean_env(tmp_path / "data", PIPELINE_AS_OF="2024-12-31")
    rows = [
        row(1, as_of=date(2024, 12, 31), name=LONG_NAME, ytd_completed=Decimal("3000")),  # pace 0.25: red
        row(2, as_of=date(2024, 12, 31), nature="新开工", planned_start=date(2024, 3, 1), actual_start=None,
            stats_included_on=None, ytd_completed=None, cumulative_completed=None, county="监利市",
            name=LONG_NAME + "二期"),  # not started: red
        row(3, as_of=date(2024, 12, 31), ytd_completed=Decimal("12000")),
    ]
    assert pipeline(env, "import", str(write_template(rows, tmp_path / "2024-12.xlsx"))).returncode == 0
    return env


def _lines(text: str) -> list[str]:
    return [ANSI.sub("", line) for line in text.splitlines()]


def test_tables_fit_80_columns_and_keep_codes_whole(tmp_path: Path) -> None:
    env = _reserve(tmp_path)
    narrow = {**env, "COLUMNS": "80"}
    flags = pipeline(narrow, "flags")
    assert flags.returncode == 0, flags.stderr
    lines = _lines(flags.stdout)
    assert max(cell_len(line) for line in lines) <= 80, flags.stdout
    for n in (1, 2, 3):  # every code whole on one line, never cut or folded
        assert any(code(n) in line for line in lines), (code(n), flags.stdout)
    assert "…" not in flags.stdout  # wrapped, never cut
    cells = [line.split("│") for line in lines if line.startswith("│")]
    project, reasons = "".join(c[1].strip() for c in cells), "".join(c[3].strip() for c in cells)
    assert LONG_NAME in project and LONG_NAME + "二期" in project and "监利市" in project
    assert "投资进度滞后：本年完成投资3000万元" in reasons and "未按期开工：计划2024-03-01开工" in reasons
    assert "BEHIND_PACE" not in flags.stdout and "START_OVERDUE" not in flags.stdout  # the rule's name, not its code

    wide = pipeline({**env, "COLUMNS": "160"}, "flags")
    assert "包保领导" in wide.stdout and max(cell_len(line) for line in _lines(wide.stdout)) <= 160

    for args in (("rates", "--as-of", "2024-12-31", "--by", "county"), ("outbox",)):
        done = pipeline(narrow, *args)
        assert done.returncode == 0, done.stderr
        assert max((cell_len(line) for line in _lines(done.stdout)), default=0) <= 80, done.stdout

    every = [json.loads(x) for x in pipeline(narrow, "flags", "--json").stdout.splitlines()]
    assert [f["name"] for f in every][:2] == [LONG_NAME, LONG_NAME + "二期"]  # --json keeps everything


def test_import_shows_its_progress_on_a_terminal_and_not_in_a_pipe(tmp_path: Path) -> None:
    env = clean_env(tmp_path / "data", PIPELINE_AS_OF="2024-12-31")
    path = write_template([row(n, as_of=date(2024, 12, 31)) for n in range(1, 41)], tmp_path / "月报.xlsx")
    assert pipeline(env, "init").returncode == 0
    status, screen = on_a_terminal(env, ["import", str(path)], timeout=120)
    assert status == 0, screen
    assert "读取并校验 月报.xlsx" in screen and "行" in screen
    assert "共 40 行，接收 40 行" in screen

    other = write_template([row(n, as_of=date(2024, 11, 30)) for n in range(1, 41)], tmp_path / "十一月.xlsx")
    piped = pipeline(env, "import", str(other))
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout == "十一月.xlsx：共 40 行，接收 40 行\n"  # the summary alone: no bar, no blank line
    assert piped.stderr == ""


def test_template_command_writes_a_template_that_a_filled_in_sample_passes(tmp_path: Path) -> None:
    env = clean_env(tmp_path / "data")
    target = tmp_path / "模板.xlsx"
    done = pipeline(env, "template", str(target))
    assert done.returncode == 0, done.stderr
    reference = load_reference(REPO_ROOT / "config")
    book = openpyxl.load_workbook(target)
    assert book.sheetnames[:2] == ["导入模板", "填表说明"] and book["选项"].sheet_state == "hidden"
    sheet = book["导入模板"]
    assert tuple(c.value for c in sheet[1]) == HEADERS
    assert sheet.freeze_panes == "A2" and sheet.auto_filter.ref
    letter = {f.alias: openpyxl.utils.get_column_letter(i) for i, f in enumerate(TEMPLATE_FIELDS, start=1)}
    lists = {str(dv.sqref).split(":")[0]: dv for dv in sheet.data_validations.dataValidation}
    choices = book["选项"]

    def options(alias: str) -> list[str]:
        ref = lists[f"{letter[alias]}2"].formula1.split("!")[1].replace("$", "")
        return [c.value for row_ in choices[ref] for c in row_]

    assert options("county") == [c.name for c in reference.counties]
    assert options("lists") == list(reference.lists)
    assert options("nature") == ["新开工", "续建"] and options("needs_coordination") == ["是", "否"]
    assert lists[f"{letter['as_of']}2"].type == "date" and lists[f"{letter['total_investment']}2"].type == "decimal"
    assert sheet.column_dimensions[letter["as_of"]].number_format == "yyyy-mm-dd"
    assert sheet.column_dimensions[letter["annual_plan"]].number_format == "#,##0.00"
    guide = [[c.value for c in r] for r in book["填表说明"].iter_rows()]
    assert any(r[0] == "列名" for r in guide) and any("24位" in str(r[4]) for r in guide)

    # fill the data sheet with the guide's sample row, as an office would: it passes every check
    sample = guide[-1]
    for column, value in enumerate(sample, start=1):
        sheet.cell(row=2, column=column, value=value)
    book.save(target)
    parsed = parse_file(target, reference=reference, today=date(2024, 12, 31), max_bytes=10 * 1024 * 1024)
    rows = frame_to_rows(parsed.updates)
    assert parsed.errors == [] and len(rows) == 1
    assert rows[0].lists == reference.lists[:2] and rows[0].needs_coordination is True
