"""China's working days, for any year: the office's ``config/holidays.yaml``, else the
``chinese-calendar`` package, else Monday to Friday (SPEC §6).

The State Council publishes each year's holiday notice (节假日安排) late in the year before, and
the package catches up some time after. A year the office has entered in ``config/holidays.yaml``
follows that file (its holidays and make-up working days, 调休); a year the package knows follows
the package; any other year is assumed to work Monday to Friday. The calendar records the years it
had to assume, so that the scheduler can warn once per tick (never per call), and ``missing_years``
tells the web which of the years that matter now have no official calendar yet.

A bad file raises ``HolidayConfigError`` whose Chinese message names the file and the key.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import chinese_calendar
import yaml

_RANGE_WORD = "至"
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# The years the package has data for (its published table of holidays, a public name).
PACKAGE_YEARS = range(min(chinese_calendar.holidays).year, max(chinese_calendar.holidays).year + 1)
# In its last month, the next year counts as "now" too: its first reviews are being planned.
NEXT_YEAR_FROM_MONTH = 12


class TextDatesLoader(yaml.SafeLoader):
    """SafeLoader that leaves dates as text, so a bad one is reported with its key, in Chinese."""


TextDatesLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


class HolidayConfigError(ValueError):
    """config/holidays.yaml cannot be used; the message (Chinese) names the file and the key."""


def missing_year_notice(year: int) -> str:
    """What the web and the logs say about a year with no official calendar."""
    return f"{year}年法定节假日安排尚未配置，工作日暂按周一至周五计算"


@dataclass(frozen=True)
class YearNotice:
    """One year's official notice as the office entered it: days off and make-up working days."""

    year: int
    holidays: frozenset[date]
    workdays: frozenset[date]


class WorkingCalendar:
    """Answers "is this a working day?" for any date; see the module docstring for the sources."""

    def __init__(self, notices: Iterable[YearNotice] = (), *, package_years: range = PACKAGE_YEARS) -> None:
        notices = tuple(notices)
        self.configured_years = frozenset(n.year for n in notices)
        self.package_years = package_years
        self._holidays = frozenset(d for n in notices for d in n.holidays)
        self._workdays = frozenset(d for n in notices for d in n.workdays)
        self._assumed: set[int] = set()
        self._lock = threading.Lock()

    def knows(self, year: int) -> bool:
        """True when the year's official calendar is known (configured, or in the package)."""
        return year in self.configured_years or year in self.package_years

    def missing_years(self, years: Iterable[int]) -> list[int]:
        """The years among ``years`` whose official calendar is unknown, in order."""
        return sorted({y for y in years if not self.knows(y)})

    def is_working_day(self, d: date) -> bool:
        """True on China's official working days (weekdays that are not holidays, and 调休 days)."""
        if d in self._workdays:
            return True
        if d in self._holidays:
            return False
        if d.year in self.configured_years:
            return d.weekday() < 5
        if d.year in self.package_years:
            return bool(chinese_calendar.is_workday(d))
        with self._lock:
            self._assumed.add(d.year)
        return d.weekday() < 5

    def add_working_days(self, d: date, n: int) -> date:
        """The n-th working day after ``d`` (n > 0) or before it (n < 0), ``d`` not counted; n = 0 is ``d``."""
        step = timedelta(days=1 if n > 0 else -1)
        remaining = abs(n)
        current = d
        while remaining:
            current += step
            if self.is_working_day(current):
                remaining -= 1
        return current

    def take_assumed_years(self) -> list[int]:
        """The years answered Monday to Friday (no official calendar) since the last call, in order."""
        with self._lock:
            years, self._assumed = sorted(self._assumed), set()
        return years


def relevant_years(today: date) -> tuple[int, ...]:
    """The years whose calendar matters now: this year, and in December the next one as well."""
    if today.month >= NEXT_YEAR_FROM_MONTH:
        return (today.year, today.year + 1)
    return (today.year,)


def missing_calendar_notices(days: WorkingCalendar, today: date) -> list[str]:
    """The warnings the web shows today: one per relevant year with no official calendar."""
    return [missing_year_notice(year) for year in days.missing_years(relevant_years(today))]


# --- config/holidays.yaml ------------------------------------------------------------------------


def load_working_calendar(path: Path, *, package_years: range = PACKAGE_YEARS) -> WorkingCalendar:
    """Read and validate ``config/holidays.yaml``; an absent file configures no year."""
    try:
        document = yaml.load(path.read_text(encoding="utf-8"), Loader=TextDatesLoader)  # noqa: S506 (safe)
    except FileNotFoundError:
        document = None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise HolidayConfigError(f"无法读取节假日配置文件 {path}：{exc}") from exc
    return WorkingCalendar(parse_holidays(document or {}, source=str(path)), package_years=package_years)


def parse_holidays(document: Any, *, source: str) -> list[YearNotice]:
    """Validate a holidays.yaml document (year → holidays, workdays); ``source`` names the file."""
    if not isinstance(document, Mapping):
        raise HolidayConfigError(f"{source} 应为 YAML 映射（年份: 节假日安排），例如 2027: {{holidays: [...], workdays: [...]}}")
    errors: list[str] = []
    notices: list[YearNotice] = []
    for key, entry in document.items():
        try:
            notices.append(_year_notice(key, entry))
        except _Fault as fault:
            errors.append(f"{source}：配置项 {fault.key} 无效：{fault}")
    if errors:
        raise HolidayConfigError("\n".join(errors))
    seen: dict[date, int] = {}
    for notice in notices:
        for d in notice.holidays | notice.workdays:
            if d in seen:
                errors.append(f"{source}：{d.isoformat()} 同时出现在 {seen[d]} 年和 {notice.year} 年的安排中")
            seen[d] = notice.year
    if errors:
        raise HolidayConfigError("\n".join(errors))
    return notices


class _Fault(ValueError):
    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def _year_notice(key: Any, entry: Any) -> YearNotice:
    if isinstance(key, str) and key.strip().isdigit():
        key = int(key)
    if isinstance(key, bool) or not isinstance(key, int) or not 1900 <= key <= 2199:
        raise _Fault(str(key), "应为四位数的年份，例如 2027")
    if not isinstance(entry, Mapping):
        raise _Fault(str(key), "应为映射，写明 holidays（放假日期）和 workdays（调休上班日期）")
    unknown = [str(k) for k in entry if k not in ("holidays", "workdays")]
    if unknown:
        raise _Fault(f"{key}.{unknown[0]}", "未知的配置项；可用的配置项：holidays（放假日期）、workdays（调休上班日期）")
    holidays = _dates(key, "holidays", entry.get("holidays"))
    workdays = _dates(key, "workdays", entry.get("workdays"))
    for d in sorted(workdays):
        if d.weekday() < 5:
            raise _Fault(f"{key}.workdays", f"{d.isoformat()} 是工作日（周一至周五），调休上班日应为周六或周日")
    both = sorted(holidays & workdays)
    if both:
        raise _Fault(str(key), f"{both[0].isoformat()} 同时列为放假日期和调休上班日期")
    return YearNotice(key, frozenset(holidays), frozenset(workdays))


def _dates(year: int, name: str, value: Any) -> set[date]:
    """The dates of a list whose items are "YYYY-MM-DD" or "YYYY-MM-DD 至 YYYY-MM-DD"."""
    if value is None:
        return set()
    if not isinstance(value, list):
        raise _Fault(f"{year}.{name}", "应为日期列表，例如 [2027-01-01, 2027-02-06 至 2027-02-13]")
    found: set[date] = set()
    for index, item in enumerate(value, start=1):
        key = f"{year}.{name} 第 {index} 项"
        parts = [p.strip() for p in str(item).split(_RANGE_WORD)]
        if len(parts) > 2:
            raise _Fault(key, f"{item!r} 应为一个日期或“起 至 止”两个日期")
        first, last = _date(key, parts[0]), _date(key, parts[-1])
        if last < first:
            raise _Fault(key, f"{item!r} 的结束日期早于开始日期")
        for d in (first, last):
            # A notice may name a make-up day at the end of the year before or the start of the next.
            if abs(d.year - year) > 1:
                raise _Fault(key, f"{d.isoformat()} 不属于 {year} 年（或相邻年份）的安排")
        found.update(first + timedelta(days=i) for i in range((last - first).days + 1))
    return found


def _date(key: str, text: str) -> date:
    try:
        if not _ISO_DATE.match(text):
            raise ValueError(text)
        return date.fromisoformat(text)
    except ValueError as exc:
        raise _Fault(key, f"{text!r} 不是 YYYY-MM-DD 格式的日期") from exc
