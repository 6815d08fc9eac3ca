"""Users of a tenant: creation with a memory-hard password hash and PII kept only in the vault."""

from __future__ import annotations

import uuid

import anyio
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.passwords import hash_password
from app.errors import Conflict
from app.logs.masking import mask_email
from app.users.schemas import UserOut
from db.keyring import KeyringStore

__all__ = ["create_user", "list_users"]


async def create_user(
    session: AsyncSession,
    keyrings: KeyringStore,
    tenant_id: uuid.UUID,
    *,
    username: str,
    password: str,
    role: str,
    email: str | None = None,
) -> UserOut:
    """Insert a user in ``session`` (bound to ``tenant_id``). The email is masked here and its original
    encrypted into the vault; the database trigger would mask it anyway if this code ever forgot."""
    user_id = uuid.uuid4()
    password_hash = await anyio.to_thread.run_sync(hash_password, password)
    masked = mask_email(email) if email else None
    try:
        async with session.begin_nested():
            row = (
                await session.execute(
                    text(
                        "INSERT INTO users (tenant_id, id, username, role, email, password_hash)"
                        " VALUES (:t, :id, :u, :r, :e, :h) RETURNING created_at"
                    ),
                    {"t": tenant_id, "id": user_id, "u": username, "r": role, "e": masked, "h": password_hash},
                )
            ).one()
    except IntegrityError as exc:
        raise Conflict(f"user {username!r} already exists in this tenant") from exc
    if email:
        ring = await keyrings.get(session, tenant_id)
        blob = ring.encrypt(email.encode(), event_id=user_id, field="user.email")
        await session.execute(text("SELECT auditlog_vault_put(:u, 'email', :v)"), {"u": user_id, "v": blob})
    return UserOut(id=user_id, username=username, role=role, email=masked, created_at=row.created_at)


async def list_users(session: AsyncSession) -> list[UserOut]:
    rows = (
        await session.execute(
            text(
                "SELECT id, username, role, email, created_at FROM users WHERE role <> 'Operator'"
                " ORDER BY created_at, id"
            )
        )
    ).all()
    return [UserOut(id=r.id, username=r.username, role=r.role, email=r.email, created_at=r.created_at) for r in rows]
