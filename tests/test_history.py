"""History month by month (SPEC §9): loading the demo's twelve monthly reports fills the month flags
with every project's flag at every month end, equal to the reserve as of that month end; a project's
timeline reads as the year went, each entry dated with the month end it describes, then the
current flag, with acknowledgements and overrides among them in date order."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date

import polars as pl
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from pipeline.as_of import flags_as_of
from pipeline.db import session_scope
from pipeline.models import MonthFlag, Project
from pipeline.months import month_end_of
from pipeline.overrides import set_override
from pipeline.runtime import Runtime
from pipeline.web import create_app
from tests.factories import ACTOR
from tests.web_support import bearer, demo_loaded, login, user

MONTH_ENDS = [month_end_of(date(2024, m, 1)) for m in range(1, 13)]


@pytest.fixture(scope="module")
def rt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    with demo_loaded(tmp_path_factory.mktemp("history")) as runtime:
        yield runtime


def month_rows(rt: Runtime) -> pl.DataFrame:
    with session_scope(rt.session_factory) as session:
        rows = session.execute(select(Project.code, MonthFlag.month_end, MonthFlag.computed_color, MonthFlag.reasons)
                               .join(Project, Project.id == MonthFlag.project_id)).all()
    return pl.DataFrame([(c, m, col, json.dumps(r, ensure_ascii=False, sort_keys=True)) for c, m, col, r in rows],
                        schema={"code": pl.Utf8, "month_end": pl.Date, "color": pl.Utf8, "reasons": pl.Utf8},
                        orient="row")


def test_the_demo_load_fills_every_month_end_as_the_reserve_stood_then(rt: Runtime) -> None:
    months = month_rows(rt)
    assert sorted(months["month_end"].unique().to_list()) == MONTH_ENDS
    for month_end in MONTH_ENDS:
        with session_scope(rt.session_factory) as session:
            frames = list(flags_as_of(session, month_end, scheme=rt.scheme, compiled=rt.compiled, chunk_size=500))
        want = pl.concat(frames).select(
            "code", pl.col("color"),
            pl.col("reasons").map_elements(lambda t: json.dumps(json.loads(t), ensure_ascii=False, sort_keys=True),
                                           return_dtype=pl.Utf8),
        ).sort("code")
        got = months.filter(pl.col("month_end") == month_end).select("code", "color", "reasons").sort("code")
        assert want.height > 1000
        assert got.equals(want), month_end


def _changing_project(months: pl.DataFrame) -> str:
    """A project that was green, then yellow, then red in the course of the year."""
    for (code,), part in months.sort("month_end").group_by("code", maintain_order=True):
        colours = part["color"].to_list()
        if colours[0] == "green" and "yellow" in colours and "red" in colours \
                and colours.index("yellow") < colours.index("red"):
            return str(code)
    raise AssertionError("the demo has no project that went green → yellow → red")


def test_a_project_timeline_reads_as_the_year_went(rt: Runtime) -> None:
    months = month_rows(rt)
    code = _changing_project(months)
    series = months.filter(pl.col("code") == code).sort("month_end")
    token = user(rt, "office-history", "office")
    with TestClient(create_app(rt)) as client:
        detail = client.get(f"/api/projects/{code}", headers=bearer(token)).json()
        history = detail["history"]
        # One entry where the colour or the rules that fire change, each at the month end it describes.
        expected, last = [], None
        for m, colour, reasons in series.select("month_end", "color", "reasons").iter_rows():
            key = (colour, sorted((r["code"], r["color"]) for r in json.loads(reasons)))
            if key != last:
                expected.append((m.isoformat(), colour))
            last = key
        assert [(h["month_end"], h["color"]) for h in history] == expected
        assert history[0]["month_end"] == "2024-01-31" and history[0]["old_color"] is None
        assert len({h["month_end"] for h in history}) == len(history) >= 3
        # The complaint: no month entry is judged as of the year end.
        for h in history[:-1]:
            for reason in h["reasons"]:
                assert "2024-12-31" not in reason["message"], h
        timeline = detail["timeline"]
        assert [e["kind"] for e in timeline] == ["month"] * len(history) + ["flag"]
        assert [e["as_of"] for e in timeline[:-1]] == [h["month_end"] for h in history]
        assert timeline[-1]["as_of"] == "2024-12-31" and timeline[-1]["color"] == detail["flag"]

        user(rt, "office-page", "office")
        login(client, "office-page")
        page = client.get(f"/projects/{code}").text
        labels = [f"{date.fromisoformat(h['month_end']).year}年{date.fromisoformat(h['month_end']).month}月末"
                  for h in history]
        positions = [page.index(label) for label in labels]
        assert positions == sorted(positions)


def test_overrides_stand_among_the_months_in_date_order(rt: Runtime) -> None:
    months = month_rows(rt)
    code = months.filter(pl.col("color") == "red")["code"][0]
    with session_scope(rt.session_factory) as session:
        set_override(session, code=code, color="yellow", reason="资金已到位", expires_on=date(2025, 1, 31),
                     set_by="张三", reflag=rt.reflag_projects, clock=rt.clock, actor=ACTOR)
    token = user(rt, "office-override", "office")
    with TestClient(create_app(rt)) as client:
        timeline = client.get(f"/api/projects/{code}", headers=bearer(token)).json()["timeline"]
    kinds = [e["kind"] for e in timeline]
    # Made on 2024-12-31 (the clock): after the December month end, before the current flag.
    assert kinds[-2:] == ["override", "flag"] and set(kinds[:-2]) == {"month"}
    assert timeline[-1]["color"] == "yellow"
