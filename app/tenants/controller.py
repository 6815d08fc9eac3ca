"""Tenant routes: the operator creates and lists tenants and their first users; Admins manage their own."""

from __future__ import annotations

import uuid

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from app.auth.principal import Role
from app.errors import NotFound
from app.guards import OPERATOR, OPERATOR_OR_ADMIN, principal_of
from app.runtime import Runtime
from app.tenants.schemas import KeyRotated, TenantCreate, TenantOut
from app.tenants.service import create_tenant, find_tenant, list_tenants
from app.users.schemas import UserCreate, UserOut
from app.users.service import create_user
from db.keyring import CACHE_SECONDS

__all__ = ["TenantController"]


class TenantController(Controller):
    path = "/api/v1/tenants"
    tags = ["tenants"]

    @post("/", guards=[OPERATOR], status_code=201, summary="Create a tenant (operator)")
    async def create(self, data: JSONBody[TenantCreate], runtime: NamedDependency[Runtime]) -> TenantOut:
        return await create_tenant(runtime, data.name)

    @get("/", guards=[OPERATOR_OR_ADMIN], summary="List tenants (operator: all; Admin: its own)")
    async def list(self, request: Request, runtime: NamedDependency[Runtime]) -> list[TenantOut]:
        principal = principal_of(request)
        only = None if principal.role is Role.OPERATOR else principal.tenant_id
        return await list_tenants(runtime.db, only=only)

    @post(
        "/{tenant_id:uuid}/users",
        guards=[OPERATOR_OR_ADMIN],
        status_code=201,
        summary="Create a user in a tenant (operator, or an Admin of that tenant)",
    )
    async def create_user(
        self,
        request: Request,
        tenant_id: FromPath[uuid.UUID],
        data: JSONBody[UserCreate],
        runtime: NamedDependency[Runtime],
    ) -> UserOut:
        await _reachable_tenant(request, runtime, tenant_id)
        async with runtime.db.tenant(tenant_id) as session:
            return await create_user(
                session,
                runtime.keyrings,
                tenant_id,
                username=data.username,
                password=data.password,
                role=data.role,
                email=data.email,
            )

    @post(
        "/{tenant_id:uuid}/keys/rotate",
        guards=[OPERATOR_OR_ADMIN],
        status_code=200,
        summary="Rotate the tenant's data key (operator, or an Admin of that tenant)",
        description=(
            "New events are encrypted with a new AES-256 data key (wrapped by the master key); events "
            "already stored keep reading with the key they were written with. Every API process picks the "
            f"new key up within {int(CACHE_SECONDS)} s. Keys also rotate weekly on their own."
        ),
    )
    async def rotate_key(
        self, request: Request, tenant_id: FromPath[uuid.UUID], runtime: NamedDependency[Runtime]
    ) -> KeyRotated:
        await _reachable_tenant(request, runtime, tenant_id)
        async with runtime.db.tenant(tenant_id) as session:
            key_id = await runtime.keyrings.rotate(session, tenant_id)
        return KeyRotated(tenant_id=tenant_id, key_id=key_id)


async def _reachable_tenant(request: Request, runtime: Runtime, tenant_id: uuid.UUID) -> None:
    """404 unless the caller is the operator (any customer tenant) or belongs to ``tenant_id``."""
    principal = principal_of(request)
    if principal.role is not Role.OPERATOR and principal.tenant_id != tenant_id:
        raise NotFound("tenant")
    found = await find_tenant(runtime.db, str(tenant_id))
    if found is None or found[2]:
        raise NotFound("tenant")
