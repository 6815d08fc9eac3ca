"""Run a multi-statement SQL script inside a migration over asyncpg's simple-query protocol.

asyncpg prepares every statement it is given, and a prepared statement holds one command; migrations
are written as plain SQL scripts (functions, policies, grants), so they go through ``Connection.execute``
with no arguments, which PostgreSQL runs as a simple query in the migration's transaction.
"""

from __future__ import annotations

from alembic import op
from sqlalchemy.util import await_

__all__ = ["run_script"]


def run_script(sql: str) -> None:
    driver = op.get_bind().connection.driver_connection
    await_(driver.execute(sql))  # type: ignore[union-attr]
