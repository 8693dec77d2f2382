"""The 双月述职 review calendar against China's real 2024 calendar (holidays and 调休)."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import time_machine

from pipeline.alerts.calendar import (
    CalendarConfigError,
    ReviewCalendar,
    ReviewCalendarConfig,
    load_review_calendar,
    parse_review_calendar,
)
from pipeline.alerts.holidays import WorkingCalendar, load_working_calendar
from pipeline.settings import REPO_ROOT

SHANGHAI = ZoneInfo("Asia/Shanghai")
SHIPPED = REPO_ROOT / "config" / "reviews.yaml"
SHIPPED_HOLIDAYS = REPO_ROOT / "config" / "holidays.yaml"
DAYS = load_working_calendar(SHIPPED_HOLIDAYS)

# review → (digest day, the calendar days between them that are NOT working days)
REVIEWS_2024 = {
    date(2024, 2, 29): (date(2024, 2, 22), {date(2024, 2, 24), date(2024, 2, 25)}),
    # Labour Day: May 1–5 off, Sunday Apr 28 is a 调休 working day, so April's last working day is
    # the ordinary Tuesday Apr 30 and the digest count passes through that Sunday.
    date(2024, 4, 30): (date(2024, 4, 24), {date(2024, 4, 27)}),
    date(2024, 6, 28): (date(2024, 6, 21), {date(2024, 6, 22), date(2024, 6, 23)}),
    date(2024, 8, 30): (date(2024, 8, 23), {date(2024, 8, 24), date(2024, 8, 25)}),
    date(2024, 10, 31): (date(2024, 10, 24), {date(2024, 10, 26), date(2024, 10, 27)}),
    date(2024, 12, 31): (date(2024, 12, 24), {date(2024, 12, 28), date(2024, 12, 29)}),
}


@pytest.fixture
def cfg() -> ReviewCalendarConfig:
    return load_review_calendar(SHIPPED)


@pytest.fixture
def cal(cfg: ReviewCalendarConfig) -> ReviewCalendar:
    return ReviewCalendar(cfg, load_working_calendar(SHIPPED_HOLIDAYS))


def calendar_from(path: Path) -> ReviewCalendar:
    return ReviewCalendar(load_review_calendar(path), WorkingCalendar())


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "reviews.yaml"
    path.write_text(text, encoding="utf-8")
    return path


# --- the shipped configuration -------------------------------------------------------------------


def test_shipped_config(cfg: ReviewCalendarConfig) -> None:
    assert cfg.timezone == "Asia/Shanghai"
    assert cfg.months == (2, 4, 6, 8, 10, 12)
    assert cfg.dates == ()
    assert cfg.lead_working_days == 5
    assert cfg.send_time == time(9, 0)
    with pytest.raises(Exception):
        cfg.lead_working_days = 3  # type: ignore[misc]  # frozen


# --- working days --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "working"),
    [
        (date(2024, 2, 4), True),  # Sunday, Spring Festival 调休
        (date(2024, 2, 9), True),  # 除夕 (Friday): officially a working day in 2024 (Feb 10–17 off)
        (date(2024, 2, 12), False),  # Monday inside the Spring Festival holiday
        (date(2024, 2, 18), True),  # Sunday, Spring Festival 调休
        (date(2024, 4, 4), False),  # Qingming (Thursday)
        (date(2024, 4, 7), True),  # Sunday, Qingming 调休
        (date(2024, 4, 28), True),  # Sunday, Labour Day 调休
        (date(2024, 5, 2), False),  # Labour Day holiday (Thursday)
        (date(2024, 5, 11), True),  # Saturday, Labour Day 调休
        (date(2024, 6, 10), False),  # Dragon Boat (Monday)
        (date(2024, 9, 14), True),  # Saturday, Mid-Autumn 调休
        (date(2024, 9, 16), False),  # Mid-Autumn holiday (Monday)
        (date(2024, 9, 29), True),  # Sunday, National Day 调休
        (date(2024, 10, 4), False),  # National Day holiday (Friday)
        (date(2024, 10, 12), True),  # Saturday, National Day 调休
        (date(2024, 10, 13), False),  # an ordinary Sunday
        (date(2024, 10, 14), True),  # an ordinary Monday
    ],
)
def test_is_working_day_follows_the_official_2024_calendar(day: date, working: bool) -> None:
    assert DAYS.is_working_day(day) is working


@pytest.mark.parametrize(
    ("start", "n", "expected"),
    [
        (date(2024, 2, 9), 1, date(2024, 2, 18)),  # over the Spring Festival to its 调休 Sunday
        (date(2024, 2, 19), -1, date(2024, 2, 18)),
        (date(2024, 4, 3), 1, date(2024, 4, 7)),  # over Qingming to its 调休 Sunday
        (date(2024, 4, 30), 1, date(2024, 5, 6)),  # over Labour Day
        (date(2024, 5, 6), -2, date(2024, 4, 29)),
        (date(2024, 6, 7), 1, date(2024, 6, 11)),  # over Dragon Boat Monday
        (date(2024, 9, 13), 1, date(2024, 9, 14)),  # Mid-Autumn 调休 Saturday
        (date(2024, 9, 14), 1, date(2024, 9, 18)),
        (date(2024, 9, 30), 1, date(2024, 10, 8)),  # over National Day
        (date(2024, 10, 11), 1, date(2024, 10, 12)),  # National Day 调休 Saturday
        (date(2024, 10, 14), -5, date(2024, 10, 8)),  # 12 (Sat), 11, 10, 9, 8
        (date(2024, 10, 14), 0, date(2024, 10, 14)),
    ],
)
def test_add_working_days(start: date, n: int, expected: date) -> None:
    assert DAYS.add_working_days(start, n) == expected


# --- the 2024 reviews ----------------------------------------------------------------------------


def test_2024_has_exactly_the_six_reviews_of_the_official_calendar(cal: ReviewCalendar) -> None:
    assert cal.reviews_in_year(2024) == list(REVIEWS_2024)
    assert cal.review_dates(date(2024, 1, 1), date(2024, 12, 31)) == list(REVIEWS_2024)


@pytest.mark.parametrize("review", list(REVIEWS_2024))
def test_each_review_is_the_last_working_day_of_its_month(review: date) -> None:
    assert DAYS.is_working_day(review)
    later = [review + timedelta(days=i) for i in range(1, 7) if (review + timedelta(days=i)).month == review.month]
    assert not any(DAYS.is_working_day(d) for d in later)


@pytest.mark.parametrize("review", list(REVIEWS_2024))
def test_digest_goes_out_on_the_fifth_working_day_before_at_nine(cal: ReviewCalendar, review: date) -> None:
    send_day, days_off = REVIEWS_2024[review]
    sent = cal.digest_send_at(review)
    assert sent == datetime(send_day.year, send_day.month, send_day.day, 9, 0, tzinfo=SHANGHAI)
    assert sent.utcoffset() == timedelta(hours=8)
    between = [send_day + timedelta(days=i) for i in range(1, (review - send_day).days)]
    assert [d for d in between if DAYS.is_working_day(d)] == [d for d in between if d not in days_off]
    assert len([d for d in between if DAYS.is_working_day(d)]) == 4  # the send day is the 5th before


def test_april_digest_counts_the_labour_day_tiaoxiu_sunday(cal: ReviewCalendar) -> None:
    # Tue 30, Mon 29, Sun 28 (调休), Fri 26, Thu 25 → Wed 24; without the 调休 it would be Tue 23.
    assert cal.digest_send_at(date(2024, 4, 30)).date() == date(2024, 4, 24)


def test_next_and_previous_review(cal: ReviewCalendar) -> None:
    assert cal.next_review(date(2024, 1, 1)) == date(2024, 2, 29)
    assert cal.next_review(date(2024, 2, 29)) == date(2024, 4, 30)  # strictly after
    assert cal.next_review(date(2024, 12, 31)) == date(2025, 2, 28)
    assert cal.previous_review(date(2024, 4, 30)) == date(2024, 2, 29)  # strictly before
    assert cal.previous_review(date(2024, 2, 29)) == date(2023, 12, 29)


def test_clock_driven_lookup_with_time_travel(cal: ReviewCalendar) -> None:
    # Travel to just before June's digest: the next review is 06-28 and its digest is due at 09:00.
    with time_machine.travel(datetime(2024, 6, 21, 8, 59, tzinfo=SHANGHAI), tick=False):
        now = datetime.now(SHANGHAI)
        review = cal.next_review(now.date())
        assert review == date(2024, 6, 28)
        assert cal.digest_send_at(review) - now == timedelta(minutes=1)


# --- explicit dates ------------------------------------------------------------------------------


def test_explicit_dates_override_the_rule_for_their_year(tmp_path: Path) -> None:
    cal = calendar_from(
        write(tmp_path, "months: [2, 4, 6, 8, 10, 12]\ndates: [2024-10-14, 2024-03-15, 2024-06-20]\n")
    )
    assert cal.config.dates == (date(2024, 3, 15), date(2024, 6, 20), date(2024, 10, 14))
    assert cal.reviews_in_year(2024) == [date(2024, 3, 15), date(2024, 6, 20), date(2024, 10, 14)]
    assert cal.reviews_in_year(2025)[0] == date(2025, 2, 28)  # other years keep the rule
    assert cal.next_review(date(2024, 10, 14)) == date(2025, 2, 28)
    # 5 working days before Mon 10-14: Sat 12 (调休), Fri 11, 10, 9, Tue 8 (after National Day).
    assert cal.digest_send_at(date(2024, 10, 14)) == datetime(2024, 10, 8, 9, 0, tzinfo=SHANGHAI)


def test_lead_time_and_send_time_are_configuration(tmp_path: Path) -> None:
    cal = calendar_from(write(tmp_path, 'lead_working_days: 3\nsend_time: "14:30"\n'))
    assert cal.digest_send_at(date(2024, 10, 31)) == datetime(2024, 10, 28, 14, 30, tzinfo=SHANGHAI)


# --- bad configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "key", "fragment"),
    [
        ("months: [2, 13]\n", "months", "1 到 12"),
        ("months: []\n", "months", "非空"),
        ("months: [2, 2]\n", "months", "重复"),
        ("dates: [2024-02-30]\n", "dates", "YYYY-MM-DD"),
        ("dates: [2024-03-15, 2024-03-15]\n", "dates", "重复"),
        ("lead_working_days: -1\n", "lead_working_days", "0 到 60"),
        ("lead_working_days: five\n", "lead_working_days", "整数"),
        ("send_time: 14:30\n", "send_time", "引号"),  # YAML 1.1 reads it as 870
        ('send_time: "25:00"\n', "send_time", "HH:MM"),
        ("timezone: Mars/Olympus\n", "timezone", "未知时区"),
        ("lead_days: 5\n", "lead_days", "lead_working_days"),  # suggests the likely key
    ],
)
def test_bad_config_names_the_file_and_the_key(tmp_path: Path, text: str, key: str, fragment: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(CalendarConfigError) as info:
        load_review_calendar(path)
    message = str(info.value)
    assert str(path) in message
    assert key in message
    assert fragment in message


def test_missing_or_malformed_file(tmp_path: Path) -> None:
    with pytest.raises(CalendarConfigError, match="找不到"):
        load_review_calendar(tmp_path / "absent.yaml")
    with pytest.raises(CalendarConfigError, match="YAML 映射"):
        load_review_calendar(write(tmp_path, "- 2\n- 4\n"))


def test_parse_from_mapping_names_the_source() -> None:
    with pytest.raises(CalendarConfigError, match=r"settings\.yaml：配置项 months"):
        parse_review_calendar({"months": "2,4"}, source="settings.yaml")


# --- years no official calendar covers ----------------------------------------------------------


def test_a_year_without_an_official_calendar_has_its_reviews_on_weekdays(cal: ReviewCalendar) -> None:
    # 2031: neither config/holidays.yaml nor the package knows it: Monday to Friday, never an error.
    assert cal.reviews_in_year(2031) == [date(2031, 2, 28), date(2031, 4, 30), date(2031, 6, 30),
                                         date(2031, 8, 29), date(2031, 10, 31), date(2031, 12, 31)]
    assert cal.next_review(date(2031, 1, 1)) == date(2031, 2, 28)
    assert cal.digest_send_at(date(2031, 10, 31)) == datetime(2031, 10, 24, 9, 0, tzinfo=SHANGHAI)  # Fri → Fri
    assert cal.previous_review(date(2004, 1, 5)) == date(2003, 12, 31)  # before the package's data too
    assert 2031 in cal.days.take_assumed_years()


def test_listed_dates_in_a_year_without_a_calendar_count_weekdays(tmp_path: Path) -> None:
    cal = calendar_from(write(tmp_path, "dates: [2031-02-27]\n"))
    assert cal.reviews_in_year(2031) == [date(2031, 2, 27)]
    # Thu 27: Wed 26, Tue 25, Mon 24, Fri 21, Thu 20.
    assert cal.digest_send_at(date(2031, 2, 27)) == datetime(2031, 2, 20, 9, 0, tzinfo=SHANGHAI)
