"""Turn the credentials of a request (JWT or API key) into a ``Principal``, or refuse them.

JWTs are verified locally and checked against the revocation registry. API keys are found by their
public id through a ``SECURITY DEFINER`` look-up, cached in memory and re-checked against the registry,
so a key costs no database round trip after its first use and stops working within a second of revocation.

Why a revoked key stays refused: a cache entry lives at most ``API_KEY_CACHE_SECONDS`` and carries the
``revoked_at`` it was fetched with; the registry remembers a revocation for longer than that (see
``revocation.remember_seconds``), so an entry fetched before the revocation expires while the registry still
refuses it, and every later fetch reads ``revoked_at`` from the database. Unknown public ids are remembered
for ``NEGATIVE_CACHE_SECONDS``, so a flood of made-up keys does not cost a query each.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from sqlalchemy import text

from app.auth.failures import FailedAuthLimiter
from app.auth.jwt import InvalidToken, TokenService
from app.auth.principal import Principal, Role
from app.auth.revocation import RevocationRegistry
from app.auth.tokens import constant_time_equal, hash_secret, parse_api_key
from db.tenancy import TenantDB

__all__ = ["Authenticator", "InvalidCredentials"]

API_KEY_CACHE_SECONDS = 60.0
"""Longest a verified key is trusted without reading its row again (read when the Authenticator is built)."""
NEGATIVE_CACHE_SECONDS = 5.0
"""How long an unknown public id is answered from memory (a key is never looked up before it exists)."""
_NEGATIVE_CACHE_SIZE = 10_000
DEFAULT_FAILED_AUTH_PER_MINUTE = 30


class InvalidCredentials(Exception):
    pass


@dataclass(frozen=True, slots=True)
class _CachedKey:
    tenant_id: uuid.UUID
    key_id: uuid.UUID
    role: Role
    key_hash: bytes
    revoked: bool
    fetched: float


class Authenticator:
    def __init__(
        self,
        db: TenantDB,
        tokens: TokenService,
        revocations: RevocationRegistry,
        *,
        failed_auth_per_minute: int = DEFAULT_FAILED_AUTH_PER_MINUTE,
    ) -> None:
        self.db = db
        self.failures = FailedAuthLimiter(failed_auth_per_minute)
        """Failed authentications per client address (the middleware and the login route feed it)."""
        self.tokens = tokens
        self.revocations = revocations
        self._keys: dict[str, _CachedKey] = {}
        self._unknown: dict[str, float] = {}
        """Public ids found in no row: id → when to look again (monotonic)."""
        self.key_cache_seconds = API_KEY_CACHE_SECONDS
        self.negative_cache_seconds = NEGATIVE_CACHE_SECONDS
        self.key_uses: dict[tuple[uuid.UUID, uuid.UUID], float] = {}
        """API keys used since the last flush of ``last_used_at``: (tenant, key) → epoch seconds."""

    async def authenticate(self, credential: str) -> Principal:
        if credential.startswith("alk_"):
            return await self._api_key(credential)
        try:
            principal = self.tokens.verify(credential)
        except InvalidToken as exc:
            raise InvalidCredentials(str(exc)) from exc
        if self.revocations.is_revoked(principal.session_id):
            raise InvalidCredentials("session revoked")
        return principal

    async def _api_key(self, credential: str) -> Principal:
        parsed = parse_api_key(credential)
        if parsed is None:
            raise InvalidCredentials("malformed API key")
        public_id, _full = parsed
        now = time.monotonic()
        cached = self._keys.get(public_id)
        if cached is None or now - cached.fetched > self.key_cache_seconds:
            if self._unknown.get(public_id, 0.0) > now:
                raise InvalidCredentials("unknown API key")
            cached = await self._load_key(public_id, now)
        if cached is None or not constant_time_equal(hash_secret(credential), cached.key_hash):
            raise InvalidCredentials("unknown API key")
        if cached.revoked or self.revocations.is_revoked(cached.key_id):
            raise InvalidCredentials("API key revoked")
        self.key_uses[(cached.tenant_id, cached.key_id)] = time.time()
        return Principal(tenant_id=cached.tenant_id, subject_id=cached.key_id, role=cached.role, kind="api_key")

    async def _load_key(self, public_id: str, now: float) -> _CachedKey | None:
        async with self.db.system() as session:
            row = (
                await session.execute(
                    text("SELECT tenant_id, id, role, key_hash, revoked_at FROM auditlog_find_api_key(:p)"),
                    {"p": public_id},
                )
            ).first()
        if row is None:
            self._keys.pop(public_id, None)
            if len(self._unknown) >= _NEGATIVE_CACHE_SIZE:
                self._unknown = {k: v for k, v in self._unknown.items() if v > now}
                if len(self._unknown) >= _NEGATIVE_CACHE_SIZE:
                    self._unknown.clear()
            self._unknown[public_id] = now + self.negative_cache_seconds
            return None
        # revoked_at travels with the entry: the registry need not remember this key any longer
        cached = _CachedKey(row.tenant_id, row.id, Role(row.role), bytes(row.key_hash), row.revoked_at is not None, now)
        self._keys[public_id] = cached
        return cached
