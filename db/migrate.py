"""Run the alembic migrations in ``db/migrations`` through advanced-alchemy's alembic commands.

Migrations always run over the owner's connection; the API role never runs DDL.
"""

from __future__ import annotations

from pathlib import Path

from advanced_alchemy.alembic.commands import AlembicCommands
from advanced_alchemy.config import AlembicAsyncConfig, EngineConfig, SQLAlchemyAsyncConfig
from sqlalchemy.pool import NullPool

__all__ = ["MIGRATIONS_DIR", "downgrade", "upgrade"]

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def _commands(owner_url: str) -> AlembicCommands:
    config = SQLAlchemyAsyncConfig(
        connection_string=owner_url,
        engine_config=EngineConfig(poolclass=NullPool),
        alembic_config=AlembicAsyncConfig(
            script_location=str(MIGRATIONS_DIR),
            script_config="",
            version_table_name="alembic_version",
        ),
    )
    return AlembicCommands(sqlalchemy_config=config)


def upgrade(owner_url: str, revision: str = "head") -> None:
    """Upgrade to ``revision``. Call from synchronous code (alembic runs its own event loop)."""
    _commands(owner_url).upgrade(revision=revision)


def downgrade(owner_url: str, revision: str) -> None:
    _commands(owner_url).downgrade(revision=revision)
