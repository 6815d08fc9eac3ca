"""Request and response bodies for users."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

import msgspec

__all__ = ["PasswordChange", "PasswordReset", "UserCreate", "UserOut", "UserPatch"]

Username = Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._@+-]+$")]
Password = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=1024,
        description="At least 12 characters and not one of the 30,000 commonest passwords (422 otherwise).",
    ),
]
Email = Annotated[str, msgspec.Meta(max_length=320, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]


class UserCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    username: Username
    password: Password
    role: Literal["Admin", "User", "Auditor"]
    email: Email | None = None


class UserOut(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    username: str
    role: str
    email: str | None
    """Masked: the original is kept only in the tenant's encrypted vault."""
    created_at: datetime | None = None
    disabled_at: datetime | None = None
    """Set while the user is disabled: no login, no refresh, every session revoked."""


class UserPatch(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Change any of these; absent fields are left alone. A role change or disabling revokes every session
    of the user (the new role applies from the next login)."""

    role: Literal["Admin", "User", "Auditor"] | msgspec.UnsetType = msgspec.UNSET
    disabled: bool | msgspec.UnsetType = msgspec.UNSET
    email: Email | msgspec.UnsetType | None = msgspec.UNSET


class PasswordReset(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    new_password: Password


class PasswordChange(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    current_password: Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]
    new_password: Password
