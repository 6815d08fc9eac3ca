"""The SAQ task behind ``POST /api/v1/exports``: run one export job of one tenant to a file in the lake store.

It is handed to the job worker as a plugin (``ExportJobsPlugin``), as every task that needs the API's code is,
so ``jobs`` imports nothing of ``app``.

The job row (``export_jobs``, migration 0007) goes ``queued`` → ``running`` → ``done`` (with rows and bytes)
or ``failed`` (with a short reason). The file is built in the store's staging area and committed under
``_exports/tenant_id=<tenant>/<job id>.<format>`` (a folder lake readers skip), so a half-written file is
never served. It runs through the same engine path as ``GET /api/v1/logs/export``.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
from sqlalchemy import text

from analytics.engine import AnalyticsEngine
from app.exports.access import ExportProgress, export_bytes, lake_store
from app.logs.query import parse_filters
from db.tenancy import TenantDB

__all__ = ["ExportJobsPlugin", "export_location", "run_export_job"]

log = logging.getLogger(__name__)

_SET = text(
    "UPDATE export_jobs SET status = :status, rows = :rows, bytes = :bytes, location = :location, error = :error,"
    " started_at = coalesce(started_at, now()), finished_at = CASE WHEN :status IN ('done', 'failed') THEN now() END"
    " WHERE tenant_id = :t AND id = :id"
)
_GET = text("SELECT format, filters, status FROM export_jobs WHERE tenant_id = :t AND id = :id")


def export_location(tenant_id: uuid.UUID, job_id: uuid.UUID, fmt: str) -> str:
    return f"_exports/tenant_id={tenant_id}/{job_id}.{fmt}"


async def _set(db: TenantDB, tenant_id: uuid.UUID, job_id: uuid.UUID, status: str, **values: Any) -> None:
    params = {"rows": None, "bytes": None, "location": None, "error": None, **values}
    async with db.tenant(tenant_id) as session:
        await session.execute(_SET, {"t": tenant_id, "id": job_id, "status": status, **params})


async def run_export_job(
    ctx: dict[str, Any], *, tenant_id: str, job_id: str, lake_url: str, endpoint_url: str | None = None
) -> dict[str, int]:
    """Run export job ``job_id`` of ``tenant_id``; returns its rows and bytes."""
    db: TenantDB = ctx["db"]
    tid, jid = uuid.UUID(tenant_id), uuid.UUID(job_id)
    async with db.tenant(tid) as session:
        row = (await session.execute(_GET, {"t": tid, "id": jid})).one_or_none()
    if row is None or row.status in ("done", "failed"):
        return {"rows": 0, "bytes": 0}
    await _set(db, tid, jid, "running")
    store = lake_store(lake_url, endpoint_url)
    progress = ExportProgress()
    try:
        errors: list[dict[str, Any]] = []
        filters = parse_filters(msgspec.json.decode(msgspec.json.encode(row.filters)), errors)
        if errors:
            raise ValueError(f"invalid filters: {errors}")
        staged = store.staging_path()
        location = export_location(tid, jid, row.format)
        async with db.engine.connect() as sa_conn:
            pg = (await sa_conn.get_raw_connection()).driver_connection
            with staged.open("wb") as out:
                async for chunk in export_bytes(
                    pg, tid, ctx["keyrings"], ctx.get("analytics") or AnalyticsEngine(), store,
                    filters=filters, fmt=row.format, progress=progress,
                ):  # fmt: skip
                    out.write(chunk)
        size = await store.commit(staged, location)
    except Exception as exc:
        log.exception("export job %s of tenant %s failed", jid, tid)
        with contextlib.suppress(Exception):
            await _set(db, tid, jid, "failed", rows=progress.rows, error=type(exc).__name__)
        raise
    await _set(db, tid, jid, "done", rows=progress.rows, bytes=size, location=location)
    return {"rows": progress.rows, "bytes": size}


class ExportJobsPlugin:
    """The export-job task for the job worker (a ``jobs.worker.WorkerPlugin`` with nothing to start)."""

    functions: Sequence[Callable[..., Any]] = (run_export_job,)

    async def startup(self, ctx: dict[str, Any]) -> None:
        return None

    async def shutdown(self, ctx: dict[str, Any]) -> None:
        return None
