"""The project list's reads done in fewer passes, on SQLite and on PostgreSQL: its total under a
text search (counted in the same pass as the page) agrees with the plain count on every page (the
first, a partial last one, one past the end, none found); its industry choices (a walk of the
industry index) are those a DISTINCT over every project gives; a one-colour list sorted by flag is
in id order."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from pipeline.accounts import Principal
from pipeline.db import session_scope
from pipeline.runtime import Runtime
from pipeline.web.queries import ProjectFilters, count_projects, filter_choices, list_projects
from tests.factories import code
from tests.web_support import LEADER_B, small_reserve

OFFICE = Principal(user_id=1, username="office", display_name="投资科", role="office")


@pytest.mark.parametrize(("q", "page", "total", "codes"), [
    (code(1)[:17], 1, 4, [code(1), code(2), code(3)]),  # a code prefix: all four, a full first page
    (code(1)[:17], 2, 4, [code(4)]),  # the partial last page
    (code(1)[:17], 3, 4, []),  # past the end: no rows, the total still said
    (LEADER_B, 1, 2, [code(3), code(4)]),
    ("无此项目", 1, 0, []),  # none found
    ("无此项目", 2, 0, []),
])
def test_a_searched_lists_total_is_the_count_of_its_matches(any_runtime: Runtime, q: str, page: int, total: int,
                                                            codes: list[str]) -> None:
    small_reserve(any_runtime)
    filters = ProjectFilters(q=q, page=page, per_page=3)
    with session_scope(any_runtime.session_factory) as session:
        found, rows = list_projects(session, filters, OFFICE)
        assert (found, [r.code for r in rows]) == (total, codes)
        assert found == count_projects(session, filters.normalised(), OFFICE)


def test_the_industry_choices_are_every_industry_present_in_order(any_runtime: Runtime) -> None:
    """Found by walking the industry index; the same as a DISTINCT over every project (in the
    database's own order), with an industry outside the configured list and projects without one."""
    small_reserve(any_runtime)
    with session_scope(any_runtime.session_factory) as session:
        for pid, industry in ((1, "水利"), (2, None), (3, "自定义行业"), (4, "水利")):
            session.execute(text("UPDATE projects SET industry = :i WHERE id = :id"), {"i": industry, "id": pid})
        distinct = list(session.scalars(text(
            "SELECT DISTINCT industry FROM projects WHERE industry IS NOT NULL ORDER BY industry")))
        assert sorted(distinct) == sorted(["水利", "自定义行业"])
        assert filter_choices(session, OFFICE)["industries"] == distinct
        session.execute(text("UPDATE projects SET industry = NULL"))
        assert filter_choices(session, OFFICE)["industries"] == []


@pytest.mark.parametrize("desc", [False, True])
def test_a_one_colour_list_sorted_by_flag_is_in_id_order(any_runtime: Runtime, desc: bool) -> None:
    """Under one colour the flag orders nothing: the page is in id order (ascending or not), as the
    flag-then-id order gives."""
    small_reserve(any_runtime)
    with session_scope(any_runtime.session_factory) as session:
        for color, ids in (("red", [1, 3]), ("green", [2, 4])):
            expected = [code(i) for i in (reversed(ids) if desc else ids)]
            total, rows = list_projects(session, ProjectFilters(color=color, sort="flag", desc=desc), OFFICE)
            assert (total, [r.code for r in rows]) == (len(ids), expected)
