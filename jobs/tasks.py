"""Job functions. Each is a plain ``async def task(ctx, *, ...)``; ``ctx["db"]`` is a ``TenantDB``."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text

from db.tenancy import TenantDB

__all__ = ["ON_DATA_KEY_ROTATED", "all_tenants", "precreate_partitions", "rotate_data_keys"]

log = logging.getLogger(__name__)

ON_DATA_KEY_ROTATED = "on_data_key_rotated"
"""``ctx`` key of an optional ``async (tenant_id, key_id, trigger) -> None`` called after each rotation has
committed: the caller (the API or ``auditlog worker``/``rotate-keys``) records it in the tenant's log."""

# Months (UTC) that have rows in the tenant's default partition, read through the parent (so under RLS).
_DEFAULT_MONTHS = text(
    """SELECT DISTINCT date_trunc('month', "timestamp" AT TIME ZONE 'UTC')::date FROM audit_logs
       WHERE tenant_id = :t AND tableoid = to_regclass(:p)"""
)


async def all_tenants(db: TenantDB) -> list[uuid.UUID]:
    """Every tenant id (jobs walk the tenants one by one, each in its own tenant-bound transaction)."""
    async with db.system() as session:
        return list((await session.execute(text("SELECT auditlog_all_tenant_ids()"))).scalars().all())


async def precreate_partitions(ctx: dict[str, Any], *, months: int = 3) -> int:
    """Create each tenant's monthly ``audit_logs`` partitions for this month and the next ``months``,
    so events land in a time partition (droppable by retention) rather than the tenant's default one;
    and give every month that back-filled events put in the default partition a partition of its own."""
    db = ctx["db"]
    today = datetime.now(UTC).date()
    tenants = await all_tenants(db)
    created = 0
    for tenant_id in tenants:
        async with db.tenant(tenant_id) as session:
            backfilled = (
                await session.execute(_DEFAULT_MONTHS, {"t": tenant_id, "p": f"audit_logs_t_{tenant_id.hex}_default"})
            ).scalars()
            for month in [today, *backfilled]:
                created += (
                    await session.execute(
                        text("SELECT auditlog_ensure_partitions(:t, :d, :m)"),
                        {"t": tenant_id, "d": month, "m": months + 1 if month == today else 1},
                    )
                ).scalar_one()
    log.info("partition job: %d tenants, %d partitions created", len(tenants), created)
    return created


async def rotate_data_keys(ctx: dict[str, Any], *, max_age_days: float = 7, trigger: str = "schedule") -> int:
    """Give every tenant whose newest data key is older than ``max_age_days`` a new one.

    AES-GCM with random 96-bit nonces must stay well under 2**32 encryptions per key; rotating weekly keeps
    a tenant under that up to ~7,000 events/s sustained. Old keys stay to read old events. Each rotation is
    reported to ``ctx[ON_DATA_KEY_ROTATED]`` (if set) once committed, with ``trigger``.
    """
    db, keyrings = ctx["db"], ctx["keyrings"]
    on_rotated = ctx.get(ON_DATA_KEY_ROTATED)
    cutoff = datetime.now(UTC) - timedelta(days=max_age_days)
    rotated = 0
    for tenant_id in await all_tenants(db):
        key_id = None
        async with db.tenant(tenant_id) as session:
            newest = (
                await session.execute(
                    text("SELECT max(created_at) FROM tenant_keys WHERE tenant_id = :t"), {"t": tenant_id}
                )
            ).scalar()
            if newest is None or newest <= cutoff:
                key_id = await keyrings.rotate(session, tenant_id)
                rotated += 1
        if key_id is not None and on_rotated is not None:
            await on_rotated(tenant_id, key_id, trigger)
    log.info("key rotation job: %d tenants rotated", rotated)
    return rotated
