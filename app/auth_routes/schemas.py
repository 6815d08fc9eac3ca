"""Request and response bodies of the auth routes (``/api/v1/auth/...``)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

__all__ = ["RefreshRequest", "TokenPair", "TokenRequest"]


class TokenRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    tenant: Annotated[str, msgspec.Meta(min_length=1, max_length=128, description="Tenant name or id")]
    username: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    password: Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]


class RefreshRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    refresh_token: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]


class TokenPair(msgspec.Struct, kw_only=True):
    access_token: str
    """A JWT for ``Authorization: Bearer``; valid ``expires_in`` seconds."""
    refresh_token: str
    """Opaque, single use: ``POST /api/v1/auth/refresh`` trades it for a new pair."""
    expires_in: int
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 (a scheme name, not a secret)
