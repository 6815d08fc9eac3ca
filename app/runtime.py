"""Everything a running API process holds: the engine, the tenant boundary, auth and key material.

Built in the application's lifespan from ``Settings`` (never at import time) and kept on
``app.state.runtime``; tests build as many independent instances as they like.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.auth import authenticator as auth_module
from app.auth.authenticator import Authenticator
from app.auth.jwt import TokenService
from app.auth.revocation import RevocationRegistry, remember_seconds
from app.logs.term_rarity import RareSearches
from app.settings import Settings
from db.crypto import LocalMasterKey
from db.engine import make_engine as db_engine
from db.keyring import KeyringStore
from db.tenancy import TenantDB, create_read_pool
from db.urls import plain_dsn

__all__ = ["Runtime", "build_runtime"]

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    engine: AsyncEngine
    db: TenantDB
    tokens: TokenService
    revocations: RevocationRegistry
    authenticator: Authenticator
    keyrings: KeyringStore
    rare_searches: RareSearches = field(default_factory=RareSearches)
    """``q`` searches this process found rare: their next pages skip the walk (``app.logs.term_rarity``)."""
    services: dict[str, Any] = field(default_factory=dict)
    """Optional components started by the lifespan (queue, worker, ingest writer, rate limiter...)."""

    async def close(self) -> None:
        await self.revocations.stop()
        await self.db.close()


def make_engine(settings: Settings) -> AsyncEngine:
    assert settings.database_url, "AUDIT_DATABASE_URL must be set (auditlog serve sets it for embedded mode)"
    return db_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_pool_max_overflow,
        application_name="auditlog-api",
    )


_ROLE_CHECK = text(
    """SELECT r.rolsuper OR r.rolbypassrls AS bypasses,
              coalesce((SELECT pg_get_userbyid(c.relowner) = current_user FROM pg_class c
                        WHERE c.relname = 'audit_logs' AND c.relnamespace = 'public'::regnamespace), false) AS owns
       FROM pg_roles r WHERE r.rolname = current_user"""
)


async def check_database_role(engine: AsyncEngine, settings: Settings) -> None:
    """Refuse (in production) to serve as a role that row-level security would not hold."""
    async with engine.connect() as conn:
        row = (await conn.execute(_ROLE_CHECK)).one()
    if row.bypasses or row.owns:
        problem = "owns the tables" if row.owns else "is a superuser or has BYPASSRLS"
        message = f"the API database role {problem}: tenant isolation would rest on the application alone"
        if not settings.is_dev:
            raise RuntimeError(message + "; connect AUDIT_DATABASE_URL as the auditlog_api role")
        log.warning(message)


async def build_runtime(settings: Settings) -> Runtime:
    engine = make_engine(settings)
    try:
        await check_database_role(engine, settings)
    except Exception:
        await engine.dispose()
        raise
    pool = await create_read_pool(
        plain_dsn(settings.database_url or ""),
        max_size=settings.db_pool_size,
        statement_timeout_ms=settings.read_statement_timeout_ms,
    )
    db = TenantDB(engine, pool)
    tokens = TokenService(
        settings.jwt_keys(),
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        ttl_seconds=settings.access_token_ttl_seconds,
    )
    assert settings.database_url
    revocations = RevocationRegistry(
        plain_dsn(settings.database_url),
        remember_seconds=remember_seconds(
            access_token_ttl=settings.access_token_ttl_seconds, api_key_cache=auth_module.API_KEY_CACHE_SECONDS
        ),
    )
    await revocations.start()
    assert settings.master_key, "AUDIT_MASTER_KEY must be set"
    keyrings = KeyringStore(LocalMasterKey.from_setting(settings.master_key))
    return Runtime(
        settings=settings,
        engine=engine,
        db=db,
        tokens=tokens,
        revocations=revocations,
        authenticator=Authenticator(db, tokens, revocations, failed_auth_per_minute=settings.failed_auth_per_minute),
        keyrings=keyrings,
    )
