"""``GET /api/v1/logs/stats``: an audited read (``QUERY``) that counts the tenant's events in a window."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
from litestar import Request, get
from litestar.openapi.datastructures import ResponseSpec

from analytics.engine import QueryTimeout
from app.dependencies import runtime_of
from app.exports.access import engine_of, lake_store_of
from app.exports.filters import one_param, operation_with, raise_if_errors, read_filters
from app.guards import READERS, principal_of
from app.read_audit import record_request_read
from app.stats.schemas import StatsOut
from app.stats.service import DEFAULT_WINDOW, MAX_BUCKETS, TOP_USERS, bucket_count, count_events
from app.web.errors import ApiError

__all__ = ["log_stats"]

_INTERVAL_PARAM = {
    "name": "interval",
    "in": "query",
    "required": False,
    "description": "Bucket size of `series` (UTC hours or days; default `day`).",
    "schema": {"type": "string", "enum": ["hour", "day"], "default": "day"},
}
_BREAKDOWN_PARAM = {
    "name": "breakdown",
    "in": "query",
    "required": False,
    "description": "Extension: `true` adds `by_user` (the users with the most events, at most "
    f"{TOP_USERS}) and `series_by_severity` (each severity's count per bucket of `series`), from the same scan.",
    "schema": {"type": "string", "enum": ["true", "false"], "default": "false"},
}
_PROBLEMS = {
    401: ResponseSpec(None, description="No or bad credentials"),
    403: ResponseSpec(None, description="Role may not read events"),
    422: ResponseSpec(
        None,
        description=f"Invalid filters or `interval`, or a window of more than {MAX_BUCKETS} buckets; "
        "`errors` names each one",
    ),
    503: ResponseSpec(None, description="The count ran past its time limit (`Retry-After` is set)"),
}


@get(
    "/api/v1/logs/stats",
    guards=[READERS],
    tags=["logs"],
    name="log_stats",
    operation_class=operation_with([_INTERVAL_PARAM, _BREAKDOWN_PARAM]),
    responses=_PROBLEMS,
    summary="Counts of events in a window",
    description=(
        "Counts of the caller's events that match the `GET /logs` filters in a time window, from the Parquet "
        "lake and the events not yet in it, each counted once: `total`, `by_action`, `by_severity`, "
        "`by_resource_type` (largest first) and `series`, one point per UTC hour or day of the window, empty "
        "ones included. The window defaults to the last 30 days: `end_time` defaults to now and `start_time` to "
        "30 days before `end_time`; both are inclusive and echoed in the body with `interval`. Service events "
        "are left out unless `include_system=true` or a `resource_type` names one. Recorded as a `QUERY` read."
    ),
)
async def log_stats(request: Request[Any, Any, Any]) -> StatsOut:
    runtime = runtime_of(request)
    principal = principal_of(request)
    params = request.query_params.dict()
    errors: list[dict[str, Any]] = []
    filters = read_filters(params, errors)
    interval = one_param(params, "interval", errors) or "day"
    if interval not in ("hour", "day"):
        errors.append({"field": "interval", "message": "must be hour or day"})
    breakdown = one_param(params, "breakdown", errors) or "false"
    if breakdown not in ("true", "false"):
        errors.append({"field": "breakdown", "message": "must be true or false"})
    raise_if_errors(errors)
    end = filters.end_time or datetime.now(UTC)
    start = filters.start_time or end - DEFAULT_WINDOW
    if start > end:
        errors.append({"field": "start_time", "message": "must not be after end_time (default: now)"})
    elif bucket_count(start, end, interval) > MAX_BUCKETS:
        errors.append({"field": "interval", "message": f"the window holds more than {MAX_BUCKETS} buckets"})
    raise_if_errors(errors)
    filters = msgspec.structs.replace(filters, start_time=start, end_time=end)
    try:
        async with runtime.db.read(principal.tenant_id) as pg:
            stats = await count_events(
                engine_of(runtime), pg, principal.tenant_id, runtime.keyrings, lake_store_of(runtime),
                filters=filters, interval=interval, breakdown=breakdown == "true",
            )  # fmt: skip
    except QueryTimeout:
        raise ApiError(
            503, "the count ran past its time limit; narrow the window", headers={"Retry-After": "5"}
        ) from None
    details = {"filters": filters.describe(), "interval": interval, "count": stats.total}
    record_request_read(request, runtime, principal, "QUERY", "/api/v1/logs/stats", details)
    return stats
