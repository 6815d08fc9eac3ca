"""``/api/v1/export-schedules``: scheduled exports (Admin writes; Admin and Auditor read), their manual run and
their runs.

Creating, changing, deleting and running a schedule are administrative actions, recorded in the tenant's log
(``auditlog.export_schedule``, never with a credential). Another tenant's schedule is a ``404`` (tenant-bound
transaction, row-level security, and the tenant named in every statement).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import asyncpg
import msgspec
from litestar import Controller, Request, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, JSONBody, QueryParameter

from app.audit_trail.service_events import record_caller_event
from app.auth.principal import Role
from app.export_schedules import store
from app.export_schedules.scheduler import enqueue_manual_run
from app.export_schedules.schemas import RunOut, RunQueued, ScheduleCreate, ScheduleCreated, ScheduleOut, SchedulePatch
from app.export_schedules.windows import last_closed_window
from app.guards import ADMIN, allow, principal_of
from app.runtime import Runtime
from app.web.errors import ApiError

__all__ = ["RESOURCE_TYPE", "ExportScheduleController"]

RESOURCE_TYPE = "auditlog.export_schedule"
SCHEDULE_READERS = allow(Role.ADMIN, Role.AUDITOR)
_404 = {404: ResponseSpec(None, description="No such export schedule in the caller's tenant")}
_422 = {
    422: ResponseSpec(
        None,
        description="A field is invalid (`errors` names each one): an unknown or bad filter, a bad S3 URL, or a "
        "destination URL that is not http(s) or resolves to a loopback, link-local, private or metadata address "
        "(allowed only with `AUDIT_ALLOW_PRIVATE_URLS=true`)",
    )
}
_DESCRIPTION = (
    "Every hour or UTC day (`every`), the worker delivers the events of the caller's tenant received in the window "
    "(`received_at` in `[start, end)`) that match `filters` (the `GET /logs` query fields; service events only "
    "with `include_system=true` or a `resource_type` naming one), in `format`, once the window is closed: at "
    "least `AUDIT_EXPORT_SCHEDULE_CLOSE_LAG_SECONDS` after its end and once every transaction that could still "
    "hold one of its events has ended. Windows are delivered in order, exactly once each; windows missed while "
    "no worker ran are delivered when one is back.\n\n"
    "`s3` destinations get one object per window, `<prefix>/<window start>.<format>` (e.g. "
    "`audit/2026-01-02T03:00:00Z.ndjson`), written with the schedule's own credentials (`endpoint_url` for an "
    "S3-compatible service; path-style addressing there); delivering a window again replaces the object. "
    "`http` destinations get one POST per window: the body gzip-compressed (`Content-Encoding: gzip`, "
    "`Content-Type` of the format), `X-Auditlog-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "
    '"<t>.<raw body>")>` over the compressed bytes as sent, `Idempotency-Key` and `X-Auditlog-Delivery` (the same '
    "value each time that window is sent), `X-Auditlog-Window-Start`/`-End`, `X-Auditlog-Event-Count`; any 2xx "
    "within 120 s is success, redirects are not followed. A failed window is retried after "
    "`AUDIT_EXPORT_SCHEDULE_RETRY_DELAY_SECONDS`, doubling up to an hour, and blocks the later windows until it "
    "is delivered. Each delivery is recorded as an `EXPORT` read of the tenant (`user_id` "
    "`export_schedule:<id>`). Credentials (`access_key_id`, `secret_access_key`, HTTP `headers`, user info and "
    "query of an HTTP URL) are stored encrypted and never returned."
)


async def _raw(session: Any) -> asyncpg.Connection:
    conn = await session.connection()
    return (await conn.get_raw_connection()).driver_connection  # type: ignore[no-any-return]


async def _record(
    runtime: Runtime,
    request: Request[Any, Any, Any],
    action: str,
    schedule: ScheduleOut,
    details: dict[str, Any] | None = None,
) -> None:
    await record_caller_event(
        runtime,
        request,
        action=action,
        resource_type=RESOURCE_TYPE,
        resource_id=str(schedule.id),
        details={"name": schedule.name, **(details or {})},
    )


def _summary(schedule: ScheduleOut) -> dict[str, Any]:
    return {
        "every": schedule.every,
        "format": schedule.format,
        "filters": msgspec.to_builtins(schedule.filters),
        "destination": msgspec.to_builtins(schedule.destination),
        "enabled": schedule.enabled,
    }


async def _queue(runtime: Runtime) -> Any:
    from app.exports.jobs_controller import _queue as export_queue  # the API's one way to the job queue

    return await export_queue(runtime)


class ExportScheduleController(Controller):
    path = "/api/v1/export-schedules"
    tags = ["export-schedules"]

    @post(
        "/",
        guards=[ADMIN],
        status_code=201,
        responses=_422 | {409: ResponseSpec(None, description="The tenant has 50 export schedules already")},
        summary="Create an export schedule (Admin); the signing secret is in this response only",
        description=_DESCRIPTION,
    )
    async def create(
        self, request: Request[Any, Any, Any], data: JSONBody[ScheduleCreate], runtime: NamedDependency[Runtime]
    ) -> ScheduleCreated:
        principal = principal_of(request)
        async with runtime.db.tenant(principal.tenant_id) as session:
            created = await store.create_schedule(
                await _raw(session),
                runtime.keyrings,
                principal.tenant_id,
                data,
                actor=principal.actor,
                allow_private=runtime.settings.allow_private_urls,
            )
        await _record(runtime, request, "EXPORT_SCHEDULE_CREATED", created, _summary(created))
        return created

    @get("/", guards=[SCHEDULE_READERS], summary="List the tenant's export schedules (Admin, Auditor)")
    async def index(self, request: Request[Any, Any, Any], runtime: NamedDependency[Runtime]) -> list[ScheduleOut]:
        tenant_id = principal_of(request).tenant_id
        async with runtime.db.tenant(tenant_id) as session:
            return await store.list_schedules(await _raw(session), tenant_id)

    @get("/{schedule_id:uuid}", guards=[SCHEDULE_READERS], responses=_404, summary="One export schedule")
    async def show(
        self, request: Request[Any, Any, Any], schedule_id: FromPath[uuid.UUID], runtime: NamedDependency[Runtime]
    ) -> ScheduleOut:
        tenant_id = principal_of(request).tenant_id
        async with runtime.db.tenant(tenant_id) as session:
            return await store.get_schedule(await _raw(session), tenant_id, schedule_id)

    @patch(
        "/{schedule_id:uuid}",
        guards=[ADMIN],
        responses=_404 | _422,
        summary="Change an export schedule (Admin); fields left out keep their value",
        description="A new `destination` replaces the old one whole (credentials included) and is tried at once. "
        "The schedule's position stays: a new `every` or `format` applies from its next window (a daily schedule "
        "whose next window does not start at midnight delivers hourly windows up to the next midnight).",
    )
    async def change(
        self,
        request: Request[Any, Any, Any],
        schedule_id: FromPath[uuid.UUID],
        data: JSONBody[SchedulePatch],
        runtime: NamedDependency[Runtime],
    ) -> ScheduleOut:
        tenant_id = principal_of(request).tenant_id
        async with runtime.db.tenant(tenant_id) as session:
            out, changed = await store.update_schedule(
                await _raw(session), runtime.keyrings, tenant_id, schedule_id, data,
                allow_private=runtime.settings.allow_private_urls,
            )  # fmt: skip
        await _record(runtime, request, "EXPORT_SCHEDULE_UPDATED", out, {"changed": changed, **_summary(out)})
        return out

    @delete("/{schedule_id:uuid}", guards=[ADMIN], status_code=204, responses=_404, summary="Delete an export schedule")
    async def remove(
        self, request: Request[Any, Any, Any], schedule_id: FromPath[uuid.UUID], runtime: NamedDependency[Runtime]
    ) -> None:
        tenant_id = principal_of(request).tenant_id
        async with runtime.db.tenant(tenant_id) as session:
            out = await store.delete_schedule(await _raw(session), tenant_id, schedule_id)
        await _record(runtime, request, "EXPORT_SCHEDULE_DELETED", out)

    @post(
        "/{schedule_id:uuid}/run",
        guards=[ADMIN],
        status_code=202,
        responses=_404 | {409: ResponseSpec(None, description="The schedule is disabled")},
        summary="Deliver the last closed window now (Admin)",
        description="Queues the delivery of the schedule's last closed window (the latest window that ended at "
        "least the close lag ago). If the schedule has not delivered it yet, the windows before it are delivered "
        "first, in order (a pending retry is not waited for); if it was delivered already, it is delivered again "
        "to the same object, or with the same `Idempotency-Key`, never as a second copy. Asking again while it "
        "is queued queues nothing more. The outcome shows in `/runs`.",
    )
    async def run(
        self, request: Request[Any, Any, Any], schedule_id: FromPath[uuid.UUID], runtime: NamedDependency[Runtime]
    ) -> RunQueued:
        tenant_id = principal_of(request).tenant_id
        async with runtime.db.tenant(tenant_id) as session:
            schedule = await store.get_schedule(await _raw(session), tenant_id, schedule_id)
        if not schedule.enabled:
            raise ApiError(409, "the export schedule is disabled; enable it first")
        lag = timedelta(seconds=runtime.settings.export_schedule_close_lag_seconds)
        start, end = last_closed_window(datetime.now(UTC), schedule.every, lag)
        await enqueue_manual_run(await _queue(runtime), tenant_id, schedule_id, start)
        await _record(runtime, request, "EXPORT_SCHEDULE_RUN_REQUESTED", schedule,
                      {"window_start": start.isoformat(), "window_end": end.isoformat()})  # fmt: skip
        return RunQueued(schedule_id=schedule_id, window_start=start, window_end=end)

    @get(
        "/{schedule_id:uuid}/runs",
        guards=[SCHEDULE_READERS],
        responses=_404,
        summary="Every run of an export schedule, newest first (Admin, Auditor)",
        description="One entry per delivery attempt of a window: its window, `trigger` (`schedule` or `manual`), "
        "`attempt` (1 for the window's first), `status` (`running`, `delivered`, `failed`), `rows`, `bytes`, "
        "`http_status` and `error` (a failure's reason, never a credential), and where it went.",
    )
    async def runs(
        self,
        request: Request[Any, Any, Any],
        schedule_id: FromPath[uuid.UUID],
        runtime: NamedDependency[Runtime],
        limit: Annotated[
            int, QueryParameter(ge=1, le=1000, description="How many runs, newest first (default 100).")
        ] = 100,
    ) -> list[RunOut]:
        tenant_id = principal_of(request).tenant_id
        async with runtime.db.tenant(tenant_id) as session:
            return await store.list_runs(await _raw(session), tenant_id, schedule_id, limit=limit)
