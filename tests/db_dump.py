"""A comparable picture of what the database holds, without ids and timestamps."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Engine, text

QUERIES = {
    "projects": """
        SELECT p.code, p.name, p.county, p.industry, p.nature, p.total_investment, l.name, u.name
        FROM projects p LEFT JOIN leaders l ON l.id = p.leader_id LEFT JOIN units u ON u.id = p.unit_id
        ORDER BY p.code""",
    "lists": "SELECT p.code, pl.list_name FROM project_lists pl JOIN projects p ON p.id = pl.project_id ORDER BY 1, 2",
    "states": """
        SELECT p.code, s.as_of, s.ytd_completed, u.idempotency_key FROM project_states s
        JOIN projects p ON p.id = s.project_id JOIN status_updates u ON u.id = s.update_id ORDER BY p.code""",
    "updates": "SELECT idempotency_key, project_code, as_of, status FROM status_updates ORDER BY idempotency_key",
    "flags": """
        SELECT p.code, f.computed_color, f.effective_color, f.reasons, f.scheme, f.scheme_version
        FROM project_flags f JOIN projects p ON p.id = f.project_id ORDER BY p.code""",
    "history": """
        SELECT p.code, h.old_computed, h.new_computed, h.old_effective, h.new_effective, h.cause, h.as_of
        FROM flag_history h JOIN projects p ON p.id = h.project_id ORDER BY p.code, h.id""",
    "batches": """
        SELECT filename, status, total_rows, accepted_rows, duplicate_rows, rejected_rows, applied_rows,
               superseded_rows FROM import_batches ORDER BY id""",
    "month_flags": """
        SELECT p.code, m.month_end, m.computed_color, m.base_color, m.reasons, u.idempotency_key
        FROM month_flags m JOIN projects p ON p.id = m.project_id JOIN status_updates u ON u.id = m.update_id
        ORDER BY p.code, m.month_end""",
    "rejected": "SELECT b.filename, r.row_number, r.header, r.message FROM rejected_rows r "
                "JOIN import_batches b ON b.id = r.batch_id ORDER BY 1, 2, 3",
}


def _plain(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in "[{":
        try:
            value = json.loads(value)
        except ValueError:
            return value
    if isinstance(value, (list, dict)):
        return json.dumps(value, sort_keys=True, ensure_ascii=False)
    return str(value) if value is not None else None


# What depends on the order batches arrived in, by design: the log of flag changes as they were
# observed, and how many of a batch's applied rows were already superseded when it was applied.
ARRIVAL_ORDER = {
    "history": None,
    "batches": """
        SELECT filename, status, total_rows, accepted_rows, duplicate_rows, rejected_rows,
               applied_rows FROM import_batches ORDER BY id""",
}


def dump(engine: Engine, *, any_arrival_order: bool = False) -> dict[str, list[tuple[Any, ...]]]:
    """The picture; with ``any_arrival_order`` only what must not depend on the order batches
    arrived and were applied in (the state, the flags, the month-by-month history)."""
    queries = dict(QUERIES)
    if any_arrival_order:
        for name, sql in ARRIVAL_ORDER.items():
            if sql is None:
                del queries[name]
            else:
                queries[name] = sql
    with engine.connect() as conn:
        return {name: [tuple(_plain(v) for v in row) for row in conn.execute(text(sql))] for name, sql in queries.items()}
