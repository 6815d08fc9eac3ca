"""Create the two database roles and the database on a server we administer.

``auditlog_owner`` owns every object and runs the migrations; ``auditlog_api`` is what the API and the
workers log in as: it owns nothing, is not a superuser and cannot bypass row-level security. Used for the
embedded server and by the tests; on a managed server an operator runs the equivalent SQL once
(``deploy/README.md``).

Passwords are not set here: the embedded server gives both roles theirs (generated once, kept in the data
dir's ``secrets.json``, ``db.embedded``) before this runs, and ``ALTER ROLE`` below leaves them as they are;
on a managed server they are the operator's.
"""

from __future__ import annotations

import asyncpg

__all__ = ["API_ROLE", "OWNER_ROLE", "provision"]

OWNER_ROLE = "auditlog_owner"
API_ROLE = "auditlog_api"


async def provision(dsn: str, database: str, *, template: str | None = None) -> None:
    """Ensure both roles exist with the right attributes, and ``database`` exists owned by the owner.

    ``dsn`` is a plain libpq/asyncpg DSN of a superuser (or a role with CREATEROLE and CREATEDB).
    """
    conn = await asyncpg.connect(dsn)
    try:
        for role in (OWNER_ROLE, API_ROLE):
            exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role)
            verb = "ALTER" if exists else "CREATE"
            await conn.execute(
                f'{verb} ROLE "{role}" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS NOREPLICATION'
            )
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database):
            clause = f' TEMPLATE "{template}"' if template else ""
            await conn.execute(f'CREATE DATABASE "{database}" OWNER "{OWNER_ROLE}"{clause}')
    finally:
        await conn.close()
    conn = await asyncpg.connect(dsn, database=database)
    try:
        await conn.execute(f'ALTER SCHEMA public OWNER TO "{OWNER_ROLE}"')
        await conn.execute(f'REVOKE CREATE ON SCHEMA public FROM PUBLIC, "{API_ROLE}"')
        await conn.execute(f'GRANT USAGE ON SCHEMA public TO "{API_ROLE}"')
    finally:
        await conn.close()
