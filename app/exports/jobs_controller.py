"""Export jobs: ``POST /api/v1/exports`` queues one (run by the SAQ task ``app.exports.job.run_export_job``),
``GET /api/v1/exports/{id}`` tells its status, ``GET /api/v1/exports/{id}/download`` serves the file.
Another tenant's job is a ``404`` (tenant-bound session, and row-level security on ``export_jobs``)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from litestar import Controller, Request, get, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, JSONBody
from litestar.response import Redirect, Stream
from sqlalchemy import text

from analytics.export_formats import MEDIA_TYPES
from app.dependencies import runtime_of
from app.exports.access import lake_store_of
from app.exports.schemas import ExportCreate, ExportCreated, ExportJobOut
from app.guards import READERS, principal_of
from app.logs.query import parse_filters
from app.runtime import Runtime
from app.web.errors import ApiError, NotFound

__all__ = ["ExportJobController"]

_INSERT = text(
    "INSERT INTO export_jobs (tenant_id, id, format, filters, created_by)"
    " VALUES (:t, :id, :format, CAST(:filters AS jsonb), :by)"
)
_GET = text("SELECT id, status, format, rows, bytes, location FROM export_jobs WHERE tenant_id = :t AND id = :id")
_NOT_FOUND = {404: ResponseSpec(None, description="No such export job in the caller's tenant")}


def _as_params(filters: dict[str, Any]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, value in filters.items():
        items = value if isinstance(value, list) else [value]
        out[key] = ["true" if v is True else "false" if v is False else str(v) for v in items]
    return out


async def _queue(runtime: Runtime) -> Any:
    worker = runtime.services.get("worker")
    if worker is not None:
        return worker.worker.queue
    queue = runtime.services.get("export_queue")
    if queue is None:
        from jobs.queue import make_queue

        queue = make_queue(runtime.settings.jobs_config())
        await queue.connect()
        runtime.services["export_queue"] = queue
    return queue


async def _job(runtime: Runtime, tenant_id: uuid.UUID, job_id: uuid.UUID) -> Any:
    async with runtime.db.tenant(tenant_id) as session:
        row = (await session.execute(_GET, {"t": tenant_id, "id": job_id})).one_or_none()
    if row is None:
        raise NotFound("export job")
    return row


class ExportJobController(Controller):
    path = "/api/v1/exports"
    tags = ["exports"]

    @post(
        ["/"],
        guards=[READERS],
        status_code=202,
        summary="Queue an export job",
        description="Exports the tenant's events matching `filters` (the `GET /logs` query fields) in `format` "
        "to a file in the lake store, in the background. Poll `GET /exports/{id}`.",
        responses={422: ResponseSpec(None, description="Bad format or filters; `errors` names each one")},
    )
    async def create(self, request: Request[Any, Any, Any], data: JSONBody[ExportCreate]) -> ExportCreated:
        runtime = runtime_of(request)
        principal = principal_of(request)
        errors: list[dict[str, Any]] = []
        filters = parse_filters(_as_params(data.filters), errors)
        if errors:
            for e in errors:
                e["field"] = f"filters.{e['field']}"
            raise ApiError(422, "invalid filters", errors=errors)
        job_id = uuid.uuid4()
        async with runtime.db.tenant(principal.tenant_id) as session:
            await session.execute(_INSERT, {"t": principal.tenant_id, "id": job_id, "format": data.format,
                                            "filters": msgspec.json.encode(filters.describe()).decode(),
                                            "by": principal.actor})  # fmt: skip
        queue = await _queue(runtime)
        await queue.enqueue(
            "run_export_job",
            key=f"export-{job_id}",
            timeout=6 * 3600,
            tenant_id=str(principal.tenant_id),
            job_id=str(job_id),
            lake_url=runtime.settings.lake_location,
            endpoint_url=runtime.settings.s3_endpoint_url,
        )
        return ExportCreated(id=job_id, status="queued")

    @get(["/{job_id:uuid}"], guards=[READERS], summary="An export job's status", responses=_NOT_FOUND)
    async def status(self, request: Request[Any, Any, Any], job_id: FromPath[uuid.UUID]) -> ExportJobOut:
        runtime = runtime_of(request)
        row = await _job(runtime, principal_of(request).tenant_id, job_id)
        url = None
        if row.status == "done" and row.location:
            store = lake_store_of(runtime)
            url = await _presigned(store, row.location) if store.is_s3 else f"/api/v1/exports/{job_id}/download"
        return ExportJobOut(id=row.id, status=row.status, format=row.format, rows=row.rows, bytes=row.bytes,
                            download_url=url)  # fmt: skip

    @get(
        ["/{job_id:uuid}/download"],
        guards=[READERS],
        summary="Download a finished export",
        description="The file (local lake), or a redirect to a presigned URL (S3 lake).",
        media_type="application/octet-stream",
        responses={**_NOT_FOUND, 409: ResponseSpec(None, description="The job is not done")},
    )
    async def download(self, request: Request[Any, Any, Any], job_id: FromPath[uuid.UUID]) -> Any:
        runtime = runtime_of(request)
        row = await _job(runtime, principal_of(request).tenant_id, job_id)
        if row.status != "done" or not row.location:
            raise ApiError(409, f"the export job is {row.status}")
        store = lake_store_of(runtime)
        if store.is_s3:
            return Redirect(await _presigned(store, row.location), status_code=302)

        async def chunks() -> AsyncIterator[bytes]:
            import asyncio

            source = await asyncio.to_thread(store.open_input, row.location)
            try:
                while chunk := await asyncio.to_thread(source.read, 1 << 20):
                    yield bytes(chunk)
            finally:
                source.close()

        name = f"auditlog-export-{job_id}.{row.format}"
        return Stream(chunks(), media_type=MEDIA_TYPES[row.format],
                      headers={"Content-Disposition": f'attachment; filename="{name}"'})  # fmt: skip


async def _presigned(store: Any, location: str) -> str:
    import aioboto3

    async with aioboto3.Session().client("s3", endpoint_url=store.endpoint_url) as s3:
        url: str = await s3.generate_presigned_url(
            "get_object", Params={"Bucket": store.bucket, "Key": store.prefix + location}, ExpiresIn=900
        )
    return url
