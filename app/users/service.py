"""Users of a tenant (through the tenant-scoped ``UserRepository``): creation with a memory-hard password
hash, and PII kept only in the vault."""

from __future__ import annotations

import uuid

import anyio
from advanced_alchemy.exceptions import IntegrityError as RepositoryIntegrityError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.password_policy import check_password
from app.auth.passwords import hash_password
from app.logs.masking import mask_email
from app.users.schemas import UserOut
from app.web.errors import Conflict
from db.keyring import KeyringStore
from db.models import User
from db.repository import UserRepository

__all__ = ["create_user", "list_users", "user_out"]


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
    check_password(password)
    user_id = uuid.uuid4()
    password_hash = await anyio.to_thread.run_sync(hash_password, password)
    masked = mask_email(email) if email else None
    users = UserRepository(session=session)
    try:
        async with session.begin_nested():
            user = await users.add(
                User(id=user_id, username=username, role=role, email=masked, password_hash=password_hash)
            )
    except RepositoryIntegrityError as exc:
        raise Conflict(f"user {username!r} already exists in this tenant") from exc
    if email:
        ring = await keyrings.get(session, tenant_id)
        blob = ring.encrypt(email.encode(), event_id=user_id, field="user.email")
        await session.execute(text("SELECT auditlog_vault_put(:u, 'email', :v)"), {"u": user_id, "v": blob})
    return user_out(user)


async def list_users(session: AsyncSession) -> list[UserOut]:
    users = await UserRepository(session=session).list(
        User.role != "Operator", User.deleted_at.is_(None), order_by=[(User.created_at, False), (User.id, False)]
    )
    return [user_out(u) for u in users]


def user_out(user: User) -> UserOut:
    return UserOut(
        id=user.id,
        username=user.username,
        role=user.role,
        email=user.email,
        created_at=user.created_at,
        disabled_at=user.disabled_at,
    )
