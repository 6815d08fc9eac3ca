"""Scheduled clean-up of Idempotency-Keys: rows older than 24 h are no longer honoured, so delete them.

Keys are per tenant and RLS hides other tenants' rows, so the job walks the tenants (like the partition
job) and deletes each one's expired keys in its own short transaction. Register it as a cron task.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import text

from app.logs.idempotency import TTL_SQL
from jobs.tasks import all_tenants

__all__ = ["purge_idempotency_keys"]

log = logging.getLogger(__name__)

_PURGE = text(f"DELETE FROM idempotency_keys WHERE created_at < now() - {TTL_SQL}")


async def purge_idempotency_keys(ctx: dict[str, Any]) -> int:
    """Delete every tenant's Idempotency-Key rows older than 24 h; returns how many were deleted."""
    db = ctx["db"]
    deleted = 0
    tenants = await all_tenants(db)
    for tenant_id in tenants:
        async with db.tenant(tenant_id) as session:
            result = await session.execute(_PURGE)
            deleted += int(getattr(result, "rowcount", 0) or 0)
    log.info("idempotency purge: %d tenants, %d keys deleted", len(tenants), deleted)
    return deleted
