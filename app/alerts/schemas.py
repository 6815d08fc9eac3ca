"""Request and response bodies of ``/api/v1/alerts`` (API.md, alerts)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

import msgspec

from app.logs.schemas import ACTION_PATTERN, Severity

__all__ = ["AlertCreate", "AlertCreated", "AlertDeliveryOut", "AlertMatch", "AlertOut", "AlertPatch"]

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=r"^\S(.*\S)?$")]
Url = Annotated[str, msgspec.Meta(min_length=8, max_length=2048, description="http(s) URL of the receiver")]
Threshold = Annotated[int, msgspec.Meta(ge=1, le=1_000_000)]
Window = Annotated[int, msgspec.Meta(ge=1, le=86_400)]
Cooldown = Annotated[int, msgspec.Meta(ge=0, le=604_800)]


class AlertMatch(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """Which committed events count (every given field must match; same meaning as on ``GET /logs``)."""

    severity: list[Severity] | None = None
    action: Annotated[str, msgspec.Meta(pattern=ACTION_PATTERN)] | None = None
    resource_type: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None
    user_id: Annotated[str, msgspec.Meta(min_length=1, max_length=256)] | None = None
    q: Annotated[str, msgspec.Meta(min_length=1, max_length=512)] | None = None


class AlertCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: Name
    webhook_url: Url
    match: AlertMatch = msgspec.field(default_factory=AlertMatch)
    threshold: Threshold = 1
    window_seconds: Window = 60
    cooldown_seconds: Cooldown = 300
    enabled: bool = True


class AlertPatch(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: Name | msgspec.UnsetType = msgspec.UNSET
    webhook_url: Url | msgspec.UnsetType = msgspec.UNSET
    match: AlertMatch | msgspec.UnsetType = msgspec.UNSET
    threshold: Threshold | msgspec.UnsetType = msgspec.UNSET
    window_seconds: Window | msgspec.UnsetType = msgspec.UNSET
    cooldown_seconds: Cooldown | msgspec.UnsetType = msgspec.UNSET
    enabled: bool | msgspec.UnsetType = msgspec.UNSET


class AlertOut(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    name: str
    match: dict[str, Any]
    threshold: int
    window_seconds: int
    cooldown_seconds: int
    webhook_url: str
    enabled: bool
    created_at: datetime
    updated_at: datetime
    last_fired_at: datetime | None


class AlertCreated(AlertOut, kw_only=True):
    secret: str
    """The webhook signing secret: shown in this response only."""


class AlertDeliveryOut(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    firing_id: uuid.UUID
    attempt: int
    status: str
    """``succeeded`` or ``failed``."""
    http_status: int | None
    error: str | None
    duration_ms: int | None
    created_at: datetime
