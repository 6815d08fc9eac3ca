"""Administrative actions recorded as events of the tenant they affect (API.md, "Reading is audited, and so
is administration").

Creating tenants, users and API keys, revoking keys, rotating data keys, logins (success and failure),
logouts, lock-outs and unlocks each become an event with a reserved ``auditlog.*`` resource type, written
through the ingest writer (the one write path: masking, encryption, ``seq``, ``NOTIFY``) and awaited, so
the action's response is sent only once its trace is durable. Clients cannot post events with these
resource types, and default reads leave them out (``SERVICE_RESOURCE_TYPES``).
"""

from __future__ import annotations

import ipaddress
import logging
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, Protocol

from app.guards import principal_of
from app.logs.ingest import WriterUnavailable
from app.logs.prepare import prepare_event
from app.logs.schemas import EventIn, Severity
from app.web.errors import ApiError
from db.event_filters import READ_AUDIT, READ_AUDIT_PII, is_service_resource_type

if TYPE_CHECKING:
    from litestar import Request

__all__ = [
    "API_KEY",
    "DATA_KEY",
    "READ_AUDIT",
    "SERVICE_ACTOR",
    "SERVICE_RESOURCE_TYPES",
    "SESSION",
    "TENANT",
    "USER",
    "is_service_resource_type",
    "record_caller_event",
    "record_service_event",
]

log = logging.getLogger(__name__)

TENANT: Final = "auditlog.tenant"
USER: Final = "auditlog.user"
API_KEY: Final = "auditlog.api_key"
SESSION: Final = "auditlog.session"
DATA_KEY: Final = "auditlog.data_key"
SERVICE_RESOURCE_TYPES: Final = frozenset({TENANT, USER, API_KEY, SESSION, DATA_KEY, READ_AUDIT, READ_AUDIT_PII})
SERVICE_ACTOR: Final = "auditlog-service"
"""The ``user_id`` of actions nobody asked for over the API (the scheduled data-key rotation, the CLI's)."""


class HasServices(Protocol):
    """What recording needs of its host: ``services["ingest"]``, the writer (an API ``Runtime``, or a job
    worker's stand-in holding its own writer)."""

    services: dict[str, Any]


def _client_address(request: Request[Any, Any, Any] | None) -> str | None:
    if request is None or request.client is None:
        return None
    try:
        return str(ipaddress.ip_address(request.client.host))
    except ValueError:
        return None


async def record_service_event(
    runtime: HasServices,
    *,
    tenant_id: uuid.UUID,
    actor: str,
    action: str,
    resource_type: str,
    resource_id: str | None = None,
    details: dict[str, Any] | None = None,
    message: str | None = None,
    severity: Severity = "INFO",
    request: Request[Any, Any, Any] | None = None,
    session_id: uuid.UUID | None = None,
) -> None:
    """Store one administrative event of ``tenant_id`` and return once it is committed.

    ``actor`` is the ``user_id`` recorded (a user or API key id, or the operator's id for the operator's
    actions). ``details`` becomes the event's metadata (encrypted at rest like any metadata); never put a
    secret in it. If the event cannot be stored, raises ``WriterUnavailable``, or, for a ``request``, a
    503 problem with ``Retry-After``: an administrative action must not succeed without its trace.
    """
    headers = request.headers if request is not None else None
    event = EventIn(
        action=action,
        resource_type=resource_type,
        resource_id=resource_id,
        user_id=actor,
        session_id=str(session_id) if session_id else None,
        request_id=request.scope.get("state", {}).get("request_id") if request is not None else None,
        severity=severity,
        timestamp=datetime.now(UTC),
        ip_address=_client_address(request),
        user_agent=(headers.get("user-agent") or "")[:1024] or None if headers is not None else None,
        message=message or f"{action} {resource_type}" + (f" {resource_id}" if resource_id else ""),
        metadata=details or None,
    )
    prepared = prepare_event(event, tenant_id=tenant_id, actor=actor, now=datetime.now(UTC))
    writer = runtime.services.get("ingest")
    try:
        if writer is None:
            raise WriterUnavailable("the ingest writer is not running")
        await writer.submit(tenant_id, [prepared])
    except WriterUnavailable:
        if request is None:
            raise
        log.error("%s of tenant %s was done but its audit event could not be stored", action, tenant_id)
        raise ApiError(
            503, f"{action} was carried out, but its audit event could not be stored", headers={"Retry-After": "1"}
        ) from None


async def record_caller_event(
    runtime: HasServices,
    request: Request[Any, Any, Any],
    *,
    action: str,
    resource_type: str,
    resource_id: str | None = None,
    details: dict[str, Any] | None = None,
    tenant_id: uuid.UUID | None = None,
) -> None:
    """``record_service_event`` for an action the request's caller took: its actor and session recorded, in
    its own tenant unless ``tenant_id`` names the one the action affected (the operator's)."""
    principal = principal_of(request)
    await record_service_event(
        runtime,
        tenant_id=principal.tenant_id if tenant_id is None else tenant_id,
        actor=principal.actor,
        action=action,
        resource_type=resource_type,
        resource_id=resource_id,
        details=details,
        request=request,
        session_id=principal.session_id,
    )
