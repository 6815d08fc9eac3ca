"""Request and response bodies of the API key routes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

import msgspec

__all__ = ["ApiKeyCreate", "ApiKeyCreated", "ApiKeyOut"]


class ApiKeyCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=r"^\S(.*\S)?$")]
    role: Literal["User", "Auditor"]


class ApiKeyCreated(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    name: str
    role: str
    key: str
    """The secret, shown only in this response; send it as ``Authorization: Bearer`` or ``X-API-Key``."""
    created_at: datetime


class ApiKeyOut(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    name: str
    role: str
    created_at: datetime
    last_used_at: datetime | None
    """Updated every few seconds while the key is in use."""
    revoked_at: datetime | None
