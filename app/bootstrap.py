"""First-run data: the ``platform`` tenant with its ``operator``, and (development) the sample tenants.

Runs after the migrations, under an advisory lock so concurrent starters do not race. The operator's
password follows ``AUDIT_OPERATOR_PASSWORD``: changing the variable and restarting changes it. Demo
passwords are written to a 0600 file under the data dir, never to the log.
"""

from __future__ import annotations

import secrets
import uuid
from pathlib import Path

import anyio
from sqlalchemy import text

from app.auth.passwords import hash_password, verify_password
from app.demo_data import mark_for_seeding
from app.runtime import Runtime
from app.settings import write_private
from app.tenants.service import create_tenant, find_tenant
from app.users.service import create_user

__all__ = ["DEMO_TENANTS", "bootstrap"]

PLATFORM = "platform"
OPERATOR = "operator"
DEMO_TENANTS = ("Resola", "KMS", "AIAIVN")
DEMO_ROLES = (("admin", "Admin"), ("user", "User"), ("auditor", "Auditor"))
_LOCK = 0x61756469  # "audi"


async def _ensure_operator(runtime: Runtime) -> None:
    password = runtime.settings.operator_password
    assert password, "AUDIT_OPERATOR_PASSWORD must be set"
    found = await find_tenant(runtime.db, PLATFORM)
    tenant_id = found[0] if found else (await create_tenant(runtime, PLATFORM, platform=True)).id
    async with runtime.db.tenant(tenant_id) as session:
        row = (
            await session.execute(
                text("SELECT id, password_hash FROM users WHERE lower(username) = :u"), {"u": OPERATOR}
            )
        ).first()
        if row is None:
            await create_user(
                session, runtime.keyrings, tenant_id, username=OPERATOR, password=password, role="Operator"
            )
        elif not await anyio.to_thread.run_sync(verify_password, row.password_hash, password):
            new_hash = await anyio.to_thread.run_sync(hash_password, password)
            await session.execute(
                text("UPDATE users SET password_hash = :h, updated_at = now() WHERE id = :id"),
                {"h": new_hash, "id": row.id},
            )


async def _seed_demo(runtime: Runtime) -> Path | None:
    path = runtime.settings.data_dir / "demo-credentials.txt"
    lines = []
    created: list[tuple[uuid.UUID, str]] = []
    for name in DEMO_TENANTS:
        if await find_tenant(runtime.db, name):
            continue
        tenant = await create_tenant(runtime, name)
        created.append((tenant.id, name))
        async with runtime.db.tenant(tenant.id) as session:
            for username, role in DEMO_ROLES:
                password = secrets.token_urlsafe(12)
                await create_user(
                    session,
                    runtime.keyrings,
                    tenant.id,
                    username=username,
                    password=password,
                    role=role,
                    email=f"{username}@{name.lower()}.example",
                )
                lines.append(f"{name}\t{username}\t{role}\t{password}")
    if created:  # their events are seeded in the background by the API process (app.demo_data)
        mark_for_seeding(runtime.settings.data_dir, created)
    if not lines:
        return path if path.exists() else None
    header = "# tenant\tusername\trole\tpassword  (POST /api/v1/auth/token with these)\n"
    existing = path.read_text() if path.exists() else header
    write_private(path, existing + "\n".join(lines) + "\n")
    return path


async def bootstrap(runtime: Runtime) -> Path | None:
    """Ensure the operator (and demo data in development); return the demo credentials file if any."""
    async with runtime.engine.connect() as conn:
        await conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _LOCK})
        try:
            await _ensure_operator(runtime)
            if runtime.settings.seed_demo_data:
                return await _seed_demo(runtime)
            return None
        finally:
            await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _LOCK})
