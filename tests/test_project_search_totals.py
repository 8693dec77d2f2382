"""The project list's total under a text search (counted in the same pass as the page) agrees
with the plain count on every page: the first, a partial last one, one past the end, and none
found; on SQLite and on PostgreSQL."""

from __future__ import annotations

import pytest

from pipeline.accounts import Principal
from pipeline.db import session_scope
from pipeline.runtime import Runtime
from pipeline.web.queries import ProjectFilters, count_projects, list_projects
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
