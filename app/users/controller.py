"""User routes: the tenant's users and their lifecycle (Admin of the tenant, or the operator), and a user's
own password change.

An Admin acts on the users of its own tenant. The operator acts on any customer tenant's users and names
the tenant with ``?tenant_id=`` (required for it; an Admin may omit it or give its own). Another tenant's
user, the operator's own account and deleted users answer 404.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from litestar import Controller, Request, delete, get, patch, post
from litestar.di import NamedDependency, Provide
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, JSONBody, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.principal import Role
from app.guards import ADMIN, OPERATOR_OR_ADMIN, allow, principal_of
from app.runtime import Runtime
from app.tenants.service import find_tenant
from app.users import lifecycle
from app.users.schemas import PasswordChange, PasswordReset, UserOut, UserPatch
from app.users.service import list_users
from app.web.errors import ApiError, NotFound

__all__ = ["UserController", "target_tenant"]

ANY_USER = allow(Role.OPERATOR, Role.ADMIN, Role.USER, Role.AUDITOR)
TenantQuery = Annotated[
    uuid.UUID | None,
    QueryParameter(
        name="tenant_id",
        required=False,
        description="The user's tenant: required for the operator; an Admin's own tenant when omitted.",
    ),
]
_404 = {404: ResponseSpec(data_container=None, description="No such user in the tenant (or another tenant's)")}
_409 = {409: ResponseSpec(data_container=None, description="The tenant's last enabled Admin cannot be removed")}
_422 = {422: ResponseSpec(data_container=None, description="A field is invalid (a weak password names its field)")}


async def target_tenant(
    request: Request[Any, Any, Any], runtime: NamedDependency[Runtime], tenant_id: TenantQuery = None
) -> uuid.UUID:
    """The tenant whose users the caller manages: an Admin's own; the operator's named customer tenant.

    The ``tenant`` dependency of the routes on one user, so each of them takes ``?tenant_id=`` the same way.
    """
    principal = principal_of(request)
    if principal.role is Role.OPERATOR:
        if tenant_id is None:
            raise ApiError(
                422,
                "validation failed: tenant_id: the operator must name the user's tenant",
                errors=[{"field": "tenant_id", "message": "required for the operator"}],
            )
        found = await find_tenant(runtime.db, str(tenant_id))
        if found is None or found[2]:
            raise NotFound("tenant")
        return tenant_id
    if tenant_id is not None and tenant_id != principal.tenant_id:
        raise NotFound("user")
    return principal.tenant_id


class UserController(Controller):
    path = "/api/v1/users"
    tags = ["users"]
    dependencies = {"tenant": Provide(target_tenant)}

    @get("/", guards=[ADMIN], summary="The tenant's users, emails masked (Admin)")
    async def list(self, session: NamedDependency[AsyncSession]) -> list[UserOut]:
        return await list_users(session)

    @get("/{id:uuid}", guards=[OPERATOR_OR_ADMIN], summary="One user (Admin, or operator; extension)", responses=_404)
    async def show(
        self,
        id: FromPath[uuid.UUID],
        runtime: NamedDependency[Runtime],
        tenant: NamedDependency[uuid.UUID],
    ) -> UserOut:
        return await lifecycle.get_user(runtime, tenant, id)

    @patch(
        "/{id:uuid}",
        guards=[OPERATOR_OR_ADMIN],
        summary="Change a user's role, disable or enable it, or change its email (Admin, or operator; extension)",
        description=(
            "Absent fields are left alone. Changing the role or disabling revokes every session of the user "
            "within a second (the new role applies from its next login); a disabled user cannot log in or "
            "refresh. The last enabled Admin of a tenant cannot be demoted or disabled (409). Each change is "
            "recorded in the tenant's log (`ROLE_CHANGED`, `USER_DISABLED`, `USER_ENABLED`, `USER_UPDATED`)."
        ),
        responses={**_404, **_409, **_422},
    )
    async def update(
        self,
        request: Request,
        id: FromPath[uuid.UUID],
        data: JSONBody[UserPatch],
        runtime: NamedDependency[Runtime],
        tenant: NamedDependency[uuid.UUID],
    ) -> UserOut:
        return await lifecycle.update_user(runtime, tenant, principal_of(request), id, data, request)

    @delete(
        "/{id:uuid}",
        guards=[OPERATOR_OR_ADMIN],
        status_code=204,
        summary="Delete a user (Admin, or operator; extension)",
        description=(
            "Soft: the user is disabled and hidden, every session revoked, the username stays taken, and the "
            "events that name it keep naming it. The last enabled Admin cannot be deleted (409). Recorded as "
            "`USER_DELETED`."
        ),
        responses={**_404, **_409},
    )
    async def remove(
        self,
        request: Request,
        id: FromPath[uuid.UUID],
        runtime: NamedDependency[Runtime],
        tenant: NamedDependency[uuid.UUID],
    ) -> None:
        await lifecycle.delete_user(runtime, tenant, principal_of(request), id, request)

    @post(
        "/me/password",
        guards=[ANY_USER],
        status_code=204,
        summary="Change your own password (extension)",
        description=(
            "With the current password (checked and throttled like a login; wrong: 403). Every other session "
            "of yours is revoked; this one stays. Recorded as `PASSWORD_CHANGED`. Not for API keys (400) or "
            "the operator, whose password is `AUDIT_OPERATOR_PASSWORD` (409)."
        ),
        responses={
            400: ResponseSpec(data_container=None, description="An API key has no password"),
            403: ResponseSpec(data_container=None, description="current_password is wrong"),
            **_422,
        },
    )
    async def change_password(
        self, request: Request, data: JSONBody[PasswordChange], runtime: NamedDependency[Runtime]
    ) -> None:
        source = request.client.host if request.client else "-"
        await lifecycle.change_own_password(
            runtime, principal_of(request), data.current_password, data.new_password, source=source, request=request
        )

    @post(
        "/{id:uuid}/password",
        guards=[OPERATOR_OR_ADMIN],
        status_code=204,
        summary="Reset a user's password (Admin, or operator; extension)",
        description=(
            "Every session of the user is revoked within a second and its failed logins are forgotten. "
            "Recorded as `PASSWORD_RESET`."
        ),
        responses={**_404, **_422},
    )
    async def reset_password(
        self,
        request: Request,
        id: FromPath[uuid.UUID],
        data: JSONBody[PasswordReset],
        runtime: NamedDependency[Runtime],
        tenant: NamedDependency[uuid.UUID],
    ) -> None:
        await lifecycle.reset_password(runtime, tenant, principal_of(request), id, data.new_password, request)

    @post(
        "/{id:uuid}/unlock",
        guards=[OPERATOR_OR_ADMIN],
        status_code=204,
        summary="Forget a user's failed logins from every address (Admin, or operator; extension)",
        description="Recorded as `USER_UNLOCKED`.",
        responses=_404,
    )
    async def unlock(
        self,
        request: Request,
        id: FromPath[uuid.UUID],
        runtime: NamedDependency[Runtime],
        tenant: NamedDependency[uuid.UUID],
    ) -> None:
        await lifecycle.unlock_user(runtime, tenant, principal_of(request), id, request)
