"""``/api/v1/alerts``: alert rules (Admin writes; Admin and Auditor read) and each rule's delivery attempts.

Changing a rule is an administrative action, recorded in the tenant's log (``auditlog.alert``).
"""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Controller, Request, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, JSONBody
from sqlalchemy.ext.asyncio import AsyncSession

from app.alerts.rules import create_rule, delete_rule, get_rule, list_deliveries, list_rules, update_rule
from app.alerts.schemas import AlertCreate, AlertCreated, AlertDeliveryOut, AlertOut, AlertPatch
from app.audit_trail.service_events import record_caller_event
from app.auth.principal import Role
from app.guards import ADMIN, allow, principal_of
from app.runtime import Runtime

__all__ = ["AlertController"]

RESOURCE_TYPE = "auditlog.alert"
ALERT_READERS = allow(Role.ADMIN, Role.AUDITOR)
_404 = {404: ResponseSpec(None, description="No such alert in the caller's tenant")}
_422 = {
    422: ResponseSpec(
        None,
        description="A field is invalid, or `webhook_url` is not http(s) or resolves to a loopback, link-local, "
        "private or metadata address (allowed only with `AUDIT_ALLOW_PRIVATE_URLS=true`)",
    )
}


async def _record(
    runtime: Runtime, request: Request[Any, Any, Any], action: str, rule_id: uuid.UUID, details: dict[str, Any]
) -> None:
    await record_caller_event(
        runtime, request, action=action, resource_type=RESOURCE_TYPE, resource_id=str(rule_id), details=details
    )


class AlertController(Controller):
    path = "/api/v1/alerts"
    tags = ["alerts"]

    @post(
        "/",
        guards=[ADMIN],
        status_code=201,
        responses=_422,
        summary="Create an alert rule (Admin); the webhook secret is in this response only",
        description=(
            "When at least `threshold` events matching `match` (the `GET /logs` filters: `severity` list, "
            "`action`, `resource_type`, `user_id`, `q`) are committed within `window_seconds`, the worker POSTs "
            '`{"alert_id", "name", "count", "window_start", "window_end", "events"}` (at most 100 events, as '
            "`GET /logs/{id}` shows them) to `webhook_url` with `X-Auditlog-Signature: t=<unix "
            'seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>` and `X-Auditlog-Delivery` (the firing '
            "id, the same on every retry), then stays quiet for `cooldown_seconds`. A failed delivery (no 2xx "
            "within 10 s) is retried with exponential backoff; redirects are not followed."
        ),
    )
    async def create(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[AlertCreate],
        runtime: NamedDependency[Runtime],
    ) -> AlertCreated:
        principal = principal_of(request)
        async with runtime.db.tenant(principal.tenant_id) as session:
            created = await create_rule(
                session,
                runtime.keyrings,
                data,
                actor=principal.actor,
                allow_private=runtime.settings.allow_private_urls,
            )
        await _record(runtime, request, "ALERT_CREATED", created.id, {"name": created.name, "match": created.match})
        return created

    @get("/", guards=[ALERT_READERS], summary="List the tenant's alert rules (Admin, Auditor)")
    async def index(self, session: NamedDependency[AsyncSession]) -> list[AlertOut]:
        return await list_rules(session)

    @get("/{alert_id:uuid}", guards=[ALERT_READERS], responses=_404, summary="One alert rule (Admin, Auditor)")
    async def show(self, alert_id: FromPath[uuid.UUID], session: NamedDependency[AsyncSession]) -> AlertOut:
        return await get_rule(session, alert_id)

    @patch(
        "/{alert_id:uuid}",
        guards=[ADMIN],
        responses={**_404, **_422},
        summary="Change an alert rule (Admin); fields left out keep their value",
    )
    async def change(
        self,
        request: Request[Any, Any, Any],
        alert_id: FromPath[uuid.UUID],
        data: JSONBody[AlertPatch],
        runtime: NamedDependency[Runtime],
    ) -> AlertOut:
        async with runtime.db.tenant(principal_of(request).tenant_id) as session:
            out, changed = await update_rule(session, alert_id, data, allow_private=runtime.settings.allow_private_urls)
        await _record(runtime, request, "ALERT_UPDATED", alert_id, {"changed": changed})
        return out

    @delete("/{alert_id:uuid}", guards=[ADMIN], status_code=204, responses=_404, summary="Delete an alert rule")
    async def remove(
        self,
        request: Request[Any, Any, Any],
        alert_id: FromPath[uuid.UUID],
        runtime: NamedDependency[Runtime],
    ) -> None:
        async with runtime.db.tenant(principal_of(request).tenant_id) as session:
            out = await delete_rule(session, alert_id)
        await _record(runtime, request, "ALERT_DELETED", alert_id, {"name": out.name})

    @get(
        "/{alert_id:uuid}/deliveries",
        guards=[ALERT_READERS],
        responses=_404,
        summary="Every delivery attempt of an alert rule, newest first (Admin, Auditor)",
        description="One entry per HTTP attempt: `succeeded` (2xx) or `failed` with the status or error.",
    )
    async def deliveries(
        self, alert_id: FromPath[uuid.UUID], session: NamedDependency[AsyncSession]
    ) -> list[AlertDeliveryOut]:
        return await list_deliveries(session, alert_id)
