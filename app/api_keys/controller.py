"""API key routes of a tenant (Admin): create (the key is shown once), list, revoke."""

from __future__ import annotations

import uuid

from litestar import Controller, Request, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody
from sqlalchemy.ext.asyncio import AsyncSession

from app.api_keys.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyOut
from app.api_keys.service import create_key, list_keys, revoke_key
from app.errors import NotFound
from app.guards import ADMIN, principal_of
from app.runtime import Runtime

__all__ = ["ApiKeyController"]


class ApiKeyController(Controller):
    path = "/api/v1/api-keys"
    tags = ["api-keys"]

    @post(
        "/",
        guards=[ADMIN],
        status_code=201,
        summary="Create an API key (Admin); the key is in this response only",
        description="The key acts with `role` (User or Auditor) inside the caller's tenant. Only a hash is kept.",
    )
    async def create(
        self, request: Request, data: JSONBody[ApiKeyCreate], session: NamedDependency[AsyncSession]
    ) -> ApiKeyCreated:
        principal = principal_of(request)
        return await create_key(session, name=data.name, role=data.role, created_by=principal.subject_id)

    @get(
        "/",
        guards=[ADMIN],
        summary="List the tenant's API keys, without their secrets (Admin; extension)",
        description=(
            "An extension to the contract: every key of the tenant, revoked ones included, with "
            "`last_used_at` (updated every few seconds). Secrets are never returned again."
        ),
    )
    async def index(self, session: NamedDependency[AsyncSession]) -> list[ApiKeyOut]:
        return await list_keys(session)

    @delete(
        "/{id:uuid}",
        guards=[ADMIN],
        status_code=204,
        summary="Revoke an API key (Admin); it stops working within a second",
        description="Another tenant's key, or an unknown id: 404. Revoking a revoked key again: 204.",
    )
    async def revoke(self, request: Request, id: FromPath[uuid.UUID], runtime: NamedDependency[Runtime]) -> None:
        principal = principal_of(request)
        if not await revoke_key(runtime, principal.tenant_id, id):
            raise NotFound("API key")
