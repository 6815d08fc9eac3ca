"""API key routes of a tenant (Admin): create (the key is shown once), list, revoke.

Creating and revoking a key are recorded in the tenant's log once committed (``API_KEY_CREATED``,
``API_KEY_REVOKED`` on ``auditlog.api_key``, by the Admin), with the key's id, name and role, never its secret.
"""

from __future__ import annotations

import uuid

from litestar import Controller, Request, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody
from sqlalchemy.ext.asyncio import AsyncSession

from app.api_keys.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyOut
from app.api_keys.service import create_key, list_keys, revoke_key
from app.audit_trail.service_events import API_KEY, record_caller_event
from app.guards import ADMIN, principal_of
from app.runtime import Runtime
from app.web.errors import NotFound
from db.repository import ApiKeyRepository

__all__ = ["ApiKeyController"]


class ApiKeyController(Controller):
    path = "/api/v1/api-keys"
    tags = ["api-keys"]

    @post(
        "/",
        guards=[ADMIN],
        status_code=201,
        summary="Create an API key (Admin); the key is in this response only",
        description=(
            "The key acts with `role` (User or Auditor) inside the caller's tenant. Only a hash is kept. "
            "Recorded in the tenant's log as `API_KEY_CREATED` (`auditlog.api_key`)."
        ),
    )
    async def create(
        self, request: Request, data: JSONBody[ApiKeyCreate], runtime: NamedDependency[Runtime]
    ) -> ApiKeyCreated:
        principal = principal_of(request)
        async with runtime.db.tenant(principal.tenant_id) as session:  # committed before it is recorded
            created = await create_key(session, name=data.name, role=data.role, created_by=principal.subject_id)
        await record_caller_event(
            runtime,
            request,
            action="API_KEY_CREATED",
            resource_type=API_KEY,
            resource_id=str(created.id),
            details={"name": created.name, "role": created.role},
        )
        return created

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
        description=(
            "Another tenant's key, or an unknown id: 404. Revoking a revoked key again: 204. The revocation is "
            "recorded in the tenant's log as `API_KEY_REVOKED` (`auditlog.api_key`), once."
        ),
    )
    async def revoke(self, request: Request, id: FromPath[uuid.UUID], runtime: NamedDependency[Runtime]) -> None:
        principal = principal_of(request)
        async with runtime.db.tenant(principal.tenant_id) as session:
            before = await ApiKeyRepository(session=session).get_one_or_none(id=id)
        if before is None or not await revoke_key(runtime, principal.tenant_id, id):
            raise NotFound("API key")
        if before.revoked_at is not None:
            return
        await record_caller_event(
            runtime,
            request,
            action="API_KEY_REVOKED",
            resource_type=API_KEY,
            resource_id=str(id),
            details={"name": before.name, "role": before.role},
        )
