"""Routes: ``PUT /api/v1/tenants/{tenant_id}/retention`` and ``DELETE /api/v1/logs/cleanup``.

Cleanup runs synchronously and answers ``200``: it first archives the tenant's new events to the lake,
then removes only events the lake is verified to hold (``jobs.retention``). Both are recorded as
administrative events (``RETENTION_CHANGED``, ``EVENTS_PURGED``, resource type ``auditlog.tenant``).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from litestar import Controller, Request, delete, put
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, JSONBody, Parameter

from app.auth.principal import Role
from app.guards import ADMIN, OPERATOR_OR_ADMIN, principal_of
from app.retention.schemas import CleanupOut, RetentionIn, RetentionOut
from app.retention.service import cleanup, record_purge, set_retention
from app.runtime import Runtime
from app.tenants.service import find_tenant
from app.web.errors import ApiError, NotFound

__all__ = ["RetentionController", "cleanup_logs"]

_CLEANUP_PROBLEMS = {
    400: ResponseSpec(None, description="`before` is missing"),
    401: ResponseSpec(None, description="No or bad credentials"),
    403: ResponseSpec(None, description="Only an Admin may clean up"),
    422: ResponseSpec(None, description="`before` is not an RFC 3339 time with a zone, or is in the future"),
    503: ResponseSpec(
        None,
        description="The cleanup's administrative event could not be stored (the ingest writer is unavailable); retry",
    ),
}
_RETENTION_PROBLEMS = {
    401: ResponseSpec(None, description="No or bad credentials"),
    403: ResponseSpec(None, description="Only the operator or an Admin of the tenant"),
    404: ResponseSpec(None, description="No such tenant, or another tenant's"),
    422: ResponseSpec(None, description="`days` missing or outside 1-3650; `errors` names it"),
}


def _parse_before(value: str) -> datetime:
    def bad(message: str) -> ApiError:
        return ApiError(422, f"validation failed: before: {message}", errors=[{"field": "before", "message": message}])

    try:
        parsed = datetime.fromisoformat(value.strip().replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        raise bad("not an RFC 3339 time") from None
    if parsed.tzinfo is None:
        raise bad("the time needs a zone (e.g. Z or +07:00)")
    if parsed > datetime.now(UTC):
        raise bad("must not be in the future")
    return parsed.astimezone(UTC)


@delete(
    "/api/v1/logs/cleanup",
    guards=[ADMIN],
    status_code=200,
    tags=["logs"],
    summary="Remove events older than a time from PostgreSQL, archived to the lake first (Admin)",
    description=(
        "Archives the tenant's new events to the Parquet lake, verifies that every event to remove is in the "
        "lake (the lake watermark covers its seq and a listed lake file of its date covers it), then drops "
        "whole month partitions and deletes rows at the edges. Events older than `before` that are not in the "
        "lake yet (committed during the cleanup with an old timestamp) are kept and counted in `kept_count`. "
        "Export, stats and the agent still read the removed events from the lake; `GET /logs` no longer "
        "shows them. Recorded as an `EVENTS_PURGED` event (`auditlog.tenant`). `before` in the future, "
        "without a zone or unparseable → 422."
    ),
    responses=_CLEANUP_PROBLEMS,
)
async def cleanup_logs(
    request: Request[Any, Any, Any],
    runtime: NamedDependency[Runtime],
    before: Annotated[
        str, Parameter(description="RFC 3339 time with a zone, not in the future", schema_extra={"format": "date-time"})
    ],
) -> CleanupOut:
    principal = principal_of(request)
    cutoff = _parse_before(before)
    result = await cleanup(runtime, principal.tenant_id, cutoff)
    await record_purge(runtime, result, actor=principal.actor, trigger="cleanup", request=request)
    return CleanupOut(
        deleted_count=result.deleted,
        archived=True,
        kept_count=result.kept,
        dropped_partitions=result.dropped_partitions,
        exported_count=result.exported,
        before=cutoff,
        lake_watermark=result.watermark,
    )


class RetentionController(Controller):
    path = "/api/v1/tenants/{tenant_id:uuid}/retention"
    tags = ["tenants"]

    @put(
        "/",
        guards=[OPERATOR_OR_ADMIN],
        responses=_RETENTION_PROBLEMS,
        summary="Set how long the tenant's events stay in PostgreSQL (operator, or an Admin of that tenant)",
        description=(
            "`days` from 1 to 3650. A daily job (and `auditlog apply-retention`) archives the tenant's events "
            "older than that to the Parquet lake, then removes them from PostgreSQL; export, stats and the "
            "agent keep reading them from the lake. Recorded as a `RETENTION_CHANGED` event. Another "
            "tenant → 404."
        ),
    )
    async def put_retention(
        self,
        request: Request[Any, Any, Any],
        tenant_id: FromPath[uuid.UUID],
        data: JSONBody[RetentionIn],
        runtime: NamedDependency[Runtime],
    ) -> RetentionOut:
        principal = principal_of(request)
        if principal.role is not Role.OPERATOR and principal.tenant_id != tenant_id:
            raise NotFound("tenant")
        found = await find_tenant(runtime.db, str(tenant_id))
        if found is None or found[2]:
            raise NotFound("tenant")
        days = await set_retention(runtime, tenant_id, data.days, actor=principal.actor, request=request)
        return RetentionOut(tenant_id=tenant_id, retention_days=days)
