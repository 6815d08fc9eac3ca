"""What an Admin (or the operator) does to a user after creating it, and what a user does to its own password.

Each action runs in one tenant-bound transaction that also revokes what it must (every session of a user
who is disabled, deleted, demoted or promoted, or whose password an Admin resets; every other session of a
user who changes its own password), with one ``NOTIFY`` per session sent on commit, so every API process
refuses those tokens within a second. Each is then recorded in the tenant's log (``auditlog.user``) with
the caller as actor, and never with a password or an email in its details.

Rules: the operator's account and users of other tenants are not found (404); a tenant always keeps one
enabled Admin (demoting, disabling or deleting the last one is 409; the Admin rows are locked while this is
decided, so two Admins cannot remove each other at once). Deleting is soft: the row stays (disabled and
hidden), so the events that name it keep naming a real user, and its username stays taken.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
import msgspec
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit_trail.service_events import USER, record_service_event
from app.auth import throttle
from app.auth.password_policy import check_password
from app.auth.passwords import hash_password, verify_dummy, verify_password
from app.auth.principal import Principal
from app.auth_routes.service import revoke_user_sessions
from app.logs.masking import mask_email
from app.runtime import Runtime
from app.users.schemas import UserOut, UserPatch
from app.users.service import user_out
from app.web.errors import ApiError, Conflict, NotFound
from db.models import User
from db.repository import UserRepository

if TYPE_CHECKING:
    from litestar import Request

__all__ = ["change_own_password", "delete_user", "get_user", "reset_password", "unlock_user", "update_user"]


@dataclass
class _Outcome:
    """What a transaction did: events to record and sessions to mark revoked once it committed."""

    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    revoked: list[uuid.UUID] = field(default_factory=list)


async def _load(session: AsyncSession, user_id: uuid.UUID, *, lock: bool = False) -> User:
    statement = UserRepository(session=session).statement.where(
        User.id == user_id, User.role != "Operator", User.deleted_at.is_(None)
    )
    if lock:
        statement = statement.with_for_update()
    user = (await session.execute(statement)).scalar_one_or_none()
    if user is None:
        raise NotFound("user")
    return user


async def _keep_an_admin(session: AsyncSession, user: User) -> None:
    """409 if ``user`` is the tenant's last enabled Admin (all Admin rows locked while deciding)."""
    if user.role != "Admin" or user.disabled_at is not None:
        return
    admins = (
        await session.execute(
            text("SELECT id FROM users WHERE role = 'Admin' AND disabled_at IS NULL AND deleted_at IS NULL FOR UPDATE")
        )
    ).all()
    if len(admins) <= 1:
        raise Conflict("this is the tenant's last enabled Admin; make another Admin first")


async def _finish(
    runtime: Runtime,
    tenant_id: uuid.UUID,
    principal: Principal,
    user_id: uuid.UUID,
    outcome: _Outcome,
    request: Request[Any, Any, Any] | None,
) -> None:
    for sid in outcome.revoked:
        runtime.revocations.mark(sid)
    for action, details in outcome.events:
        await record_service_event(
            runtime,
            tenant_id=tenant_id,
            actor=principal.actor,
            action=action,
            resource_type=USER,
            resource_id=str(user_id),
            details={**details, "sessions_revoked": len(outcome.revoked)} if outcome.revoked else details,
            request=request,
            session_id=principal.session_id,
        )


async def get_user(runtime: Runtime, tenant_id: uuid.UUID, user_id: uuid.UUID) -> UserOut:
    async with runtime.db.tenant(tenant_id) as session:
        return user_out(await _load(session, user_id))


async def update_user(
    runtime: Runtime,
    tenant_id: uuid.UUID,
    principal: Principal,
    user_id: uuid.UUID,
    patch: UserPatch,
    request: Request[Any, Any, Any] | None = None,
) -> UserOut:
    outcome = _Outcome()
    async with runtime.db.tenant(tenant_id) as session:
        user = await _load(session, user_id, lock=True)
        revoke_reason = None
        if patch.role is not msgspec.UNSET and patch.role != user.role:
            if patch.role != "Admin":
                await _keep_an_admin(session, user)
            outcome.events.append(("ROLE_CHANGED", {"from": user.role, "to": patch.role}))
            user.role = patch.role
            revoke_reason = "role changed"
        if patch.disabled is not msgspec.UNSET and patch.disabled != (user.disabled_at is not None):
            if patch.disabled:
                await _keep_an_admin(session, user)
                user.disabled_at = (await session.execute(text("SELECT now()"))).scalar_one()
                outcome.events.append(("USER_DISABLED", {}))
                revoke_reason = "user disabled"
            else:
                user.disabled_at = None
                outcome.events.append(("USER_ENABLED", {}))
        if patch.email is not msgspec.UNSET:
            user.email = mask_email(patch.email) if patch.email else None
            if patch.email:
                ring = await runtime.keyrings.get(session, tenant_id)
                blob = ring.encrypt(patch.email.encode(), event_id=user.id, field="user.email")
                await session.execute(text("SELECT auditlog_vault_put(:u, 'email', :v)"), {"u": user.id, "v": blob})
            outcome.events.append(("USER_UPDATED", {"fields": ["email"]}))
        await session.flush()
        if revoke_reason:
            outcome.revoked = await revoke_user_sessions(session, user.id, revoke_reason)
        result = user_out(user)
    await _finish(runtime, tenant_id, principal, user_id, outcome, request)
    return result


async def delete_user(
    runtime: Runtime,
    tenant_id: uuid.UUID,
    principal: Principal,
    user_id: uuid.UUID,
    request: Request[Any, Any, Any] | None = None,
) -> None:
    outcome = _Outcome(events=[("USER_DELETED", {})])
    async with runtime.db.tenant(tenant_id) as session:
        user = await _load(session, user_id, lock=True)
        await _keep_an_admin(session, user)
        await session.execute(
            text(
                "UPDATE users SET deleted_at = now(), disabled_at = coalesce(disabled_at, now()), updated_at = now()"
                " WHERE id = :id"
            ),
            {"id": user.id},
        )
        outcome.revoked = await revoke_user_sessions(session, user.id, "user deleted")
    await _finish(runtime, tenant_id, principal, user_id, outcome, request)


async def reset_password(
    runtime: Runtime,
    tenant_id: uuid.UUID,
    principal: Principal,
    user_id: uuid.UUID,
    new_password: str,
    request: Request[Any, Any, Any] | None = None,
) -> None:
    """An Admin sets a user's password: every session of that user is revoked and its lock-out cleared."""
    check_password(new_password, field="new_password")
    new_hash = await anyio.to_thread.run_sync(hash_password, new_password)
    outcome = _Outcome(events=[("PASSWORD_RESET", {})])
    async with runtime.db.tenant(tenant_id) as session:
        user = await _load(session, user_id, lock=True)
        await session.execute(
            text("UPDATE users SET password_hash = :h, updated_at = now() WHERE id = :id"),
            {"h": new_hash, "id": user.id},
        )
        await throttle.unlock(session, user.username)
        outcome.revoked = await revoke_user_sessions(session, user.id, "password reset")
    await _finish(runtime, tenant_id, principal, user_id, outcome, request)


async def change_own_password(
    runtime: Runtime,
    principal: Principal,
    current_password: str,
    new_password: str,
    *,
    source: str,
    request: Request[Any, Any, Any] | None = None,
) -> None:
    """A user changes its own password (the current one checked, throttled like a login); its other sessions
    are revoked, the one making the change stays."""
    if principal.kind != "user" or principal.session_id is None:
        raise ApiError(400, "an API key has no password")
    tenant_id, user_id = principal.tenant_id, principal.subject_id
    async with runtime.db.tenant(tenant_id) as session:
        row = (
            await session.execute(
                text("SELECT username, role, password_hash FROM users WHERE id = :id AND deleted_at IS NULL"),
                {"id": user_id},
            )
        ).first()
        if row is None:
            raise NotFound("user")
        if row.role == "Operator":
            raise Conflict("the operator's password is AUDIT_OPERATOR_PASSWORD; change it there and restart")
        attempt = await throttle.reserve(session, row.username, source)
    if attempt.allowed:
        ok = await anyio.to_thread.run_sync(verify_password, row.password_hash, current_password)
    else:
        ok = await anyio.to_thread.run_sync(verify_dummy, current_password)
    if not ok:
        raise ApiError(
            403,
            "current_password is wrong (or too many wrong attempts: wait and retry)",
            errors=[{"field": "current_password", "message": "does not match"}],
        )
    check_password(new_password, field="new_password")
    new_hash = await anyio.to_thread.run_sync(hash_password, new_password)
    outcome = _Outcome(events=[("PASSWORD_CHANGED", {})])
    async with runtime.db.tenant(tenant_id) as session:
        await throttle.succeeded(session, row.username, source, attempt)
        await session.execute(
            text("UPDATE users SET password_hash = :h, updated_at = now() WHERE id = :id"),
            {"h": new_hash, "id": user_id},
        )
        outcome.revoked = await revoke_user_sessions(session, user_id, "password changed", keep=principal.session_id)
    await _finish(runtime, tenant_id, principal, user_id, outcome, request)


async def unlock_user(
    runtime: Runtime,
    tenant_id: uuid.UUID,
    principal: Principal,
    user_id: uuid.UUID,
    request: Request[Any, Any, Any] | None = None,
) -> None:
    """Forget every failed login counted against the user, from every address."""
    async with runtime.db.tenant(tenant_id) as session:
        user = await _load(session, user_id, lock=True)
        cleared = await throttle.unlock(session, user.username)
        await session.execute(
            text("UPDATE users SET failed_logins = 0, locked_until = NULL WHERE id = :id"), {"id": user.id}
        )
    outcome = _Outcome(events=[("USER_UNLOCKED", {"throttle_rows_cleared": cleared})])
    await _finish(runtime, tenant_id, principal, user_id, outcome, request)
