"""Tenants: creation (with partitions and a first data key, in one transaction) and listing."""

from __future__ import annotations

import uuid

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from app.runtime import Runtime
from app.tenants.schemas import TenantOut
from app.web.errors import Conflict
from db.tenancy import TenantDB, bind_session

__all__ = ["create_tenant", "find_tenant", "list_tenants"]


async def create_tenant(runtime: Runtime, name: str, *, platform: bool = False) -> TenantOut:
    tenant_id = uuid.uuid4()
    try:
        async with runtime.db.system() as session:
            row = (
                await session.execute(
                    text("SELECT id, name, created_at FROM auditlog_create_tenant(:id, :name, :p)"),
                    {"id": tenant_id, "name": name, "p": platform},
                )
            ).one()
            await bind_session(session, tenant_id)  # the first data key is a row of the new tenant
            await runtime.keyrings.create_first_key(session, tenant_id)
    except IntegrityError as exc:
        if getattr(exc.orig, "sqlstate", None) == "23505":
            raise Conflict(f"a tenant named {name!r} already exists") from exc
        raise
    return TenantOut(id=row.id, name=row.name, created_at=row.created_at)


async def find_tenant(db: TenantDB, ref: str) -> tuple[uuid.UUID, str, bool] | None:
    """Tenant by name (case-insensitive) or id: ``(id, name, is_platform)``."""
    async with db.system() as session:
        row = (
            await session.execute(text("SELECT id, name, is_platform FROM auditlog_find_tenant(:r)"), {"r": ref})
        ).first()
    return (row.id, row.name, row.is_platform) if row else None


async def list_tenants(db: TenantDB, *, only: uuid.UUID | None = None) -> list[TenantOut]:
    async with db.system() as session:
        rows = (
            await session.execute(
                text("SELECT id, name, created_at, retention_days FROM auditlog_list_tenants() WHERE NOT is_platform")
            )
        ).all()
    return [
        TenantOut(id=r.id, name=r.name, created_at=r.created_at, retention_days=r.retention_days)
        for r in rows
        if only is None or r.id == only
    ]
