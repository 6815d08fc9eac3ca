"""Sessions: password login throttled per account and source, refresh-token rotation with reuse detection,
logout, and the trace of each in the tenant's own log.

A login opens a ``sessions`` row; the client gets a short-lived JWT naming that session and an opaque,
single-use refresh token ``rt_<tenant id hex>_<secret>`` (the tenant is readable from the token, so the
refresh never looks across tenants; only its SHA-256 is stored). A refresh token presented twice means
it leaked: the whole session is revoked. Revoking writes ``revoked_at`` and sends ``NOTIFY
auditlog_revoked`` in one transaction, so every API process refuses the session's tokens within a second.

Every way a login can fail (unknown tenant, unknown user, wrong password, disabled user, throttled) answers
the same 401 after the same amount of password hashing. Within a known tenant the known-user and the
unknown-user paths run the same statements too: one throttle reservation (``app.auth.throttle``, counted
before the check), one user look-up, one hash verification, one ``LOGIN_FAILED`` event; so neither the
response nor its timing tells which usernames exist. ``LOGIN_FAILED`` for an unknown username names no
user and keeps nothing of what was typed (it may be a password typed into the wrong box). An unknown
tenant records nothing (there is no tenant to record it in).
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import anyio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit_trail.service_events import SESSION, USER, record_service_event
from app.auth import throttle
from app.auth.passwords import hash_password, needs_rehash, verify_dummy, verify_password
from app.auth.principal import Role
from app.auth.revocation import CHANNEL
from app.auth.tokens import hash_secret, new_refresh_token
from app.auth_routes.schemas import TokenPair
from app.runtime import Runtime
from app.tenants.service import find_tenant
from app.web.errors import ApiError

if TYPE_CHECKING:
    from litestar import Request

__all__ = [
    "InvalidLogin",
    "login",
    "refresh",
    "revoke_session",
    "revoke_user_sessions",
]

ANONYMOUS = "anonymous"
"""The ``user_id`` of a failed login's event when no user of that name exists."""

_REFRESH_RE = re.compile(r"rt_([0-9a-f]{32})_([A-Za-z0-9_-]{43})")
_FIND_USER = text(
    "SELECT id, role, password_hash, disabled_at IS NOT NULL AS disabled"
    " FROM users WHERE lower(username) = lower(:u) AND deleted_at IS NULL"
)


class InvalidLogin(ApiError):
    """The one answer to every failed login or refresh: no hint of which part was wrong."""

    def __init__(self, detail: str = "invalid tenant, username or password") -> None:
        super().__init__(401, detail)


def _refresh_tenant(token: str) -> uuid.UUID | None:
    match = _REFRESH_RE.fullmatch(token)
    return uuid.UUID(hex=match.group(1)) if match else None


async def _new_pair(
    runtime: Runtime,
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    user_id: uuid.UUID,
    role: Role,
    session_id: uuid.UUID,
    new_session: bool = False,
) -> TokenPair:
    """Issue an access and a refresh token; the session lives as long as its newest refresh token."""
    secret, _ = new_refresh_token()
    refresh_token = f"rt_{tenant_id.hex}_{secret}"
    expires = datetime.now(UTC) + timedelta(seconds=runtime.settings.refresh_token_ttl_seconds)
    if new_session:
        await session.execute(
            text("INSERT INTO sessions (tenant_id, id, user_id, expires_at) VALUES (:t, :s, :u, :e)"),
            {"t": tenant_id, "s": session_id, "u": user_id, "e": expires},
        )
    else:
        await session.execute(
            text("UPDATE sessions SET expires_at = :e WHERE id = :s"), {"e": expires, "s": session_id}
        )
    await session.execute(
        text("INSERT INTO refresh_tokens (tenant_id, token_hash, session_id, expires_at) VALUES (:t, :h, :s, :e)"),
        {"t": tenant_id, "h": hash_secret(refresh_token), "s": session_id, "e": expires},
    )
    access = runtime.tokens.issue(user_id=user_id, tenant_id=tenant_id, role=role, session_id=session_id)
    return TokenPair(access_token=access, refresh_token=refresh_token, expires_in=runtime.tokens.ttl_seconds)


def _reason(attempt: throttle.Attempt, row: Any) -> str:
    if not attempt.allowed:
        return "throttled"
    if row is None:
        return "unknown_user"
    return "disabled" if row.disabled else "wrong_password"


async def login(
    runtime: Runtime,
    tenant_ref: str,
    username: str,
    password: str,
    *,
    source: str = "-",
    request: Request[Any, Any, Any] | None = None,
) -> TokenPair:
    """Check a password (throttled per account and ``source`` address) and open a session."""
    found = await find_tenant(runtime.db, tenant_ref)
    if found is None:
        await anyio.to_thread.run_sync(verify_dummy, password)
        raise InvalidLogin()
    tenant_id = found[0]
    # Counted and committed before the check, so concurrent guesses cannot outrun the limits.
    async with runtime.db.tenant(tenant_id) as session:
        attempt = await throttle.reserve(session, username, source)
        row = (await session.execute(_FIND_USER, {"u": username})).first()
    if not attempt.allowed or row is None or row.disabled:
        await anyio.to_thread.run_sync(verify_dummy, password)
        ok = False
    else:
        ok = await anyio.to_thread.run_sync(verify_password, row.password_hash, password)
    if not ok or row is None:
        await _record_failure(runtime, tenant_id, row, attempt, request)
        raise InvalidLogin()
    session_id = uuid.uuid4()
    async with runtime.db.tenant(tenant_id) as session:
        await throttle.succeeded(session, username, source, attempt)
        if needs_rehash(row.password_hash):
            new_hash = await anyio.to_thread.run_sync(hash_password, password)
            await session.execute(
                text("UPDATE users SET password_hash = :h WHERE id = :id"), {"id": row.id, "h": new_hash}
            )
        pair = await _new_pair(
            runtime,
            session,
            tenant_id=tenant_id,
            user_id=row.id,
            role=Role(row.role),
            session_id=session_id,
            new_session=True,
        )
    await record_service_event(
        runtime,
        tenant_id=tenant_id,
        actor=str(row.id),
        action="LOGIN",
        resource_type=SESSION,
        resource_id=str(session_id),
        details={"user_id": str(row.id), "role": row.role},
        request=request,
        session_id=session_id,
    )
    return pair


async def _record_failure(
    runtime: Runtime, tenant_id: uuid.UUID, row: Any, attempt: throttle.Attempt, request: Request[Any, Any, Any] | None
) -> None:
    """``LOGIN_FAILED`` (and ``LOCKED_OUT`` when this failure started a lock), the same writes for every user."""
    actor = str(row.id) if row is not None else ANONYMOUS
    resource_id = str(row.id) if row is not None else None
    details = {"reason": _reason(attempt, row), "user_known": row is not None}
    await record_service_event(
        runtime,
        tenant_id=tenant_id,
        actor=actor,
        action="LOGIN_FAILED",
        resource_type=USER,
        resource_id=resource_id,
        details=details,
        severity="WARNING",
        request=request,
    )
    if attempt.locked:
        await record_service_event(
            runtime,
            tenant_id=tenant_id,
            actor=actor,
            action="LOCKED_OUT",
            resource_type=USER,
            resource_id=resource_id,
            details={"scope": attempt.locked, "user_known": row is not None},
            severity="WARNING",
            request=request,
        )


async def refresh(runtime: Runtime, token: str, *, request: Request[Any, Any, Any] | None = None) -> TokenPair:
    tenant_id = _refresh_tenant(token)
    if tenant_id is None:
        raise InvalidLogin("invalid or expired refresh token")
    pair: TokenPair | None = None
    reused: uuid.UUID | None = None
    reused_by: str = ANONYMOUS
    async with runtime.db.tenant(tenant_id) as session:
        row = (
            await session.execute(
                text(
                    "SELECT r.session_id, r.spent_at IS NOT NULL AS spent,"
                    " r.expires_at <= now() OR s.expires_at <= now() AS expired,"
                    " s.revoked_at IS NOT NULL AS revoked, u.id AS user_id, u.role,"
                    " u.disabled_at IS NOT NULL AS disabled"
                    " FROM refresh_tokens r JOIN sessions s ON s.tenant_id = r.tenant_id AND s.id = r.session_id"
                    " JOIN users u ON u.tenant_id = s.tenant_id AND u.id = s.user_id"
                    " WHERE r.token_hash = :h FOR UPDATE OF r, s"
                ),
                {"h": hash_secret(token)},
            )
        ).first()
        if row is None or row.revoked or row.expired or row.disabled:
            pass
        elif row.spent:
            reused, reused_by = row.session_id, str(row.user_id)
            await _revoke(session, row.session_id, "refresh token reused")
        else:
            await session.execute(
                text("UPDATE refresh_tokens SET spent_at = now() WHERE token_hash = :h"), {"h": hash_secret(token)}
            )
            pair = await _new_pair(
                runtime,
                session,
                tenant_id=tenant_id,
                user_id=row.user_id,
                role=Role(row.role),
                session_id=row.session_id,
            )
    if reused is not None:
        runtime.revocations.mark(reused)
        await record_service_event(
            runtime,
            tenant_id=tenant_id,
            actor=reused_by,
            action="SESSION_REVOKED",
            resource_type=SESSION,
            resource_id=str(reused),
            details={"reason": "refresh token reused"},
            severity="WARNING",
            request=request,
            session_id=reused,
        )
    if pair is None:
        raise InvalidLogin("invalid or expired refresh token")
    return pair


async def _revoke(session: AsyncSession, session_id: uuid.UUID, reason: str) -> None:
    await session.execute(
        text("UPDATE sessions SET revoked_at = now(), revoked_reason = :r WHERE id = :s AND revoked_at IS NULL"),
        {"s": session_id, "r": reason},
    )
    await session.execute(text("SELECT pg_notify(:c, :p)"), {"c": CHANNEL, "p": f"session:{session_id}"})


async def revoke_session(runtime: Runtime, tenant_id: uuid.UUID, session_id: uuid.UUID, reason: str) -> None:
    """Revoke a session and tell every process (committed before this returns)."""
    async with runtime.db.tenant(tenant_id) as session:
        await _revoke(session, session_id, reason)
    runtime.revocations.mark(session_id)


async def revoke_user_sessions(
    session: AsyncSession, user_id: uuid.UUID, reason: str, *, keep: uuid.UUID | None = None
) -> list[uuid.UUID]:
    """Revoke every live session of ``user_id`` (but ``keep``) in ``session``'s transaction, with one
    ``NOTIFY`` each, sent when it commits. The caller marks the returned ids in its own registry."""
    rows = (
        await session.execute(
            text(
                "UPDATE sessions SET revoked_at = now(), revoked_reason = :r"
                " WHERE user_id = :u AND revoked_at IS NULL AND expires_at > now()"
                " AND (CAST(:keep AS uuid) IS NULL OR id <> CAST(:keep AS uuid)) RETURNING id"
            ),
            {"u": user_id, "r": reason, "keep": keep},
        )
    ).all()
    ids = [r.id for r in rows]
    for sid in ids:
        await session.execute(text("SELECT pg_notify(:c, :p)"), {"c": CHANNEL, "p": f"session:{sid}"})
    return ids
