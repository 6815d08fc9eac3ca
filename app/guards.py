"""Role guards. Every route declares exactly who may call it; the route-matrix test enforces that.

401 when nobody is authenticated, 403 when the caller is known but its role is not allowed. Objects of
another tenant are never reached here: they are invisible to the tenant-scoped database and answer 404.
"""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler

from app.auth.principal import Principal, Role

__all__ = [
    "ADMIN",
    "OPERATOR",
    "OPERATOR_OR_ADMIN",
    "READERS",
    "WRITERS",
    "allow",
    "principal_of",
]


class RoleGuard:
    """A guard admitting ``roles``; ``roles`` is kept so tests can read the route table."""

    def __init__(self, *roles: Role) -> None:
        self.roles = frozenset(roles)

    async def __call__(self, connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        # async on purpose: Litestar runs a synchronous guard in a worker thread on every request
        principal = connection.scope.get("user")
        if not isinstance(principal, Principal):
            raise NotAuthorizedException("authentication required")
        if principal.role not in self.roles:
            raise PermissionDeniedException(f"role {principal.role.value} may not do this")

    def __repr__(self) -> str:
        return f"allow({', '.join(sorted(r.value for r in self.roles))})"


def allow(*roles: Role) -> RoleGuard:
    return RoleGuard(*roles)


def principal_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    principal = connection.scope.get("user")
    if not isinstance(principal, Principal):
        raise NotAuthorizedException("authentication required")
    return principal


OPERATOR = allow(Role.OPERATOR)
ADMIN = allow(Role.ADMIN)
OPERATOR_OR_ADMIN = allow(Role.OPERATOR, Role.ADMIN)
WRITERS = allow(Role.ADMIN, Role.USER)
READERS = allow(Role.ADMIN, Role.USER, Role.AUDITOR)
