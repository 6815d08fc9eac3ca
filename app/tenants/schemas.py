"""Request and response bodies for tenants."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

import msgspec

from app.web.errors import ApiError

__all__ = ["KeyRotated", "TenantCreate", "TenantOut"]


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


class TenantCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[
        str,
        msgspec.Meta(
            min_length=1,
            max_length=128,
            pattern=r"^\S(.*\S)?$",
            description="Unique (case-insensitive); may not look like a UUID, since logins take a name or an id.",
        ),
    ]

    def __post_init__(self) -> None:
        # A name that parses as a UUID could be another tenant's id: logging in with it would be ambiguous.
        if _is_uuid(self.name):
            raise ApiError(
                422,
                "validation failed: name: a tenant name may not be a UUID",
                errors=[{"field": "name", "message": "a tenant name may not be a UUID"}],
            )


class TenantOut(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    name: str
    created_at: datetime
    retention_days: int | None = None


class KeyRotated(msgspec.Struct, kw_only=True):
    tenant_id: uuid.UUID
    key_id: int
    """The data key that encrypts new events from now on."""
