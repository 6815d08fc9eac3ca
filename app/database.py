"""Getting a database ready before the API starts: embedded server or given URL, then migrations.

With no ``AUDIT_DATABASE_URL`` the embedded PostgreSQL under the data dir is started (or adopted),
the two roles and the database are provisioned, and the settings are pointed at it: the API connects as
``auditlog_api``, the migrations run as ``auditlog_owner``.
"""

from __future__ import annotations

import asyncio
import logging
import os

from app.settings import Settings
from db import migrate
from db.embedded import EmbeddedPostgres
from db.provision import API_ROLE, OWNER_ROLE, provision

__all__ = ["DATABASE_NAME", "export_to_environment", "prepare_database"]

log = logging.getLogger(__name__)
DATABASE_NAME = "auditlog"


def prepare_database(settings: Settings, *, run_migrations: bool = True) -> EmbeddedPostgres | None:
    """Point ``settings`` at a ready, migrated database; return the embedded server if one was started."""
    embedded: EmbeddedPostgres | None = None
    if not settings.database_url:
        settings.data_dir = settings.data_dir.resolve()
        embedded = EmbeddedPostgres(settings.data_dir)
        embedded.start()
        asyncio.run(provision(embedded.url("postgres", "postgres", driver="postgresql"), DATABASE_NAME))
        settings.database_url = embedded.url(API_ROLE, DATABASE_NAME)
        settings.migration_database_url = embedded.url(OWNER_ROLE, DATABASE_NAME)
        settings.embedded_postgres = True
    if run_migrations and settings.migration_database_url:
        migrate.upgrade(settings.migration_database_url)
    return embedded


def export_to_environment(settings: Settings) -> None:
    """Hand the resolved settings to child processes (Granian workers read the environment)."""
    os.environ["AUDIT_DATA_DIR"] = str(settings.data_dir.resolve())
    if settings.database_url:
        os.environ["AUDIT_DATABASE_URL"] = settings.database_url
    if settings.migration_database_url:
        os.environ["AUDIT_MIGRATION_DATABASE_URL"] = settings.migration_database_url
    os.environ["AUDIT_EMBEDDED_POSTGRES"] = "true" if settings.embedded_postgres else "false"
