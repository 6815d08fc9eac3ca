"""Retention and cleanup: archive to the lake, then remove from PostgreSQL only what the lake holds.

``archive_and_purge`` is the one path (the daily job, ``auditlog apply-retention`` and
``DELETE /api/v1/logs/cleanup``): export the tenant's new events (waiting for a running exporter), then call
``auditlog_purge_archived(before)`` (migration 0008), which checks per event that the watermark covers its
seq AND a live manifest file of its date covers it, drops whole month partitions whose every row is
archived, and deletes archived rows at the edges. An event that is not in the lake (one committed after
the export, with an old timestamp) stays and is counted in ``kept``; nothing else can remove it, since the
API role has no DELETE on ``audit_logs``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import asyncpg
from sqlalchemy import text

from analytics.lake import export_tenant
from db.tenancy import bind_tenant
from jobs.per_tenant import each_tenant

if TYPE_CHECKING:
    from analytics.lake import LakeStore
    from db.keyring import KeyringStore

__all__ = ["PurgeResult", "RecordEvent", "apply_retention", "archive_and_purge"]

log = logging.getLogger(__name__)

_PURGE = "SELECT deleted, kept, dropped_partitions FROM auditlog_purge_archived($1)"
_RETAINED = text(
    "SELECT id, retention_days FROM auditlog_list_tenants() WHERE retention_days IS NOT NULL AND NOT is_platform"
)

RecordEvent = Callable[[uuid.UUID, "PurgeResult"], Awaitable[None]]
"""Records a purge as an administrative event of the tenant (given by the API process or the CLI)."""


@dataclass(slots=True)
class PurgeResult:
    tenant_id: uuid.UUID
    before: datetime
    deleted: int
    """Events removed from PostgreSQL (all of them in the lake)."""
    kept: int
    """Events older than ``before`` left in PostgreSQL because the lake does not hold them yet."""
    dropped_partitions: int
    exported: int
    """Events the export before the purge added to the lake."""
    watermark: int


async def archive_and_purge(
    conn: asyncpg.Connection, store: LakeStore, keyrings: KeyringStore, tenant_id: uuid.UUID, before: datetime
) -> PurgeResult:
    """Export the tenant's new events, then remove its archived events older than ``before``."""
    if before.tzinfo is None:
        raise ValueError("before must carry a time zone")
    exported = await export_tenant(conn, store, keyrings, tenant_id, wait=True)
    async with bind_tenant(conn, tenant_id):
        row = await conn.fetchrow(_PURGE, before)
        watermark = await conn.fetchval(
            "SELECT coalesce((SELECT last_seq FROM lake_watermarks WHERE tenant_id = $1), 0)", tenant_id
        )
    result = PurgeResult(tenant_id, before, int(row[0]), int(row[1]), int(row[2]), exported.rows, int(watermark))
    log.info(
        "purge of tenant %s before %s: %d removed (%d month partitions dropped), %d kept (not yet in the lake)",
        tenant_id, before.isoformat(), result.deleted, result.dropped_partitions, result.kept,
    )  # fmt: skip
    return result


async def apply_retention(ctx: dict[str, Any]) -> dict[str, int]:
    """For every tenant with a retention period, archive and purge its events older than that period."""
    record: RecordEvent | None = ctx.get("record_purge")
    async with ctx["db"].system() as session:
        retention_days = {r[0]: int(r[1]) for r in (await session.execute(_RETAINED)).all()}

    async def purge(conn: asyncpg.Connection, tenant_id: uuid.UUID) -> dict[str, int]:
        before = datetime.now(UTC) - timedelta(days=retention_days[tenant_id])
        result = await archive_and_purge(conn, ctx["lake"], ctx["keyrings"], tenant_id, before)
        if record is not None and (result.deleted or result.kept):
            await record(tenant_id, result)
        return {"deleted": result.deleted, "kept": result.kept}

    totals = {"tenants": 0, "deleted": 0, "kept": 0, "failed": 0}
    failure = "retention of tenant %s failed; the next run retries it"
    return await each_tenant(ctx["dsn"], retention_days, purge, totals, log=log, failure=failure)
