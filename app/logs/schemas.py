"""The audit event as clients send it and as the API returns it (``../shared/API.md``, "The event").

Validation lives in the types: msgspec refuses a bad field with its name (and, for bulk, its index)
before anything reaches the database. Unknown fields are refused (422 naming them), as on every request
body; ``id``, ``tenant_id`` and ``received_at`` are declared, so a client may echo an event back, and ignored.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

__all__ = [
    "ACTION_PATTERN",
    "BulkItems",
    "BulkResult",
    "EventIn",
    "EventOut",
    "EventPage",
    "PiiFindingOut",
    "PiiOut",
    "Severity",
]

ACTION_PATTERN = r"^[A-Z][A-Z0-9_.:-]{0,63}$"
Severity = Literal["INFO", "WARNING", "ERROR", "CRITICAL"]

Action = Annotated[
    str, msgspec.Meta(pattern=ACTION_PATTERN, description="CREATE, READ, ... or another upper-case word")
]
ResourceType = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Short = Annotated[str, msgspec.Meta(max_length=256)]
UserAgent = Annotated[str, msgspec.Meta(max_length=1024)]
Message = Annotated[str, msgspec.Meta(max_length=64 * 1024)]
AwareTime = Annotated[
    datetime,
    msgspec.Meta(
        tz=True,
        description="RFC 3339 with a zone; naive is refused. From 2000-01-01T00:00:00Z to 5 minutes from now.",
    ),
]
IpAddress = Annotated[
    str,
    msgspec.Meta(
        max_length=64,
        description="An IPv4 or IPv6 address; stored and returned in canonical form (IPv4-mapped as ::ffff:a.b.c.d)",
        extra_json_schema={"anyOf": [{"format": "ipv4"}, {"format": "ipv6"}]},
    ),
]
Ignored = Annotated[Any, msgspec.Meta(description="Ignored if sent: the server sets it.")]
JsonObject = dict[str, Any]


class EventIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One event as sent by a client. ``id``, ``tenant_id`` and ``received_at`` are ignored if sent."""

    action: Action
    resource_type: ResourceType
    resource_id: Short | None = None
    user_id: Short | None = None
    session_id: Short | None = None
    request_id: Short | None = None
    severity: Severity = "INFO"
    timestamp: AwareTime | None = None
    ip_address: IpAddress | None = None
    user_agent: UserAgent | None = None
    message: Message | None = None
    before_state: JsonObject | None = None
    after_state: JsonObject | None = None
    metadata: JsonObject | None = None
    tenant_id: Ignored = None
    id: Ignored = None
    received_at: Ignored = None


class EventOut(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    tenant_id: uuid.UUID
    action: str
    resource_type: str
    resource_id: str | None
    user_id: str | None
    session_id: str | None
    request_id: str | None
    severity: str
    timestamp: datetime
    ip_address: str | None
    user_agent: str | None
    message: str | None
    before_state: dict[str, Any] | None
    after_state: dict[str, Any] | None
    metadata: dict[str, Any] | None
    received_at: datetime


class EventPage(msgspec.Struct, kw_only=True):
    items: list[EventOut]
    next_cursor: str | None


class BulkResult(msgspec.Struct, kw_only=True):
    inserted: int
    ids: list[uuid.UUID]


class BulkItems(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The object form of a bulk body: ``{"items": [...]}`` (the plain array form is accepted too)."""

    items: list[EventIn]


class PiiFindingOut(msgspec.Struct, kw_only=True):
    path: str
    kind: str
    original: str
    masked: str


class PiiOut(msgspec.Struct, kw_only=True):
    """The unmasked originals of one event's PII (Admin only; the read itself is audited)."""

    event_id: uuid.UUID
    findings: list[PiiFindingOut]
