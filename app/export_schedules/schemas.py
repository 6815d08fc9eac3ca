"""Request and response bodies of ``/api/v1/export-schedules`` (API.md "Scheduled exports").

The destination is a tagged union on ``type``: ``s3`` (a bucket and prefix, the tenant's own credentials, an
optional S3-compatible endpoint) or ``http`` (a receiver of signed gzip POSTs; ``headers`` is an extension for
receivers that want a token, e.g. a SIEM's collector). Credentials and headers are write-only: responses
carry ``DestinationOut``, which has none of them.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Final, Literal

import msgspec

from app.logs.schemas import ACTION_PATTERN, Severity

__all__ = [
    "Destination",
    "DestinationOut",
    "Every",
    "HttpDestination",
    "RunOut",
    "RunQueued",
    "S3Destination",
    "ScheduleCreate",
    "ScheduleCreated",
    "ScheduleFilters",
    "ScheduleFormat",
    "ScheduleOut",
    "SchedulePatch",
]

Every = Literal["hour", "day"]
ScheduleFormat = Literal["csv", "ndjson", "parquet"]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=r"^\S(.*\S)?$")]
AwareTime = Annotated[datetime, msgspec.Meta(tz=True)]
S3Url = Annotated[
    str,
    msgspec.Meta(
        min_length=8,
        max_length=1024,
        pattern=r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[^?#\s]*)?$",
        description="`s3://bucket/prefix`; each window is the object `<prefix>/<window start>.<format>`",
    ),
]
HttpUrl = Annotated[str, msgspec.Meta(min_length=8, max_length=2048, description="http(s) URL of the receiver")]
EndpointUrl = Annotated[
    str, msgspec.Meta(min_length=8, max_length=2048, description="http(s) URL of an S3-compatible service")
]
Region = Annotated[str, msgspec.Meta(min_length=1, max_length=32, pattern=r"^[a-z0-9-]+$")]
HeaderName = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")]
HeaderValue = Annotated[str, msgspec.Meta(max_length=4096, pattern=r"^[\x20-\x7e]*$")]
_Text = Annotated[str, msgspec.Meta(max_length=256)]
_Values: Final = 100
"""Most values one repeatable filter may list (as on ``GET /logs``)."""


def _one_or_many(item_schema: dict[str, Any]) -> msgspec.Meta:
    """The OpenAPI schema of a repeatable filter (one value or a list of them), spelled out: the generator keeps
    no constraint inside a union's arms, and the document must state exactly what msgspec checks."""
    schema = {"oneOf": [item_schema, {"type": "array", "items": item_schema, "maxItems": _Values}, {"type": "null"}]}
    return msgspec.Meta(extra_json_schema={"extra": schema})


_UserId = Annotated[str, msgspec.Meta(max_length=256)]
_Action = Annotated[str, msgspec.Meta(pattern=ACTION_PATTERN)]
_ResourceType = Annotated[str, msgspec.Meta(max_length=64)]
_UserIds = Annotated[
    _UserId | Annotated[list[_UserId], msgspec.Meta(max_length=_Values)] | None,
    _one_or_many({"type": "string", "maxLength": 256}),
]
_Actions = Annotated[
    _Action | Annotated[list[_Action], msgspec.Meta(max_length=_Values)] | None,
    _one_or_many({"type": "string", "pattern": ACTION_PATTERN}),
]
_ResourceTypes = Annotated[
    _ResourceType | Annotated[list[_ResourceType], msgspec.Meta(max_length=_Values)] | None,
    _one_or_many({"type": "string", "maxLength": 64}),
]
_Severities = Annotated[
    Severity | Annotated[list[Severity], msgspec.Meta(max_length=_Values)] | None,
    _one_or_many({"type": "string", "enum": ["INFO", "WARNING", "ERROR", "CRITICAL"]}),
]


class ScheduleFilters(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """The ``GET /logs`` query fields, with the same meaning; a repeatable one as a value or a list of values."""

    start_time: AwareTime | None = None
    """On the event's ``timestamp`` (inclusive), on top of the window's ``received_at``."""
    end_time: AwareTime | None = None
    user_id: _UserIds = None
    action: _Actions = None
    resource_type: _ResourceTypes = None
    resource_id: _Text | None = None
    severity: _Severities = None
    session_id: _Text | None = None
    request_id: _Text | None = None
    ip_address: Annotated[str, msgspec.Meta(max_length=64, description="an IPv4 or IPv6 address")] | None = None
    q: Annotated[str, msgspec.Meta(max_length=512)] | None = None
    include_system: bool = False
    exclude_user_id: _UserIds = None
    exclude_action: _Actions = None
    exclude_resource_type: _ResourceTypes = None


_HEADERS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "maxProperties": 16,
    "propertyNames": {"type": "string", "minLength": 1, "maxLength": 64, "pattern": r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$"},
    "additionalProperties": {"type": "string", "maxLength": 4096, "pattern": r"^[\x20-\x7e]*$"},
}


class S3Destination(msgspec.Struct, tag="s3", tag_field="type", kw_only=True, forbid_unknown_fields=True):
    url: S3Url
    access_key_id: Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$")]
    secret_access_key: Annotated[str, msgspec.Meta(min_length=1, max_length=256, pattern=r"^[\x21-\x7e]+$")]
    endpoint_url: EndpointUrl | None = None
    """Unset: AWS S3 itself."""
    region: Region | None = None
    """Default ``us-east-1``."""


class HttpDestination(msgspec.Struct, tag="http", tag_field="type", kw_only=True, forbid_unknown_fields=True):
    url: HttpUrl
    headers: Annotated[
        Annotated[dict[HeaderName, HeaderValue], msgspec.Meta(max_length=16)] | None,
        msgspec.Meta(extra_json_schema={"extra": {"oneOf": [_HEADERS_SCHEMA, {"type": "null"}]}}),
    ] = None
    """Extension: extra request headers (e.g. ``Authorization`` for a SIEM collector), stored encrypted like
    credentials and never returned."""


Destination = S3Destination | HttpDestination


class DestinationOut(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Where a schedule delivers, without its credentials (an HTTP URL without user info, query values masked)."""

    type: Literal["s3", "http"]
    url: str
    endpoint_url: str | None = None
    region: str | None = None
    header_names: list[str] | None = None
    """Names of the extra headers an HTTP destination sends (their values are never returned)."""


class ScheduleCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: Name
    every: Every
    format: ScheduleFormat
    destination: Destination
    filters: ScheduleFilters = msgspec.field(default_factory=ScheduleFilters)
    enabled: bool = True
    """Extension: a disabled schedule delivers nothing; enabled again, it catches up from where it stopped."""
    start_at: AwareTime | None = None
    """Extension: the first window to deliver (aligned down to the hour or UTC day; may be in the past to
    backfill). Default: the window the schedule is created in."""


class SchedulePatch(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: Name | msgspec.UnsetType = msgspec.UNSET
    every: Every | msgspec.UnsetType = msgspec.UNSET
    format: ScheduleFormat | msgspec.UnsetType = msgspec.UNSET
    filters: ScheduleFilters | msgspec.UnsetType = msgspec.UNSET
    destination: Destination | msgspec.UnsetType = msgspec.UNSET
    """Replaced whole (credentials included)."""
    enabled: bool | msgspec.UnsetType = msgspec.UNSET


class ScheduleOut(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    name: str
    every: Every
    format: ScheduleFormat
    filters: ScheduleFilters
    destination: DestinationOut
    enabled: bool
    next_window_start: datetime
    """The start of the next window to deliver (windows are delivered in order)."""
    retry_at: datetime | None
    """When the next window, whose last attempt failed, is tried again."""
    last_error: str | None
    last_delivered_at: datetime | None
    created_at: datetime
    updated_at: datetime


class ScheduleCreated(ScheduleOut, kw_only=True):
    secret: str
    """Signs HTTP deliveries (``X-Auditlog-Signature``): shown in this response only."""


class RunOut(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    window_start: datetime
    window_end: datetime
    trigger: Literal["schedule", "manual"]
    attempt: int
    """1 for a window's first run, then 2, 3, ... for its retries and re-runs."""
    status: Literal["running", "delivered", "failed"]
    rows: int | None
    bytes: int | None
    """Bytes delivered (for HTTP: of the gzip body)."""
    http_status: int | None
    error: str | None
    location: str | None
    """The S3 object (``s3://bucket/key``) or the HTTP URL (user info dropped, query values masked)."""
    started_at: datetime
    finished_at: datetime | None


class RunQueued(msgspec.Struct, kw_only=True):
    schedule_id: uuid.UUID
    window_start: datetime
    window_end: datetime
    status: Literal["queued"] = "queued"
