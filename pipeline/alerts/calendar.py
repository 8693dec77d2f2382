"""The 双月述职 review calendar: review dates, China's working days, and when each digest goes out.

Configuration lives in ``config/reviews.yaml`` (see that file) and loads into a frozen, validated
``ReviewCalendarConfig``; a bad file raises ``CalendarConfigError`` whose Chinese message names the
file and the key.

``ReviewCalendar`` answers the review questions (which days, when each digest goes) over China's
working days, holidays and make-up working days (调休) included, from ``WorkingCalendar``
(pipeline.alerts.holidays), which never fails for a year: it assumes Monday to Friday where no
official calendar is known, and records that it did.

Everything here is pure: dates in, dates out. Nothing reads the clock.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from pipeline.alerts.holidays import TextDatesLoader, WorkingCalendar

DEFAULT_MONTHS: tuple[int, ...] = (2, 4, 6, 8, 10, 12)
MAX_LEAD_WORKING_DAYS = 60
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_SEND_TIME = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


class CalendarConfigError(ValueError):
    """The review calendar cannot be used as configured; the message (Chinese) says why."""


# --- configuration -------------------------------------------------------------------------------


class ReviewCalendarConfig(BaseModel):
    """The review calendar as configured. ``dates`` overrides ``months`` for the years it covers."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    timezone: str = "Asia/Shanghai"
    months: tuple[int, ...] = DEFAULT_MONTHS
    dates: tuple[date, ...] = ()
    lead_working_days: int = 5
    send_time: time = time(9, 0)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @field_validator("timezone", mode="before")
    @classmethod
    def _known_timezone(cls, value: Any) -> str:
        if not isinstance(value, str):
            raise ValueError("应为时区名称，例如 Asia/Shanghai")
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"未知时区：{value}") from exc
        return value

    @field_validator("months", mode="before")
    @classmethod
    def _months(cls, value: Any) -> tuple[int, ...]:
        if not isinstance(value, list | tuple) or not value:
            raise ValueError("应为非空的月份列表，例如 [2, 4, 6, 8, 10, 12]")
        for month in value:
            if isinstance(month, bool) or not isinstance(month, int) or not 1 <= month <= 12:
                raise ValueError(f"月份应为 1 到 12 的整数，而不是 {month!r}")
        if len(set(value)) != len(value):
            raise ValueError("月份有重复")
        return tuple(sorted(value))

    @field_validator("dates", mode="before")
    @classmethod
    def _dates(cls, value: Any) -> tuple[date, ...]:
        if value is None:
            return ()
        if not isinstance(value, list | tuple):
            raise ValueError("应为日期列表，例如 [2025-02-27, 2025-04-29]")
        parsed: list[date] = []
        for item in value:
            if isinstance(item, date) and not isinstance(item, datetime):
                parsed.append(item)
                continue
            try:
                if not _ISO_DATE.match(str(item)):
                    raise ValueError(item)
                parsed.append(date.fromisoformat(str(item)))
            except ValueError as exc:
                raise ValueError(f"{item!r} 不是 YYYY-MM-DD 格式的日期") from exc
        duplicates = sorted({d for d in parsed if parsed.count(d) > 1})
        if duplicates:
            raise ValueError(f"日期重复：{duplicates[0].isoformat()}")
        return tuple(sorted(parsed))

    @field_validator("lead_working_days", mode="before")
    @classmethod
    def _lead(cls, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_LEAD_WORKING_DAYS:
            raise ValueError(f"应为 0 到 {MAX_LEAD_WORKING_DAYS} 的整数（工作日数），而不是 {value!r}")
        return value

    @field_validator("send_time", mode="before")
    @classmethod
    def _send_time(cls, value: Any) -> time:
        if isinstance(value, time):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            # YAML 1.1 reads an unquoted 9:00 or 14:30 as a base-60 number (540, 870).
            raise ValueError('应为加引号的 "HH:MM"，例如 send_time: "09:00"')
        match = _SEND_TIME.match(value) if isinstance(value, str) else None
        if match is None:
            raise ValueError(f'应为 "HH:MM" 格式的时间，而不是 {value!r}')
        return time(int(match[1]), int(match[2]))


def parse_review_calendar(data: Mapping[str, Any], *, source: str) -> ReviewCalendarConfig:
    """Validate ``data`` (a reviews.yaml document); ``source`` names the file in error messages."""
    try:
        return ReviewCalendarConfig.model_validate(dict(data))
    except ValidationError as exc:
        raise CalendarConfigError("\n".join(_describe(err, source) for err in exc.errors())) from exc


def load_review_calendar(path: Path) -> ReviewCalendarConfig:
    """Read and validate ``config/reviews.yaml`` (or the file given)."""
    try:
        document = yaml.load(path.read_text(encoding="utf-8"), Loader=TextDatesLoader)  # noqa: S506 (safe)
    except FileNotFoundError as exc:
        raise CalendarConfigError(f"找不到评审日历配置文件 {path}") from exc
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise CalendarConfigError(f"无法读取评审日历配置文件 {path}：{exc}") from exc
    if document is None:
        document = {}
    if not isinstance(document, Mapping):
        raise CalendarConfigError(f"{path} 应为 YAML 映射（key: value），例如 months: [2, 4, 6, 8, 10, 12]")
    return parse_review_calendar(document, source=str(path))


def _describe(err: Any, source: str) -> str:
    key = ".".join(str(part) for part in err["loc"]) or "（整个文件）"
    if err["type"] == "extra_forbidden":
        known = list(ReviewCalendarConfig.model_fields)
        hint = difflib.get_close_matches(key, known, n=1)
        suggestion = f"，是否想写 {hint[0]}？" if hint else f"；可用的配置项：{', '.join(known)}"
        return f"{source}：未知的配置项 {key}{suggestion}"
    message = str(err["msg"]).removeprefix("Value error, ")
    return f"{source}：配置项 {key} 无效：{message}"


# --- reviews -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReviewCalendar:
    """The review calendar as configured, over China's working days (``WorkingCalendar``)."""

    config: ReviewCalendarConfig
    days: WorkingCalendar

    @property
    def tz(self) -> ZoneInfo:
        return self.config.tz

    def reviews_in_year(self, year: int) -> list[date]:
        """The year's review dates in order: the explicit ``dates`` of that year if any, else the rule."""
        listed = [d for d in self.config.dates if d.year == year]
        if listed:
            return listed
        return [self._last_working_day(year, month) for month in self.config.months]

    def review_dates(self, start: date, end: date) -> list[date]:
        """Reviews with start ≤ date ≤ end, in order."""
        return [d for year in range(start.year, end.year + 1) for d in self.reviews_in_year(year) if start <= d <= end]

    def next_review(self, after: date) -> date:
        """The first review strictly after ``after``."""
        year = after.year
        while True:  # every year has at least one review, so this ends by the next year
            later = [d for d in self.reviews_in_year(year) if d > after]
            if later:
                return later[0]
            year += 1

    def previous_review(self, before: date) -> date:
        """The last review strictly before ``before``."""
        earlier = [d for d in self.reviews_in_year(before.year) if d < before]
        return earlier[-1] if earlier else self.reviews_in_year(before.year - 1)[-1]

    def is_review(self, day: date) -> bool:
        return day in self.reviews_in_year(day.year)

    def nearest_reviews(self, day: date) -> tuple[date, date]:
        """The reviews around ``day``: the last one strictly before it and the first strictly after."""
        return self.previous_review(day), self.next_review(day)

    def digest_day(self, review: date) -> date:
        """The day the digest for ``review`` goes out (its send date in the calendar's time zone): the
        day a digest describes the reserve as of (SPEC §9)."""
        return self.digest_send_at(review).date()

    def digest_send_at(self, review: date) -> datetime:
        """When the digest for ``review`` goes out: ``lead_working_days`` working days before it, at
        ``send_time``, in the calendar's time zone (tz-aware)."""
        send_day = self.days.add_working_days(review, -self.config.lead_working_days)
        return datetime.combine(send_day, self.config.send_time, tzinfo=self.tz)

    def _last_working_day(self, year: int, month: int) -> date:
        d = date(year + month // 12, month % 12 + 1, 1) - timedelta(days=1)
        while not self.days.is_working_day(d):
            d -= timedelta(days=1)
        return d
