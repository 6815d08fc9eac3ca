"""The stream's statements: events of one tenant by position (``seq``), each flagged by the filter sets asked for.

Filters mean exactly what they mean on ``GET /logs``: the predicate of each filter set is built by the list
route's own SQL builder (``app.logs.query``), so a subscriber sees precisely the events a poller with the same
parameters would. Rows are read in ``seq`` order (the tenant's commit order) through the per-partition ``seq``
index; every statement names ``tenant_id = $1`` and runs on a connection bound to that tenant (RLS).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, Final

from db.blind_index import SearchIndex
from db.event_filters import COLUMN_COUNT, SELECT_COLUMNS, Binder, LogFilters, filter_predicate

__all__ = ["BATCH", "COLUMN_COUNT", "build_fetch_sql", "build_position_of_sql"]

BATCH: Final = 500
"""Rows per statement while replaying or catching up."""


def build_fetch_sql(
    tenant_id: uuid.UUID,
    after_seq: int,
    filter_sets: Sequence[LogFilters],
    *,
    replay: bool = False,
    limit: int = BATCH,
    search: SearchIndex | None = None,
) -> tuple[str, list[Any]]:
    """Events with ``seq > after_seq`` in ``seq`` order, then ``seq``, then one boolean per filter set.

    ``replay`` (one filter set, one subscriber catching up) applies the predicate in ``WHERE``, so only
    matching rows are read; the shared live fetch reads every new row once and flags it for each set, so its
    position advances over rows nobody asked for as well. ``search``: the tenant's blind index (for ``q``).
    """
    bind = Binder()
    tenant = bind(tenant_id)
    after = bind(after_seq)
    where = [f"tenant_id = {tenant}", f"seq > {after}"]
    flags: list[str] = []
    if replay:
        if len(filter_sets) != 1:
            raise ValueError("a replay has exactly one filter set")
        where.append(filter_predicate(tenant_id, filter_sets[0], bind, search=search))
        flags.append("true")
    else:
        flags.extend(f"coalesce(({filter_predicate(tenant_id, f, bind, search=search)}), false)" for f in filter_sets)
    lim = bind(limit)
    columns = ", ".join([SELECT_COLUMNS, "seq", *flags])
    sql = f"SELECT {columns} FROM audit_logs WHERE {' AND '.join(where)} ORDER BY seq LIMIT {lim}"
    return sql, bind.args


def build_position_of_sql(tenant_id: uuid.UUID, event_id: uuid.UUID) -> tuple[str, list[Any]]:
    """The position (``seq``) of one event of the tenant."""
    return "SELECT seq FROM audit_logs WHERE tenant_id = $1 AND id = $2", [tenant_id, event_id]
