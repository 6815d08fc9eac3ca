"""Who is calling: the authenticated principal every guard and tenant-scoped query is derived from."""

from __future__ import annotations

import uuid
from enum import StrEnum

import msgspec

__all__ = ["Principal", "Role"]


class Role(StrEnum):
    OPERATOR = "Operator"
    ADMIN = "Admin"
    USER = "User"
    AUDITOR = "Auditor"


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    tenant_id: uuid.UUID
    subject_id: uuid.UUID
    """User id, or API key id for machine clients."""
    role: Role
    kind: str = "user"
    """``user`` (a JWT from /auth/token) or ``api_key``."""
    session_id: uuid.UUID | None = None
    token_id: str | None = None

    @property
    def actor(self) -> str:
        """The value recorded as ``user_id`` on events this caller creates or triggers."""
        return str(self.subject_id)
