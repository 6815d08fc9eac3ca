"""The ``auditlog`` command: serve, worker, migrate."""

from __future__ import annotations

import argparse
import asyncio
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from app.settings import load_settings

if TYPE_CHECKING:
    from db.embedded import EmbeddedPostgres

__all__ = ["main"]


async def _bootstrap(settings: object) -> Path | None:
    from app.bootstrap import bootstrap
    from app.runtime import build_runtime

    runtime = await build_runtime(settings)  # type: ignore[arg-type]
    try:
        return await bootstrap(runtime)
    finally:
        await runtime.close()


def cmd_serve(args: argparse.Namespace) -> int:
    from granian import Granian
    from granian.constants import Interfaces

    from app.database import export_to_environment, prepare_database
    from app.observability import configure_logging

    settings = load_settings()
    configure_logging(settings.log_level, json_lines=settings.log_json)
    embedded = prepare_database(settings)
    try:
        credentials = asyncio.run(_bootstrap(settings))
        export_to_environment(settings)
        where = "embedded PostgreSQL in " + str(settings.data_dir) if embedded else "the configured database"
        print(f"auditlog: serving http://{settings.host}:{settings.port} on {where}", file=sys.stderr)
        print(
            "auditlog: operator password: AUDIT_OPERATOR_PASSWORD"
            + ("" if not settings.is_dev else f" (or {settings.data_dir / 'secrets.json'})"),
            file=sys.stderr,
        )
        if credentials:
            print(f"auditlog: demo credentials in {credentials}", file=sys.stderr)
        Granian(
            "app.asgi:create_app_from_env",
            factory=True,
            address=settings.host,
            port=settings.port,
            interface=Interfaces.ASGI,
            workers=settings.workers,
            log_enabled=True,
            backlog=2048,
        ).serve()
    finally:
        _release(embedded)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from app.database import prepare_database
    from app.observability import configure_logging
    from jobs.worker import run_worker

    settings = load_settings()
    configure_logging(settings.log_level, json_lines=settings.log_json)
    embedded = prepare_database(settings, run_migrations=False)
    try:
        run_worker(settings.jobs_config())
    finally:
        _release(embedded)
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from app.database import prepare_database

    settings = load_settings()
    if settings.database_url and not settings.migration_database_url:
        settings.migration_database_url = settings.database_url
    embedded = prepare_database(settings)
    try:
        asyncio.run(_bootstrap(settings))
        print("auditlog: database migrated to head", file=sys.stderr)
    finally:
        _release(embedded)
    return 0


def cmd_rotate_keys(args: argparse.Namespace) -> int:
    """Give every tenant a new data key now (the scheduled job does it weekly)."""
    from app.database import prepare_database
    from app.runtime import make_engine
    from db.crypto import LocalMasterKey
    from db.keyring import KeyringStore
    from db.tenancy import TenantDB
    from jobs.tasks import rotate_data_keys

    settings = load_settings()
    embedded = prepare_database(settings, run_migrations=False)

    async def rotate() -> int:
        engine = make_engine(settings)
        try:
            ctx = {
                "db": TenantDB(engine),
                "keyrings": KeyringStore(LocalMasterKey.from_setting(settings.master_key or "")),
            }
            return await rotate_data_keys(ctx, max_age_days=0)
        finally:
            await engine.dispose()

    try:
        print(f"auditlog: rotated the data key of {asyncio.run(rotate())} tenants", file=sys.stderr)
    finally:
        _release(embedded)
    return 0


def _release(embedded: EmbeddedPostgres | None) -> None:
    """Let go of the embedded server: stopped only by its owner, and only when no other process uses it."""
    if embedded is not None:
        embedded.release()


def main(argv: list[str] | None = None) -> int:
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    parser = argparse.ArgumentParser(prog="auditlog", description="Audit Log API")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="run the API (embedded PostgreSQL when AUDIT_DATABASE_URL is unset)")
    sub.add_parser("worker", help="run the background job worker")
    sub.add_parser("migrate", help="apply database migrations and create the operator")
    sub.add_parser("rotate-keys", help="give every tenant a new data key now")
    args = parser.parse_args(argv)
    handler = {"serve": cmd_serve, "worker": cmd_worker, "migrate": cmd_migrate, "rotate-keys": cmd_rotate_keys}[
        args.command
    ]
    return handler(args)


if __name__ == "__main__":
    raise SystemExit(main())
