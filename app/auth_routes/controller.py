"""The auth routes: ``POST /api/v1/auth/token``, ``/refresh`` (public) and ``/logout`` (any signed-in user)."""

from __future__ import annotations

from litestar import Controller, Request, post
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import JSONBody

from app.audit_trail.service_events import SESSION, record_caller_event
from app.auth import throttle
from app.auth.principal import Role
from app.auth_routes.schemas import RefreshRequest, TokenPair, TokenRequest
from app.auth_routes.service import InvalidLogin, login, refresh, revoke_session
from app.guards import allow, principal_of
from app.runtime import Runtime
from app.web.errors import ApiError

__all__ = ["AuthController"]

ANY_USER = allow(Role.OPERATOR, Role.ADMIN, Role.USER, Role.AUDITOR)
_401 = {
    401: ResponseSpec(data_container=None, description="Unknown tenant or user, wrong password, or invalid token"),
    429: ResponseSpec(
        data_container=None,
        description="Too many failed authentications from this address (or requests): see Retry-After",
    ),
}


def _admit(request: Request, runtime: Runtime) -> str:
    """The client address, unless it is over its budget of failed authentications (429)."""
    source = request.client.host if request.client else "-"
    retry_after = runtime.authenticator.failures.retry_after(source)
    if retry_after:
        raise ApiError(
            429,
            f"too many failed authentications from this address; retry in {retry_after} s",
            headers={"Retry-After": str(retry_after)},
        )
    return source


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
            "`tenant` is the tenant's name or id. Any failure answers the same 401, after the same work, "
            "whether the user exists or not. Password checks are throttled, counted before each check so "
            "concurrent guesses cannot outrun the limits:\n\n"
            f"- from one address to one account: after {throttle.PAIR_LIMIT} failures that address is refused "
            f"for {int(throttle.BASE_SECONDS)} s, doubling with each further failure up to "
            f"{int(throttle.CAP_SECONDS // 60)} min;\n"
            f"- from one address to any accounts of the tenant: after {throttle.SOURCE_LIMIT} failures, the same;\n"
            f"- to one account from any addresses: after {throttle.ACCOUNT_LIMIT} failures the account refuses "
            f"for {int(throttle.ACCOUNT_LOCK_SECONDS)} s the addresses that have failed on it; an address with no "
            "failures (the owner's) can still log in, so nobody can lock an account out by guessing.\n\n"
            "A success clears its address's failures. Failures are forgotten after an hour without any. An Admin "
            "(or the operator) clears an account's at once with `POST /api/v1/users/{id}/unlock`. Failed "
            "authentications of any kind from one address are also limited per minute (429 with Retry-After). "
            "Each login, failure and lock is recorded in the tenant's log (`auditlog.session`/`auditlog.user`)."
        ),
        responses=_401,
    )
    async def token(
        self, request: Request, data: JSONBody[TokenRequest], runtime: NamedDependency[Runtime]
    ) -> TokenPair:
        source = _admit(request, runtime)
        try:
            return await login(runtime, data.tenant, data.username, data.password, source=source, request=request)
        except InvalidLogin:
            runtime.authenticator.failures.record(source)
            raise

    @post(
        "/refresh",
        opt={"public": True},
        status_code=200,
        security=[{}],
        summary="Trade a refresh token for a new pair (the old one is spent)",
        description="Presenting a spent refresh token again revokes the whole session (401).",
        responses=_401,
    )
    async def refresh(
        self, request: Request, data: JSONBody[RefreshRequest], runtime: NamedDependency[Runtime]
    ) -> TokenPair:
        source = _admit(request, runtime)
        try:
            return await refresh(runtime, data.refresh_token, request=request)
        except InvalidLogin:
            runtime.authenticator.failures.record(source)
            raise

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
        await record_caller_event(
            runtime,
            request,
            action="LOGOUT",
            resource_type=SESSION,
            resource_id=str(principal.session_id),
        )
