"""The web's warning for a year without an official holiday calendar (SPEC §6): on every page, for
the years that matter now (this year, and in December the next), gone once the year is configured."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient

from pipeline.alerts.holidays import load_working_calendar
from pipeline.runtime import Runtime, set_runtime
from pipeline.settings import REPO_ROOT
from pipeline.web import create_app
from tests.conftest import make_runtime
from tests.factories import code
from tests.web_support import LEADER_A, bearer, small_reserve, user

SH = ZoneInfo("Asia/Shanghai")
UP_TO_2026 = range(2004, 2027)  # chinese-calendar 1.11's years, whatever version is installed
BANNER = '<div class="calendar-notice" role="alert">2027年法定节假日安排尚未配置，工作日暂按周一至周五计算</div>'
PAGES = ["/", "/projects", f"/projects/{code(1)}", "/leaders", f"/leaders/{LEADER_A}", "/upload", "/alerts",
         "/api/docs", "/no-such-page"]
Site = tuple[TestClient, dict[str, str]]


@pytest.fixture
def site_at(tmp_path: Path) -> Iterator[Callable[..., Site]]:
    """The workspace with its wall clock at ``now`` (PIPELINE_NOW), over a package that ends with 2026."""
    made: list[Runtime] = []

    def make(now: datetime, *, holidays: str | None = None) -> Site:
        folder = tmp_path / str(len(made))
        config = folder / "config"
        shutil.copytree(REPO_ROOT / "config", config)
        if holidays is not None:
            (config / "holidays.yaml").write_text(holidays, encoding="utf-8")
        rt = make_runtime(folder, as_of=date(2024, 12, 31), now=now, config_dir=config)
        rt.working_calendar = load_working_calendar(config / "holidays.yaml", package_years=UP_TO_2026)
        made.append(rt)
        small_reserve(rt)
        return TestClient(create_app(rt)), bearer(user(rt, "office", "office"))

    yield make
    for rt in made:
        rt.dispose()
    set_runtime(None)


def test_every_page_warns_of_a_year_without_a_calendar(site_at: Callable[..., Site]) -> None:
    client, auth = site_at(datetime(2027, 1, 5, 8, 59, tzinfo=SH))
    for path in PAGES:
        page = client.get(path, headers=auth)
        assert page.headers["content-type"].startswith("text/html"), path
        assert page.text.count(BANNER) == 1, path
    assert client.get("/login").text.count(BANNER) == 1
    assert BANNER not in client.get("/api/reviews", headers=auth).text  # pages only, not the JSON API


@pytest.mark.parametrize(
    ("now", "shown"),
    [
        (datetime(2026, 11, 30, 23, 0, tzinfo=SH), False),  # 2026 is known, 2027 not yet planned for
        (datetime(2026, 12, 1, 8, 0, tzinfo=SH), True),  # December: next year's reviews are being planned
        (datetime(2026, 12, 31, 8, 0, tzinfo=SH), True),
    ],
)
def test_the_next_year_is_warned_of_in_december(site_at: Callable[..., Site], now: datetime, shown: bool) -> None:
    client, auth = site_at(now)
    assert (BANNER in client.get("/", headers=auth).text) is shown


def test_no_warning_once_the_office_enters_the_year(site_at: Callable[..., Site]) -> None:
    client, auth = site_at(datetime(2027, 1, 5, 8, 59, tzinfo=SH),
                           holidays="2027:\n  holidays: [2027-01-01, 2027-02-05 至 2027-02-13]\n")
    page = client.get("/", headers=auth).text
    assert "calendar-notice" not in page and "法定节假日安排尚未配置" not in page
