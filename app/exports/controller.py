"""``GET /api/v1/logs/export``: the tenant's events (lake plus hot tail, through the engine) streamed as
csv, json, ndjson or parquet with flat memory, filtered like ``GET /logs``; an audited read (``EXPORT``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from litestar import Request, get
from litestar.openapi.datastructures import ResponseSpec
from litestar.response import Stream

from analytics.export_formats import FORMATS, MEDIA_TYPES
from app.dependencies import runtime_of
from app.exports.access import ExportProgress, engine_of, export_bytes, lake_store_of
from app.exports.filters import one_param, operation_with, raise_if_errors, read_filters
from app.guards import READERS, principal_of
from app.read_audit import get_recorder
from app.verifiable.export import PROOFS_PARAM
from app.verifiable.export_route import export_with_proofs, wants_proofs

__all__ = ["export_logs"]

_FORMAT_PARAM = {
    "name": "format",
    "in": "query",
    "required": True,
    "description": "csv (header row; JSON parts as JSON text), json (one array), ndjson (one event a line), "
    "parquet (zstd; times as UTC timestamps).",
    "schema": {"type": "string", "enum": list(FORMATS)},
}
_PROBLEMS = {
    401: ResponseSpec(None, description="No or bad credentials"),
    403: ResponseSpec(None, description="Role may not read events"),
    404: ResponseSpec(None, description="`proofs=true` and no checkpoint is signed yet"),
    422: ResponseSpec(
        None,
        description="Missing or unknown `format`, or invalid filters (or, with `proofs=true`, a format other "
        "than ndjson or any filter); `errors` names each one",
    ),
}


@get(
    "/api/v1/logs/export",
    guards=[READERS],
    tags=["logs"],
    name="export_logs",
    operation_class=operation_with([_FORMAT_PARAM, PROOFS_PARAM]),
    responses=_PROBLEMS,
    media_type="application/octet-stream",
    summary="Export events (streamed)",
    description=(
        "Every event of the caller's tenant that matches the `GET /logs` filters (service events only with "
        "`include_system=true` or a `resource_type` naming one), from the Parquet lake and from the events not "
        "yet in it, each exactly once, in commit order. Each event reads as `GET /logs/{id}` shows it. The body "
        "is streamed (memory stays flat at any size) with `Content-Disposition: attachment`. The export is "
        "recorded as an `EXPORT` read event with the filters, the format and the rows sent."
    ),
)
async def export_logs(request: Request[Any, Any, Any]) -> Stream:
    runtime = runtime_of(request)
    principal = principal_of(request)
    params = request.query_params.dict()
    errors: list[dict[str, Any]] = []
    filters = read_filters(params, errors)
    fmt = one_param(params, "format", errors)
    if fmt is None:
        errors.append({"field": "format", "message": f"is required: one of {', '.join(FORMATS)}"})
    elif fmt not in FORMATS:
        errors.append({"field": "format", "message": f"must be one of {', '.join(FORMATS)}"})
    proofs = wants_proofs(params, errors)
    raise_if_errors(errors)
    assert fmt is not None
    if proofs:  # the whole log with an inclusion proof per event (API.md "The verifiable log")
        return await export_with_proofs(request, params, fmt)
    tenant_id = principal.tenant_id
    progress = ExportProgress()
    client = request.client

    async def body() -> Any:
        try:
            async with runtime.db.read(tenant_id) as pg:
                async for chunk in export_bytes(
                    pg, tenant_id, runtime.keyrings, engine_of(runtime), lake_store_of(runtime),
                    filters=filters, fmt=fmt, progress=progress,
                ):  # fmt: skip
                    yield chunk
        finally:
            details = {"filters": filters.describe(), "format": fmt, "count": progress.rows,
                       "bytes": progress.bytes, "complete": progress.complete}  # fmt: skip
            get_recorder(runtime).record_read(
                principal,
                "EXPORT",
                "/api/v1/logs/export",
                details,
                request_id=request.scope.get("state", {}).get("request_id"),
                ip_address=client.host if client else None,
                user_agent=request.headers.get("user-agent"),
            )

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    filename = f"auditlog-export-{stamp}.{fmt}"
    return Stream(
        body(),
        media_type=MEDIA_TYPES[fmt],
        headers={"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"},
    )
