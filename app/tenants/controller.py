"""Tenant routes: the operator creates and lists tenants and their first users; Admins manage their own.

Each administrative action is recorded in the log of the tenant it affects once it has committed
(``app.audit_trail``): ``TENANT_CREATED`` in the new tenant, ``USER_CREATED`` and ``DATA_KEY_ROTATED``, with
the caller (the operator under its own id) as the actor. The operator adding a user to a tenant that
already has users is recorded as a ``WARNING``: an operator-made Admin reads everything of the tenant.
"""

from __future__ import annotations

import builtins
import uuid

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from app.audit_trail.service_events import DATA_KEY, TENANT, USER, record_caller_event, record_service_event
from app.auth.principal import Role
from app.guards import OPERATOR, OPERATOR_OR_ADMIN, principal_of
from app.runtime import Runtime
from app.tenants.schemas import KeyRotated, TenantCreate, TenantOut
from app.tenants.service import create_tenant, find_tenant, list_tenants
from app.users.schemas import UserCreate, UserOut
from app.users.service import create_user, list_users
from app.web.errors import NotFound
from db.keyring import CACHE_SECONDS
from db.repository import UserRepository

__all__ = ["TenantController"]


class TenantController(Controller):
    path = "/api/v1/tenants"
    tags = ["tenants"]

    @post(
        "/",
        guards=[OPERATOR],
        status_code=201,
        summary="Create a tenant (operator)",
        description="Recorded in the new tenant's log as `TENANT_CREATED` (`auditlog.tenant`) by the operator.",
    )
    async def create(
        self, request: Request, data: JSONBody[TenantCreate], runtime: NamedDependency[Runtime]
    ) -> TenantOut:
        principal = principal_of(request)
        tenant = await create_tenant(runtime, data.name)
        await record_caller_event(
            runtime,
            request,
            action="TENANT_CREATED",
            resource_type=TENANT,
            resource_id=str(tenant.id),
            details={"name": tenant.name, "by": principal.role.value},
            tenant_id=tenant.id,
        )
        return tenant

    @get("/", guards=[OPERATOR_OR_ADMIN], summary="List tenants (operator: all; Admin: its own)")
    async def list(self, request: Request, runtime: NamedDependency[Runtime]) -> list[TenantOut]:
        principal = principal_of(request)
        only = None if principal.role is Role.OPERATOR else principal.tenant_id
        return await list_tenants(runtime.db, only=only)

    @get(
        "/{tenant_id:uuid}/users",
        guards=[OPERATOR_OR_ADMIN],
        summary="A tenant's users, emails masked (operator, or an Admin of that tenant; extension)",
        description="Deleted users are left out; disabled ones carry `disabled_at`. Another tenant: 404.",
    )
    async def users(
        self, request: Request, tenant_id: FromPath[uuid.UUID], runtime: NamedDependency[Runtime]
    ) -> builtins.list[UserOut]:  # ``list`` is a method name in this class
        await _reachable_tenant(request, runtime, tenant_id)
        async with runtime.db.tenant(tenant_id) as session:
            return await list_users(session)

    @post(
        "/{tenant_id:uuid}/users",
        guards=[OPERATOR_OR_ADMIN],
        status_code=201,
        summary="Create a user in a tenant (operator, or an Admin of that tenant)",
        description=(
            "Recorded in that tenant's log as `USER_CREATED` (`auditlog.user`) by the caller; by the operator "
            "in a tenant that already has users, with severity `WARNING`."
        ),
    )
    async def create_user(
        self,
        request: Request,
        tenant_id: FromPath[uuid.UUID],
        data: JSONBody[UserCreate],
        runtime: NamedDependency[Runtime],
    ) -> UserOut:
        principal = principal_of(request)
        await _reachable_tenant(request, runtime, tenant_id)
        async with runtime.db.tenant(tenant_id) as session:
            existing = await UserRepository(session=session).count()
            user = await create_user(
                session,
                runtime.keyrings,
                tenant_id,
                username=data.username,
                password=data.password,
                role=data.role,
                email=data.email,
            )
        by_operator = principal.role is Role.OPERATOR
        await record_service_event(
            runtime,
            tenant_id=tenant_id,
            actor=principal.actor,
            action="USER_CREATED",
            resource_type=USER,
            resource_id=str(user.id),
            details={
                "username": user.username,
                "role": user.role,
                "by": principal.role.value,
                "users_before": existing,
            },
            message=(
                f"the operator added {user.role} {user.username!r} to a tenant that already had {existing} users"
                if by_operator and existing
                else f"{principal.role.value} created {user.role} {user.username!r}"
            ),
            severity="WARNING" if by_operator and existing else "INFO",
            request=request,
            session_id=principal.session_id,
        )
        return user

    @post(
        "/{tenant_id:uuid}/keys/rotate",
        guards=[OPERATOR_OR_ADMIN],
        status_code=200,
        summary="Rotate the tenant's data key (operator, or an Admin of that tenant)",
        description=(
            "New events are encrypted with a new AES-256 data key (wrapped by the master key); events "
            "already stored keep reading with the key they were written with. Every API process picks the "
            f"new key up within {int(CACHE_SECONDS)} s. Keys also rotate weekly on their own. Recorded in the "
            "tenant's log as `DATA_KEY_ROTATED` (`auditlog.data_key`) by the caller (scheduled rotations: by "
            "`auditlog-service`)."
        ),
    )
    async def rotate_key(
        self, request: Request, tenant_id: FromPath[uuid.UUID], runtime: NamedDependency[Runtime]
    ) -> KeyRotated:
        principal = principal_of(request)
        await _reachable_tenant(request, runtime, tenant_id)
        async with runtime.db.tenant(tenant_id) as session:
            key_id = await runtime.keyrings.rotate(session, tenant_id)
        await record_caller_event(
            runtime,
            request,
            action="DATA_KEY_ROTATED",
            resource_type=DATA_KEY,
            resource_id=str(key_id),
            details={"key_id": key_id, "trigger": "api", "by": principal.role.value},
            tenant_id=tenant_id,
        )
        return KeyRotated(tenant_id=tenant_id, key_id=key_id)


async def _reachable_tenant(request: Request, runtime: Runtime, tenant_id: uuid.UUID) -> None:
    """404 unless the caller is the operator (any customer tenant) or belongs to ``tenant_id``."""
    principal = principal_of(request)
    if principal.role is not Role.OPERATOR and principal.tenant_id != tenant_id:
        raise NotFound("tenant")
    found = await find_tenant(runtime.db, str(tenant_id))
    if found is None or found[2]:
        raise NotFound("tenant")
