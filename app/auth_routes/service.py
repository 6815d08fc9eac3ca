"""Sessions: password login with account lockout, refresh-token rotation with reuse detection, logout.

A login opens a ``sessions`` row; the client gets a short-lived JWT naming that session and an opaque,
single-use refresh token ``rt_<tenant id hex>_<secret>`` (the tenant is readable from the token, so the
refresh never looks across tenants; only its SHA-256 is stored). A refresh token presented twice means
it leaked: the whole session is revoked. Revoking writes ``revoked_at`` and sends ``NOTIFY
auditlog_revoked`` in one transaction, so every API process refuses the session's tokens within a second.
Every way a login can fail (unknown tenant, unknown user, wrong password, locked account) answers the same
401 after the same amount of password hashing, so a response never tells which accounts exist.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

import anyio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.passwords import hash_password, needs_rehash, verify_dummy, verify_password
from app.auth.principal import Role
from app.auth.revocation import CHANNEL
from app.auth.tokens import hash_secret, new_refresh_token
from app.auth_routes.schemas import TokenPair
from app.errors import ApiError
from app.runtime import Runtime
from app.tenants.service import find_tenant

__all__ = [
    "LOCK_BASE_SECONDS",
    "LOCK_MAX_SECONDS",
    "LOCK_THRESHOLD",
    "InvalidLogin",
    "login",
    "refresh",
    "revoke_session",
]

LOCK_THRESHOLD = 5
"""Consecutive failed logins after which the account is locked."""
LOCK_BASE_SECONDS = 30.0
"""First lock period; each further failure after a lock doubles it."""
LOCK_MAX_SECONDS = 900.0

_REFRESH_RE = re.compile(r"rt_([0-9a-f]{32})_([A-Za-z0-9_-]{43})")


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


async def login(runtime: Runtime, tenant_ref: str, username: str, password: str) -> TokenPair:
    found = await find_tenant(runtime.db, tenant_ref)
    if found is None:
        await anyio.to_thread.run_sync(verify_dummy, password)
        raise InvalidLogin()
    tenant_id = found[0]
    pair: TokenPair | None = None
    async with runtime.db.tenant(tenant_id) as session:
        row = (
            await session.execute(
                text(
                    "SELECT id, role, password_hash, disabled_at IS NOT NULL AS disabled,"
                    " coalesce(locked_until > now(), false) AS locked"
                    " FROM users WHERE lower(username) = lower(:u)"
                ),
                {"u": username},
            )
        ).first()
        if row is None or row.locked or row.disabled:
            await anyio.to_thread.run_sync(verify_dummy, password)
        elif not await anyio.to_thread.run_sync(verify_password, row.password_hash, password):
            await session.execute(
                text(
                    "UPDATE users SET failed_logins = failed_logins + 1, locked_until = CASE"
                    " WHEN failed_logins + 1 >= :n THEN now() + make_interval(secs =>"
                    "  least(:base * power(2, failed_logins + 1 - :n), :cap)) ELSE locked_until END"
                    " WHERE id = :id"
                ),
                {"id": row.id, "n": LOCK_THRESHOLD, "base": LOCK_BASE_SECONDS, "cap": LOCK_MAX_SECONDS},
            )
        else:
            new_hash = None
            if needs_rehash(row.password_hash):
                new_hash = await anyio.to_thread.run_sync(hash_password, password)
            await session.execute(
                text(
                    "UPDATE users SET failed_logins = 0, locked_until = NULL,"
                    " password_hash = coalesce(:h, password_hash) WHERE id = :id"
                ),
                {"id": row.id, "h": new_hash},
            )
            pair = await _new_pair(
                runtime,
                session,
                tenant_id=tenant_id,
                user_id=row.id,
                role=Role(row.role),
                session_id=uuid.uuid4(),
                new_session=True,
            )
    # Outside the transaction: a failure's counter update must be committed, not rolled back by the 401.
    if pair is None:
        raise InvalidLogin()
    return pair


async def refresh(runtime: Runtime, token: str) -> TokenPair:
    tenant_id = _refresh_tenant(token)
    if tenant_id is None:
        raise InvalidLogin("invalid or expired refresh token")
    pair: TokenPair | None = None
    reused: uuid.UUID | None = None
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
            reused = row.session_id
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
