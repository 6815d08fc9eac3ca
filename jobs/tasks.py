"""Job functions. Each is a plain ``async def task(ctx, *, ...)``; ``ctx["db"]`` is a ``TenantDB``."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text

__all__ = ["precreate_partitions"]

log = logging.getLogger(__name__)


async def precreate_partitions(ctx: dict[str, Any], *, months: int = 3) -> int:
    """Create each tenant's monthly ``audit_logs`` partitions for this month and the next ``months``,
    so events land in a time partition (droppable by retention) rather than the tenant's default one."""
    db = ctx["db"]
    today = datetime.now(UTC).date()
    async with db.system() as session:
        tenants = (await session.execute(text("SELECT auditlog_all_tenant_ids()"))).scalars().all()
    created = 0
    for tenant_id in tenants:
        async with db.tenant(tenant_id) as session:
            created += (
                await session.execute(
                    text("SELECT auditlog_ensure_partitions(:t, :d, :m)"),
                    {"t": tenant_id, "d": today, "m": months + 1},
                )
            ).scalar_one()
    log.info("partition job: %d tenants, %d partitions created", len(tenants), created)
    return created
