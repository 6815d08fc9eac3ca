"""The search term of the tenant-scoped full-text view ``audit_logs_fts`` (migrations 0004, 0010, 0013).

The view is a security barrier: its own conditions run before any condition of the query reading it, and
only leakproof conditions may be pushed below them. ``tsvector @@ tsquery`` is not leakproof, so a search
written in the reading query could never use the GIN index. The view therefore applies the search itself,
inside the barrier, taking the ``tsquery`` text from the setting ``auditlog.search``: a query with ``q``
sets it on its connection first (``bind_search``), then reads the view (and repeats the condition, which is
then a cheap recheck). Without the setting the view is empty.

The text is the query over the tenant's blind index (``db.blind_index.SearchIndex.query``), never ``q``
itself: PostgreSQL does not parse ``q``, since only the application holds the key its metadata tokens need.
"""

from __future__ import annotations

import asyncpg

__all__ = ["SEARCH_SETTING", "bind_search"]

SEARCH_SETTING = "auditlog.search"


async def bind_search(conn: asyncpg.Connection, query: str, *, local: bool) -> None:
    """Give ``audit_logs_fts`` its ``tsquery`` text on ``conn``: for the current transaction (``local``) or for
    the session (the read pool, whose statements are each their own transaction)."""
    await conn.execute(f"SELECT set_config('{SEARCH_SETTING}', $1, $2)", query, local)
