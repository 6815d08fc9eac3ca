"""How a page of ``GET /logs?q=...`` is read: walk the newest events first, the GIN index only for rare terms.

The newest 50 matches of a term are found cheaply in one of two ways, and which one depends on how common the
term is, which nothing knows in advance: walking the events in time order (the tenant's time index, or the
filter's own index) and testing each until 51 match costs about 51 ÷ (share of matching events) rows, fast for a word in
most events and a walk of the whole tenant for a rare one; the GIN index of ``search`` returns every match, which
is then sorted, fast for a rare word and a read of hundreds of thousands of rows for a common one. PostgreSQL
cannot choose well here: the search view is a security barrier, so the page's ``ORDER BY ... LIMIT`` does not
reach its plan (it always read every match: 7.8 s of PostgreSQL CPU for a word in half of 1M events), and its
estimate of a term that is not among the column's most common elements is a fixed 0.5 %, per word and per
metadata token, whatever the term.

So the page is read in up to two statements on the caller's read connection:

1. a *bounded walk*: the page's filters over ``audit_logs`` (row-level security on) in keyset order, at most
   ``WALK_ROWS`` rows, tested against the term. 51 matches there are the page (common terms end here);
2. otherwise, by what the walk saw: ``RARE_BELOW`` or more matches means the term is in at least ~0.5 % of the
   events, so an unbounded walk finds 51 within about ``WALK_ROWS * 51 / RARE_BELOW`` rows; fewer means the term
   is rare, and the GIN path (``audit_logs_fts``, bitmap then sort) reads only its few matches.

A search the walk found rare skips it on its next pages for a minute (``app.logs.term_rarity``): the walk is
most of a rare term's cost, and a search is rarely asked only once. The bounded walk reads the rows as stored and
formats only the matches (formatting the 1,000 walked rows tripled its cost).

Every statement applies every filter and the keyset position, so each returns exactly the page (the first one
only when it finds 51). The term is tested where the rows are read: the walks test ``search @@ tsquery`` on rows
that row-level security has already limited to the tenant (the condition is not leakproof, so PostgreSQL runs
it after the policy), and the GIN path reads the barrier view as before.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Final

import asyncpg
import msgspec

from app.logs.query import NEWEST_FIRST, build_list_sql, page_of
from app.logs.term_rarity import RareSearches
from db.blind_index import SearchIndex
from db.event_filters import (
    Binder,
    LogFilters,
    service_clause,
    service_side,
    where_clauses,
)
from db.fts import bind_search

__all__ = ["RARE_BELOW", "WALK_ROWS", "build_walk_sql", "fetch_search_page"]

WALK_ROWS: Final = 1000
"""Rows the first, bounded walk reads at most (a term in 5 % of the events or more ends there)."""
RARE_BELOW: Final = 5
"""Fewer matches than this in the bounded walk: the term is rare, read through the GIN index."""


def build_walk_sql(
    tenant_id: uuid.UUID,
    filters: LogFilters,
    search: SearchIndex,
    *,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
    scan: int | None,
) -> tuple[str, list[Any]] | None:
    """The walk: the page's filters over ``audit_logs`` in keyset order (at most ``scan`` rows when given), the
    term tested on each row; ``limit + 1`` rows. ``None`` when ``q`` holds no word (nothing matches)."""
    if filters.q is None:
        raise ValueError("a search page needs q")
    bind = Binder()
    clauses = where_clauses(tenant_id, msgspec.structs.replace(filters, q=None), bind)
    if filters.severity:
        clauses.append(f"severity = ANY({bind(list(filters.severity))}::text[])")
    if after is not None:
        clauses.append(f'("timestamp", id) < ({bind(after[0])}::timestamptz, {bind(after[1])}::uuid)')
    query = search.tsquery_sql(filters.q, bind)
    if query is None:
        return None
    where = " AND ".join(clauses)
    term = f"search @@ (SELECT {query})"  # the tsquery built once (an InitPlan), not per walked row
    # Both sides of the service-event line (include_system): one ordered branch per side's time index, merged.
    arms = [""] if service_side(filters) is not None else [f" AND {service_clause(side)}" for side in (False, True)]
    lim = bind(limit + 1)
    if scan is None:
        return page_of(
            [f"SELECT * FROM audit_logs WHERE {where}{arm} AND {term} {NEWEST_FIRST} LIMIT {lim}" for arm in arms], lim
        ), bind.args
    # The newest rows as stored (no column computed yet: formatting every walked row cost more than reading it),
    # then the term; only the page's rows are turned into its columns.
    # The walk's size is written into the statement, not bound: a prepared statement's generic plan guesses a
    # LIMIT $n at a tenth of its input, which could make sorting a whole time window look cheaper than walking
    # 1,000 rows. A precaution: the slow generic plan measured with an end_time was the GIN page's (fixed in
    # app.logs.query), not this one's.
    scanned = str(int(scan))
    newest = [f"SELECT * FROM audit_logs WHERE {where}{arm} {NEWEST_FIRST} LIMIT {scanned}" for arm in arms]
    source = newest[0]
    if len(newest) > 1:
        union = " UNION ALL ".join(f"({n})" for n in newest)
        source = f"SELECT * FROM ({union}) AS sides {NEWEST_FIRST} LIMIT {scanned}"
    return page_of([f"SELECT * FROM ({source}) AS walked WHERE {term} {NEWEST_FIRST} LIMIT {lim}"], lim), bind.args


async def fetch_search_page(
    pg: asyncpg.Connection,
    tenant_id: uuid.UUID,
    filters: LogFilters,
    search: SearchIndex,
    *,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
    rare: RareSearches | None = None,
) -> tuple[list[asyncpg.Record], str]:
    """The rows of one ``q`` page (``limit + 1`` at most, like ``build_list_sql``), on a read connection bound to
    the tenant (``TenantDB.read``), and how they were read: ``walk``, ``long walk``, ``gin`` or ``known rare``
    (``rare``: the searches this process already found rare, ``app.logs.term_rarity``: straight to the GIN)."""

    async def through_the_gin() -> list[asyncpg.Record]:
        """Every match of the term through the GIN index of ``search``, then the newest."""
        sql, args = build_list_sql(tenant_id, filters, after=after, limit=limit, search=search)
        await bind_search(pg, search, filters.q or "", local=False)  # the view applies it inside its barrier
        return list(await pg.fetch(sql, *args))

    fingerprint = filters.fingerprint()
    if rare is not None and rare.is_rare(tenant_id, fingerprint):
        return await through_the_gin(), "known rare"
    walk = build_walk_sql(tenant_id, filters, search, after=after, limit=limit, scan=WALK_ROWS)
    if walk is None:
        return [], "walk"
    rows: list[asyncpg.Record] = await pg.fetch(walk[0], *walk[1])
    if len(rows) > limit:
        return rows, "walk"
    if len(rows) >= RARE_BELOW:
        unbounded = build_walk_sql(tenant_id, filters, search, after=after, limit=limit, scan=None)
        assert unbounded is not None
        return list(await pg.fetch(unbounded[0], *unbounded[1])), "long walk"
    if rare is not None:
        rare.remember(tenant_id, fingerprint)
    return await through_the_gin(), "gin"
