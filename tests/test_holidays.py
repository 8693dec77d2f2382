"""Working days for any year (SPEC §6): config/holidays.yaml, else chinese-calendar, else Monday to
Friday with the year recorded as missing; the file validated with Chinese errors naming the key."""

from __future__ import annotations

import re
import shutil
from datetime import date, timedelta
from pathlib import Path

import chinese_calendar
import pytest

from pipeline.alerts.holidays import (
    PACKAGE_YEARS,
    HolidayConfigError,
    WorkingCalendar,
    load_working_calendar,
    missing_calendar_notices,
    missing_year_notice,
    relevant_years,
)
from pipeline.settings import REPO_ROOT
from tests.cli_helpers import clean_env, pipeline

SHIPPED = REPO_ROOT / "config" / "holidays.yaml"
# The package as it was when its data ended with 2026 (chinese-calendar 1.11), whatever is installed.
UP_TO_2026 = range(2004, 2027)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "holidays.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def days_of(year: int) -> list[date]:
    first = date(year, 1, 1)
    return [first + timedelta(days=i) for i in range((date(year + 1, 1, 1) - first).days)]


def test_the_shipped_file_configures_no_year_and_its_example_is_the_2026_notice(tmp_path: Path) -> None:
    assert load_working_calendar(SHIPPED).configured_years == frozenset()
    # The commented example, uncommented, says exactly what the package says of 2026.
    lines = SHIPPED.read_text(encoding="utf-8").splitlines()
    start = lines.index("# 2026:")
    example = "\n".join(re.sub(r"^# ?", "", line) for line in lines[start:])
    configured = load_working_calendar(write(tmp_path, example))
    assert configured.configured_years == {2026}
    assert [configured.is_working_day(d) for d in days_of(2026)] == \
        [chinese_calendar.is_workday(d) for d in days_of(2026)]


def test_a_year_in_the_config_overrides_the_package(tmp_path: Path) -> None:
    # An office that enters 2026 differently (say a city's extra day off, and no 调休 on 02-28).
    days = load_working_calendar(write(tmp_path, (
        "2026:\n"
        "  holidays: [2026-01-01 至 2026-01-03, 2026-02-15 至 2026-02-23, 2026-03-02]\n"
        "  workdays: [2026-01-04, 2026-02-14]\n"
    )))
    assert chinese_calendar.is_workday(date(2026, 3, 2)) and not days.is_working_day(date(2026, 3, 2))
    assert chinese_calendar.is_workday(date(2026, 2, 28)) and not days.is_working_day(date(2026, 2, 28))
    assert not chinese_calendar.is_workday(date(2026, 10, 1)) and days.is_working_day(date(2026, 10, 1))
    assert days.is_working_day(date(2026, 2, 14)) and not days.is_working_day(date(2026, 2, 16))
    assert days.take_assumed_years() == []  # configured: nothing assumed
    # Other years still follow the package (2024's National Day).
    assert not days.is_working_day(date(2024, 10, 1)) and days.is_working_day(date(2024, 10, 12))


def test_a_year_in_the_config_the_package_lacks_is_used(tmp_path: Path) -> None:
    path = write(tmp_path, (
        "2027:\n"
        "  holidays:\n"
        "    - 2027-01-01\n"
        "    - 2027-02-05 至 2027-02-13\n"
        "  workdays:\n"
        "    - 2027-02-14   # a Sunday\n"
    ))
    days = load_working_calendar(path, package_years=UP_TO_2026)
    assert not days.is_working_day(date(2027, 2, 8)) and days.is_working_day(date(2027, 2, 14))
    assert days.add_working_days(date(2027, 2, 4), 1) == date(2027, 2, 14)
    assert days.missing_years([2026, 2027]) == [] and days.take_assumed_years() == []


def test_a_year_in_neither_is_monday_to_friday_and_recorded_as_missing() -> None:
    days = WorkingCalendar(package_years=UP_TO_2026)
    assert [days.is_working_day(d) for d in days_of(2027)] == [d.weekday() < 5 for d in days_of(2027)]
    assert days.add_working_days(date(2027, 2, 26), -5) == date(2027, 2, 19)
    assert days.missing_years([2026, 2027]) == [2027]
    # Recorded once however many calls asked, and handed over once.
    assert days.take_assumed_years() == [2027]
    assert days.take_assumed_years() == []
    days.is_working_day(date(2026, 5, 1))  # a year the package knows is not recorded
    assert days.take_assumed_years() == []


def test_the_installed_package_is_used_for_the_years_it_knows() -> None:
    assert 2026 in PACKAGE_YEARS
    days = WorkingCalendar()
    assert not days.is_working_day(date(2026, 10, 1)) and days.is_working_day(date(2026, 9, 20))  # 调休 Sunday
    assert days.take_assumed_years() == []


def test_the_notice_and_the_years_that_matter_now() -> None:
    assert missing_year_notice(2027) == "2027年法定节假日安排尚未配置，工作日暂按周一至周五计算"
    assert relevant_years(date(2026, 11, 30)) == (2026,)
    assert relevant_years(date(2026, 12, 1)) == (2026, 2027)  # in December, next year's reviews are planned
    assert relevant_years(date(2027, 1, 5)) == (2027,)
    days = WorkingCalendar(package_years=UP_TO_2026)
    assert missing_calendar_notices(days, date(2026, 11, 30)) == []
    assert missing_calendar_notices(days, date(2026, 12, 31)) == [missing_year_notice(2027)]
    assert missing_calendar_notices(days, date(2027, 1, 5)) == [missing_year_notice(2027)]


@pytest.mark.parametrize(
    ("text", "key", "fragment"),
    [
        ("- 2027-01-01\n", None, "YAML 映射"),
        ("twenty27:\n  holidays: [2027-01-01]\n", "twenty27", "年份"),
        ("2027: [2027-01-01]\n", "2027", "holidays"),
        ("2027:\n  holiday: [2027-01-01]\n", "2027.holiday", "未知的配置项"),
        ("2027:\n  holidays: 2027-01-01\n", "2027.holidays", "日期列表"),
        ("2027:\n  holidays: [2027-02-30]\n", "2027.holidays 第 1 项", "YYYY-MM-DD"),
        ("2027:\n  holidays: [2027-01-01, 2027-02-13 至 2027-02-05]\n", "2027.holidays 第 2 项", "早于"),
        ("2027:\n  holidays: [2027-02-05 至 2027-02-06 至 2027-02-07]\n", "2027.holidays 第 1 项", "起 至 止"),
        ("2027:\n  holidays: [2029-01-01]\n", "2027.holidays 第 1 项", "不属于 2027 年"),
        ("2027:\n  workdays: [2027-02-15]\n", "2027.workdays", "周六或周日"),  # a Monday
        ("2027:\n  holidays: [2027-02-14]\n  workdays: [2027-02-14]\n", "2027", "同时列为"),
        ("2026:\n  workdays: [2027-01-02]\n2027:\n  workdays: [2027-01-02]\n", None, "同时出现在"),
    ],
)
def test_a_bad_file_names_the_file_and_the_key(tmp_path: Path, text: str, key: str | None, fragment: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(HolidayConfigError) as info:
        load_working_calendar(path)
    message = str(info.value)
    assert str(path) in message and fragment in message, message
    if key is not None:
        assert f"配置项 {key} 无效" in message, message


def test_an_absent_file_configures_nothing_and_an_unreadable_one_is_refused(tmp_path: Path) -> None:
    assert load_working_calendar(tmp_path / "absent.yaml").configured_years == frozenset()
    with pytest.raises(HolidayConfigError, match="无法读取"):
        load_working_calendar(write(tmp_path, "2027: [unclosed\n"))


# --- start-up: a bad file or a bad PIPELINE_NOW stops the command with its name --------------------


@pytest.mark.parametrize("command", [["scheduler"], ["serve", "--port", "1"], ["run", "--no-web"]])
def test_a_bad_holidays_file_stops_start_up_naming_the_file_and_key(tmp_path: Path, command: list[str]) -> None:
    config = tmp_path / "config"
    shutil.copytree(REPO_ROOT / "config", config)
    (config / "holidays.yaml").write_text("2027:\n  workdays: [2027-02-15]\n", encoding="utf-8")
    env = clean_env(tmp_path / "data", PIPELINE_CONFIG_DIR=str(config), COLUMNS="300")  # one line per error
    done = pipeline(env, *command, timeout=120)
    assert done.returncode == 3, done.stdout + done.stderr
    assert "配置错误" in done.stderr and str(config / "holidays.yaml") in done.stderr
    assert "2027.workdays" in done.stderr and "周六或周日" in done.stderr


@pytest.mark.parametrize(("value", "fragment"), [("2027-01-05T08:59:00", "应写明时区"), ("明天早上", "ISO 8601")])
def test_a_bad_pipeline_now_stops_start_up_naming_the_variable(tmp_path: Path, value: str, fragment: str) -> None:
    done = pipeline(clean_env(tmp_path / "data", PIPELINE_NOW=value, COLUMNS="300"), "scheduler", timeout=120)
    assert done.returncode == 3
    assert "环境变量 PIPELINE_NOW 的值无效" in done.stderr and fragment in done.stderr, done.stderr
