"""The search term of the tenant-scoped full-text view ``audit_logs_fts`` (migrations 0004, 0010, 0014).

The view is a security barrier: its own conditions run before any condition of the query reading it, and
only leakproof conditions may be pushed below them. ``tsvector @@ tsquery`` is not leakproof, so a search
written in the reading query could never use the GIN index. The view therefore applies the search itself,
inside the barrier, taking the ``tsquery`` from the setting ``auditlog.search``: a query with ``q`` sets it on
its connection first (``bind_search``), then reads the view (and repeats the condition, which is then a cheap
recheck). Without the setting the view is empty.

The setting holds the query over the tenant's blind index (``db.blind_index.SearchIndex.tsquery_sql``),
computed by PostgreSQL in the statement that sets it (the message part is ``phraseto_tsquery`` of the terms),
never a metadata word: only the application holds the key the metadata tokens need.
"""

from __future__ import annotations

import asyncpg

from db.blind_index import SearchIndex
from db.event_filters import Binder

__all__ = ["SEARCH_SETTING", "bind_search", "search_source"]

SEARCH_SETTING = "auditlog.search"


async def bind_search(conn: asyncpg.Connection, search: SearchIndex, q: str, *, local: bool) -> bool:
    """Give ``audit_logs_fts`` the search for ``q`` on ``conn``: for the current transaction (``local``) or for
    the session (the read pool, whose statements are each their own transaction). ``False`` (nothing set) when
    ``q`` holds no word: the reading query's own condition is then ``false``."""
    bind = Binder()
    query = search.tsquery_sql(q, bind)
    if query is None:
        return False
    await conn.execute(f"SELECT set_config('{SEARCH_SETTING}', ({query})::text, {bind(local)})", *bind.args)
    return True


def search_source(service: bool | None) -> str:
    """The ``FROM`` item of a search over one side of the service-event line (``db.event_filters.service_side``):
    the tenant's own events (``audit_logs_fts``), the service's (``audit_logs_fts_service``), or both. Each view
    reads its own partial GIN index (migration 0019), so a search of the tenant's events never reads the read
    records, whose metadata holds the words of every search they record."""
    if service is None:
        return "(SELECT * FROM audit_logs_fts UNION ALL SELECT * FROM audit_logs_fts_service) AS audit_logs_fts"
    return "audit_logs_fts_service" if service else "audit_logs_fts"
