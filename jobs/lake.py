"""Lake jobs: export every tenant's new events (every few minutes), compact and collect (nightly).

Each tenant is exported on its own and a failure is logged and counted, never stopping the others; the
next run retries it from its watermark. Tenants another exporter is busy with are skipped (its run covers
them). The tasks use one dedicated connection of the API role (``ctx["dsn"]``): the per-tenant lake lock is
a session-level advisory lock on it.
"""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING, Any

import asyncpg
from saq import CronJob

from analytics.lake import LakeStore, compact_tenant, export_tenant
from db.urls import plain_dsn
from jobs.per_tenant import each_tenant
from jobs.tasks import all_tenants

if TYPE_CHECKING:
    from jobs.config import JobsConfig

__all__ = ["LAKE_FUNCTIONS", "compact_lake", "export_lake", "lake_context", "lake_cron_jobs", "lake_store"]

log = logging.getLogger(__name__)


def lake_store(config: JobsConfig) -> LakeStore:
    return LakeStore.from_url(config.lake_url, endpoint_url=config.s3_endpoint_url)


def lake_context(ctx: dict[str, Any], config: JobsConfig) -> None:
    """What the lake tasks need in the worker's context (called from the worker's startup)."""
    ctx["lake"] = lake_store(config)
    ctx["dsn"] = plain_dsn(config.database_url)


def _cron_every(seconds: int) -> str:
    minutes = max(1, round(seconds / 60))
    if minutes >= 60:
        return f"0 */{max(1, min(23, minutes // 60))} * * *"
    return f"*/{minutes} * * * *"


async def export_lake(ctx: dict[str, Any], *, wait: bool = False) -> dict[str, int]:
    """Export each tenant's newly committed events; returns counts (tenants, rows, files, failed, skipped)."""

    async def export(conn: asyncpg.Connection, tenant_id: uuid.UUID) -> dict[str, int]:
        result = await export_tenant(conn, ctx["lake"], ctx["keyrings"], tenant_id, wait=wait)
        return {"rows": result.rows, "files": result.files, "skipped": int(result.skipped)}

    totals = {"tenants": 0, "rows": 0, "files": 0, "failed": 0, "skipped": 0}
    failure = "lake export of tenant %s failed; it resumes from its watermark next run"
    return await each_tenant(ctx["dsn"], await all_tenants(ctx["db"]), export, totals, log=log, failure=failure)


async def compact_lake(ctx: dict[str, Any]) -> dict[str, int]:
    """Compact each tenant's past days with several files into one and delete files no longer listed."""

    async def compact(conn: asyncpg.Connection, tenant_id: uuid.UUID) -> dict[str, int]:
        result = await compact_tenant(conn, ctx["lake"], ctx["keyrings"], tenant_id, wait=True)
        return {"days": result.days, "deleted": result.files_deleted}

    totals = {"tenants": 0, "days": 0, "deleted": 0, "failed": 0}
    failure = "lake compaction of tenant %s failed; the next run retries it"
    return await each_tenant(ctx["dsn"], await all_tenants(ctx["db"]), compact, totals, log=log, failure=failure)


def lake_cron_jobs(config: JobsConfig) -> list[CronJob[Any]]:
    from jobs.retention import apply_retention

    return [
        CronJob(export_lake, cron=_cron_every(config.lake_export_interval_seconds), timeout=3600),
        CronJob(compact_lake, cron="23 2 * * *", timeout=6 * 3600),
        CronJob(apply_retention, cron="47 2 * * *", timeout=6 * 3600),
    ]


def _functions() -> list[Any]:
    from jobs.retention import apply_retention

    return [export_lake, compact_lake, apply_retention]


LAKE_FUNCTIONS = _functions()
