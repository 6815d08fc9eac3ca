"""Request and response bodies for tenants."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

import msgspec

__all__ = ["KeyRotated", "TenantCreate", "TenantOut"]


class TenantCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=r"^\S(.*\S)?$")]


class TenantOut(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    name: str
    created_at: datetime
    retention_days: int | None = None


class KeyRotated(msgspec.Struct, kw_only=True):
    tenant_id: uuid.UUID
    key_id: int
    """The data key that encrypts new events from now on."""
