"""The PII vault of events: the only way back to an email or phone number masked at ingest.

Originals found by ``mask_event`` are encrypted with the tenant key (field ``"pii"``, bound to tenant and
event id) and stored in ``event_pii`` by the writer in the event's own transaction. The API role cannot
SELECT that table; ``auditlog_event_pii_get`` (SECURITY DEFINER, current tenant only) is the read path,
used by ``GET /api/v1/logs/{id}/pii``: Admin only, and every unmask is itself recorded (and committed)
as a ``VIEW`` event of resource type ``audit_log_pii`` before the originals are returned.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec
from litestar import Controller, Request, Response, get
from litestar.di import NamedDependency
from litestar.params import FromPath
from sqlalchemy import text

from app.auth.principal import Principal
from app.guards import ADMIN, principal_of
from app.logs.ingest import IngestWriter, WriterUnavailable
from app.logs.prepare import prepare_event
from app.logs.schemas import EventIn, PiiFindingOut, PiiOut
from app.runtime import Runtime
from app.web.errors import ApiError, NotFound
from db.crypto import DecryptionError, decrypt_json
from db.event_filters import READ_AUDIT_PII

__all__ = ["LogPiiController", "read_pii"]

_EXISTS = text("SELECT 1 FROM audit_logs WHERE id = :id LIMIT 1")
_GET = text("SELECT auditlog_event_pii_get(:id)")


async def read_pii(runtime: Runtime, tenant_id: uuid.UUID, event_id: uuid.UUID) -> list[PiiFindingOut] | None:
    """The decrypted findings of one event; ``None`` when the event is not the tenant's."""
    async with runtime.db.tenant(tenant_id) as session:
        if (await session.execute(_EXISTS, {"id": event_id})).first() is None:
            return None
        blob = (await session.execute(_GET, {"id": event_id})).scalar_one_or_none()
        if blob is None:
            return []
        keyring = await runtime.keyrings.get(session, tenant_id)
    try:
        found = decrypt_json(keyring, bytes(blob), event_id=event_id, field="pii")
    except DecryptionError:
        raise ApiError(500, "stored PII failed its integrity check") from None
    return msgspec.convert(found, list[PiiFindingOut])


async def _record_unmask(
    runtime: Runtime, request: Request[Any, Any, Any], principal: Principal, event_id: uuid.UUID, count: int
) -> None:
    client = request.client.host if request.client else None
    event = EventIn(
        action="VIEW",
        resource_type=READ_AUDIT_PII,
        resource_id=str(event_id),
        user_id=principal.actor,
        session_id=str(principal.session_id) if principal.session_id else None,
        request_id=request.scope.get("state", {}).get("request_id"),
        ip_address=client,
        user_agent=(request.headers.get("user-agent") or "")[:1024] or None,
        message=f"unmasked {count} PII value(s) of audit event {event_id}",
    )
    try:
        prepared = prepare_event(event, tenant_id=principal.tenant_id, actor=principal.actor, now=datetime.now(UTC))
    except Exception:  # an unusable client address: record the view without it
        event.ip_address = None
        prepared = prepare_event(event, tenant_id=principal.tenant_id, actor=principal.actor, now=datetime.now(UTC))
    writer = runtime.services.get("ingest")
    if not isinstance(writer, IngestWriter):
        raise ApiError(503, "ingest is not available", headers={"Retry-After": "1"})
    try:
        await writer.submit(principal.tenant_id, [prepared])
    except WriterUnavailable:
        raise ApiError(503, "the unmask could not be audited; retry", headers={"Retry-After": "1"}) from None


class LogPiiController(Controller):
    path = "/api/v1/logs"
    tags = ["logs"]

    @get(
        "/{event_id:uuid}/pii",
        guards=[ADMIN],
        summary="Unmask an event's PII (Admin; audited)",
        description=(
            "The original emails and phone numbers masked in an event, with where they were found. The "
            "request is recorded as a VIEW event of resource type audit_log_pii. Unknown event → 404."
        ),
    )
    async def unmask(
        self, request: Request[Any, Any, Any], runtime: NamedDependency[Runtime], event_id: FromPath[uuid.UUID]
    ) -> Response[PiiOut]:
        principal = principal_of(request)
        findings = await read_pii(runtime, principal.tenant_id, event_id)
        if findings is None:
            raise NotFound("event")
        await _record_unmask(runtime, request, principal, event_id, len(findings))
        body = msgspec.json.encode(PiiOut(event_id=event_id, findings=findings))
        response: Response[Any] = Response(
            content=body, media_type="application/json", headers={"Cache-Control": "no-store"}
        )
        return response
