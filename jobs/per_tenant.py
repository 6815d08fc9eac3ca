"""One pass of a lake task over the tenants on one connection of the API role: each tenant on its own, a
failure logged and counted, never stopping the others (the next run retries that tenant), and the
connection opened again when a failure closed it."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable

import asyncpg

__all__ = ["each_tenant"]

TenantWork = Callable[[asyncpg.Connection, uuid.UUID], Awaitable[dict[str, int]]]
"""A tenant's step of the pass: the counts it adds to the totals."""


async def each_tenant(
    dsn: str,
    tenant_ids: Iterable[uuid.UUID],
    work: TenantWork,
    totals: dict[str, int],
    *,
    log: logging.Logger,
    failure: str,
) -> dict[str, int]:
    """Run ``work`` for each tenant, adding 1 to ``totals["tenants"]`` and the counts it returns; a tenant
    whose work raises adds 1 to ``totals["failed"]`` and is logged to ``log`` with ``failure`` (a format
    taking the tenant id). Returns ``totals``."""
    conn = await asyncpg.connect(dsn)
    try:
        for tenant_id in tenant_ids:
            totals["tenants"] += 1
            try:
                counts = await work(conn, tenant_id)
            except Exception:
                totals["failed"] += 1
                log.exception(failure, tenant_id)
                if conn.is_closed():
                    conn = await asyncpg.connect(dsn)
                continue
            for name, count in counts.items():
                totals[name] += count
    finally:
        await conn.close()
    return totals
