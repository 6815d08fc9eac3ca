"""The auth routes: ``POST /api/v1/auth/token``, ``/refresh`` (public) and ``/logout`` (any signed-in user)."""

from __future__ import annotations

from litestar import Controller, Request, post
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import JSONBody

from app.auth.principal import Role
from app.auth_routes.schemas import RefreshRequest, TokenPair, TokenRequest
from app.auth_routes.service import login, refresh, revoke_session
from app.errors import ApiError
from app.guards import allow, principal_of
from app.runtime import Runtime

__all__ = ["AuthController"]

ANY_USER = allow(Role.OPERATOR, Role.ADMIN, Role.USER, Role.AUDITOR)
_401 = {401: ResponseSpec(data_container=None, description="Unknown tenant or user, wrong password, or invalid token")}


class AuthController(Controller):
    path = "/api/v1/auth"
    tags = ["auth"]

    @post(
        "/token",
        opt={"public": True},
        status_code=200,
        security=[{}],
        summary="Log in: a JWT access token and a single-use refresh token",
        description=(
            "`tenant` is the tenant's name or id. Any failure answers the same 401. After 5 consecutive "
            "failures the account is locked for a growing period (30 s, doubling, at most 15 min)."
        ),
        responses=_401,
    )
    async def token(self, data: JSONBody[TokenRequest], runtime: NamedDependency[Runtime]) -> TokenPair:
        return await login(runtime, data.tenant, data.username, data.password)

    @post(
        "/refresh",
        opt={"public": True},
        status_code=200,
        security=[{}],
        summary="Trade a refresh token for a new pair (the old one is spent)",
        description="Presenting a spent refresh token again revokes the whole session (401).",
        responses=_401,
    )
    async def refresh(self, data: JSONBody[RefreshRequest], runtime: NamedDependency[Runtime]) -> TokenPair:
        return await refresh(runtime, data.refresh_token)

    @post(
        "/logout",
        guards=[ANY_USER],
        status_code=204,
        summary="End the caller's session: every token of it stops working",
        description="For signed-in users; an API key has no session (revoke it with DELETE /api/v1/api-keys/{id}).",
    )
    async def logout(self, request: Request, runtime: NamedDependency[Runtime]) -> None:
        principal = principal_of(request)
        if principal.session_id is None:
            raise ApiError(400, "an API key has no session; revoke it with DELETE /api/v1/api-keys/{id}")
        await revoke_session(runtime, principal.tenant_id, principal.session_id, "logout")
