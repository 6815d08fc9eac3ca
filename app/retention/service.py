"""Retention and cleanup for the API process: the shared purge (``jobs.retention``) on a dedicated
connection, and each change recorded as an administrative event of the tenant."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import asyncpg
from sqlalchemy import text

from analytics.lake import LakeStore
from app.audit_trail.service_events import TENANT, record_service_event
from db.urls import plain_dsn
from jobs.retention import PurgeResult, archive_and_purge

if TYPE_CHECKING:
    from datetime import datetime

    from litestar import Request

    from app.runtime import Runtime

__all__ = ["cleanup", "lake_store", "record_purge", "set_retention"]

_SET = text("UPDATE tenants SET retention_days = :d WHERE id = :t RETURNING retention_days")


def lake_store(runtime: Runtime) -> LakeStore:
    settings = runtime.settings
    return LakeStore.from_url(settings.lake_location, endpoint_url=settings.s3_endpoint_url)


async def cleanup(runtime: Runtime, tenant_id: uuid.UUID, before: datetime) -> PurgeResult:
    conn = await asyncpg.connect(plain_dsn(runtime.settings.database_url or ""))
    try:
        return await archive_and_purge(conn, lake_store(runtime), runtime.keyrings, tenant_id, before)
    finally:
        await conn.close()


async def record_purge(
    runtime: Runtime,
    result: PurgeResult,
    *,
    actor: str,
    trigger: str,
    request: Request[Any, Any, Any] | None = None,
) -> None:
    await record_service_event(
        runtime,
        tenant_id=result.tenant_id,
        actor=actor,
        action="EVENTS_PURGED",
        resource_type=TENANT,
        resource_id=str(result.tenant_id),
        details={
            "trigger": trigger,
            "before": result.before.isoformat(),
            "deleted_count": result.deleted,
            "kept_count": result.kept,
            "dropped_partitions": result.dropped_partitions,
            "lake_watermark": result.watermark,
        },
        message=f"{result.deleted} events older than {result.before.isoformat()} removed from PostgreSQL "
        f"(archived in the lake; {result.kept} not yet archived kept)",
        request=request,
    )


async def set_retention(
    runtime: Runtime, tenant_id: uuid.UUID, days: int, *, actor: str, request: Request[Any, Any, Any] | None
) -> int:
    async with runtime.db.tenant(tenant_id) as session:
        previous = (
            await session.execute(text("SELECT retention_days FROM tenants WHERE id = :t"), {"t": tenant_id})
        ).scalar_one_or_none()
        stored = (await session.execute(_SET, {"d": days, "t": tenant_id})).scalar_one()
    await record_service_event(
        runtime,
        tenant_id=tenant_id,
        actor=actor,
        action="RETENTION_CHANGED",
        resource_type=TENANT,
        resource_id=str(tenant_id),
        details={"retention_days": days, "previous_retention_days": previous},
        message=f"retention set to {days} days" + (f" (was {previous})" if previous else ""),
        request=request,
    )
    return int(stored)
