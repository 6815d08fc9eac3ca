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
from app.tenants.schemas import TenantCreate, TenantOut
from app.tenants.service import create_tenant, find_tenant, list_tenants
from app.users.schemas import UserCreate, UserOut
from app.users.service import create_user

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
        principal = principal_of(request)
        if principal.role is not Role.OPERATOR and principal.tenant_id != tenant_id:
            raise NotFound("tenant")
        found = await find_tenant(runtime.db, str(tenant_id))
        if found is None or found[2]:
            raise NotFound("tenant")
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
