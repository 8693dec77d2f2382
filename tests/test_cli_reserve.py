"""The reserve commands as a user runs them on embedded defaults: import, flags, rates, override, ack."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from pathlib import Path

from pipeline.ingest.export import write_template
from tests.cli_helpers import clean_env, pipeline
from tests.factories import code, row


def test_import_flags_rates_override_ack(tmp_path: Path) -> None:
    env = clean_env(tmp_path / "data", PIPELINE_AS_OF="2024-12-31")
    rows = [
        row(1, as_of=date(2024, 12, 31), ytd_completed=Decimal("12000")),
        row(2, as_of=date(2024, 12, 31), ytd_completed=Decimal("3000"), county="监利市"),  # pace 0.25: red
        row(3, nature="新开工", planned_start=date(2024, 3, 1), actual_start=date(2024, 3, 10),
            stats_included_on=date(2024, 5, 1), as_of=date(2024, 12, 31), ytd_completed=Decimal("11000")),
    ]
    path = write_template(rows, tmp_path / "2024-12.xlsx")
    assert pipeline(env, "init").returncode == 0
    done = pipeline(env, "import", str(path))
    assert done.returncode == 0, done.stderr
    assert "共 3 行，接收 3 行" in done.stdout
    again = pipeline(env, "import", str(path))
    assert "此前已导入" in again.stdout

    flags = [json.loads(x) for x in pipeline(env, "flags", "--json").stdout.splitlines()]
    assert [(f["code"], f["flag"]) for f in flags] == [(code(1), "green"), (code(2), "red"), (code(3), "green")]
    red_only = pipeline(env, "flags", "--color", "红", "--county", "监利市", "--json").stdout.splitlines()
    assert [json.loads(x)["code"] for x in red_only] == [code(2)]
    table = pipeline(env, "flags", "--color", "red").stdout
    assert "红牌" in table and "测试项目2" in table

    rates = [json.loads(x) for x in pipeline(env, "rates", "--as-of", "2024-12-31", "--json").stdout.splitlines()]
    assert rates == [{
        "group": "全市", "start_rate": [1, 1], "start_rate_annual": [1, 1], "completion_rate": [0, 0],
        "completion_rate_annual": [0, 0], "stats_rate": [3, 3], "investment": [26000, 36000],
    }]
    by_county = [json.loads(x)["group"] for x in pipeline(env, "rates", "--as-of", "2024-12-31", "--by", "county", "--json").stdout.splitlines()]
    assert sorted(by_county) == ["监利市", "荆州区"]

    ack = pipeline(env, "ack", code(2), "--note", "已约谈", "--by", "王建国")
    assert ack.returncode == 0 and "已确认" in ack.stdout
    twice = pipeline(env, "ack", code(2), "--note", "再次", "--by", "王建国")
    assert twice.returncode == 1 and "已由 王建国 确认" in twice.stderr

    over = pipeline(env, "override", code(2), "--color", "yellow", "--reason", "资金已到位", "--by", "张三",
                    "--until", "2025-01-31")
    assert over.returncode == 0, over.stderr
    f2 = [json.loads(x) for x in pipeline(env, "flags", "--json").stdout.splitlines()][1]
    assert (f2["flag"], f2["computed_flag"], f2["overridden"]) == ("yellow", "red", True)
    missing = pipeline(env, "override", code(2), "--color", "green")
    assert missing.returncode == 2 and "--reason" in missing.stderr


def test_import_reports_bad_rows_by_row_and_header(tmp_path: Path) -> None:
    env = clean_env(tmp_path / "data")
    path = write_template([row(1), row(2)], tmp_path / "m.csv")
    with path.open("a", encoding="utf-8") as fh:
        fh.write(f"{code(3)},坏行,荆州区,,,续建,-100,,,,,,,,,,,,,2024-03-31\n")
    done = pipeline(env, "import", str(path))
    assert done.returncode == 0
    assert "接收 2 行" in done.stdout and "拒收 1 行" in done.stdout
    assert "第4行" in done.stderr and "总投资" in done.stderr


def test_a_bad_setting_stops_with_the_variable_named(tmp_path: Path) -> None:
    done = pipeline(clean_env(tmp_path / "data", PIPELINE_TIMEZONE="Mars/Olympus"), "init")
    assert done.returncode == 3
    assert "PIPELINE_TIMEZONE" in done.stderr


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    done = pipeline(clean_env(tmp_path / "data"), "import", str(tmp_path / "nope.xlsx"))
    assert done.returncode == 2 and "文件不存在" in done.stderr


def test_import_exits_2_when_nothing_is_accepted_or_a_file_is_refused(tmp_path: Path) -> None:
    env = clean_env(tmp_path / "data")
    all_bad = write_template([row(1, total_investment=Decimal("-1")), row(2, county="火星区")], tmp_path / "bad.csv")
    done = pipeline(env, "import", str(all_bad))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "接收 0 行" in done.stdout and "拒收 2 行" in done.stdout and "没有任何一行被接收" in done.stderr
    good = write_template([row(3)], tmp_path / "good.csv")
    refused = tmp_path / "junk.xlsx"
    refused.write_bytes(b"not a workbook")
    mixed = pipeline(env, "import", str(good), str(refused))
    assert mixed.returncode == 2 and "文件被拒收" in mixed.stderr and "接收 1 行" in mixed.stdout
    again = pipeline(env, "import", str(good))  # received before: nothing new, nothing wrong
    assert again.returncode == 0 and "此前已导入" in again.stdout
    help_text = pipeline(env, "import", "--help").stdout
    assert "退出状态" in help_text and "2" in help_text


def test_import_says_how_many_rows_were_hidden(tmp_path: Path) -> None:
    from openpyxl import load_workbook

    path = write_template([row(n, as_of=date(2024, 12, 31)) for n in range(1, 5)], tmp_path / "h.xlsx")
    workbook = load_workbook(path)
    workbook.active.row_dimensions[3].hidden = True
    workbook.save(path)
    done = pipeline(clean_env(tmp_path / "data"), "import", str(path))
    assert done.returncode == 0, done.stderr
    assert "接收 4 行" in done.stdout and "其中 1 行在 Excel 中是隐藏行" in done.stdout
