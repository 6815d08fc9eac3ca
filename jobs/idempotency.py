"""Scheduled clean-up of Idempotency-Keys: rows older than ``TTL`` (24 h) are no longer honoured, so delete them.

``TTL`` is defined here, with the job that enforces it; the API's claim (``app.logs.ingest``) honours the
same value.

Keys are per tenant and RLS hides other tenants' rows, so the job walks the tenants (like the partition
job) and deletes each one's expired keys in its own short transaction. Register it as a cron task.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from sqlalchemy import text

from jobs.tasks import all_tenants

__all__ = ["TTL", "TTL_SQL", "purge_idempotency_keys"]

TTL = timedelta(hours=24)
TTL_SQL = "interval '24 hours'"

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
