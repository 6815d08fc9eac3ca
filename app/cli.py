"""The ``auditlog`` command: serve, worker, migrate."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import warnings
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.settings import Settings, load_settings

if TYPE_CHECKING:
    from app.verifiable.note import Checkpoint, NoteVerifier
    from db.embedded import EmbeddedPostgres

__all__ = ["main"]

log = logging.getLogger("auditlog.cli")


async def _bootstrap(settings: object) -> Path | None:
    from app.bootstrap import bootstrap
    from app.runtime import build_runtime

    runtime = await build_runtime(settings)  # type: ignore[arg-type]
    try:
        return await bootstrap(runtime)
    finally:
        await runtime.close()


def _command_settings() -> Settings:
    """The settings from the environment, with logging configured by them (every command but serve)."""
    from app.web.observability import configure_logging

    settings = load_settings()
    configure_logging(settings.log_level, json_lines=settings.log_json)
    return settings


@contextlib.contextmanager
def _database(settings: Settings, *, run_migrations: bool = False) -> Iterator[EmbeddedPostgres | None]:
    """``settings`` pointed at a ready database for the block, which gets the embedded server started when
    none is configured (``None`` otherwise); that server is let go of after the block."""
    from app.database import prepare_database

    embedded = prepare_database(settings, run_migrations=run_migrations)
    try:
        yield embedded
    finally:
        _release(embedded)


@contextlib.asynccontextmanager
async def _job_context(settings: Settings) -> AsyncIterator[dict[str, Any]]:
    """What a job task reads of the worker's context (``db``, ``keyrings``), on an engine of its own."""
    from app.runtime import make_engine
    from db.crypto import LocalMasterKey
    from db.keyring import KeyringStore
    from db.tenancy import TenantDB

    engine = make_engine(settings)
    try:
        yield {"db": TenantDB(engine), "keyrings": KeyringStore(LocalMasterKey.from_setting(settings.master_key or ""))}
    finally:
        await engine.dispose()


def cmd_serve(args: argparse.Namespace) -> int:
    from granian import Granian
    from granian.constants import Interfaces
    from granian.log import LogLevels

    from app.database import export_to_environment
    from app.instance import InstanceConflict, claim_instance
    from app.web.observability import configure_logging, logging_dictconfig

    settings = load_settings(**_serve_options(args))
    configure_logging(settings.log_level, json_lines=settings.log_json)
    try:  # one serve per data dir and per address, held until this process ends
        instance = claim_instance(settings.data_dir.resolve(), settings.host, settings.port)
    except InstanceConflict as exc:
        log.error("refusing to start: %s", exc)
        return 1
    try:
        with _database(settings, run_migrations=True) as embedded:
            credentials = asyncio.run(_bootstrap(settings))
            export_to_environment(settings)
            where = "embedded PostgreSQL in " + str(settings.data_dir) if embedded else "the configured database"
            log.info("serving http://%s:%s on %s", settings.host, settings.port, where)
            log.info("operator password (tenant platform, user operator): %s", operator_password_source(settings))
            if credentials:
                log.info("demo credentials in %s", credentials)
            Granian(
                "app.asgi:create_app_from_env",
                factory=True,
                address=settings.host,
                port=settings.port,
                interface=Interfaces.ASGI,
                workers=settings.workers,
                log_enabled=True,
                log_level=LogLevels(settings.log_level.lower()),
                log_dictconfig=logging_dictconfig(settings.log_level, json_lines=settings.log_json),
                backlog=2048,
            ).serve()
    finally:
        instance.release()
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from app.worker_plugins import worker_plugins
    from jobs.worker import run_worker

    settings = _command_settings()
    with _database(settings):
        run_worker(settings.jobs_config(), plugins=worker_plugins(settings))
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    settings = _command_settings()
    if settings.database_url and not settings.migration_database_url:
        settings.migration_database_url = settings.database_url
    with _database(settings, run_migrations=True):
        asyncio.run(_bootstrap(settings))
        log.info("database migrated to head")
    return 0


def cmd_rotate_keys(args: argparse.Namespace) -> int:
    """Give every tenant a new data key now (the scheduled job does it weekly)."""
    from app.audit_trail.jobs_plugin import service_events_plugin
    from jobs.tasks import rotate_data_keys

    settings = _command_settings()

    async def rotate() -> int:
        async with _job_context(settings) as ctx:
            events = service_events_plugin(settings)  # each rotation recorded in its tenant's log
            await events.startup(ctx)
            try:
                return await rotate_data_keys(ctx, max_age_days=0, trigger="cli")
            finally:
                await events.shutdown(ctx)

    with _database(settings):
        log.info("rotated the data key of %s tenants", asyncio.run(rotate()))
    return 0


def cmd_reindex_search(args: argparse.Namespace) -> int:
    """Re-index the search column of events written before the blind index, to the end (the worker does it
    in the background, a minute at a time): see ``jobs.search_reindex``."""
    from jobs.search_reindex import reindex_search

    settings = _command_settings()

    async def reindex() -> int:
        async with _job_context(settings) as ctx:
            return await reindex_search(ctx, budget_seconds=float("inf"))

    with _database(settings):
        log.info("search re-index: %s rows rewritten", asyncio.run(reindex()))
    return 0


def cmd_export_lake(args: argparse.Namespace) -> int:
    """Export every tenant's new events to the Parquet lake now (the scheduled job runs every few minutes)."""
    return _run_lake_command("export-lake")


def cmd_apply_retention(args: argparse.Namespace) -> int:
    """Archive, then remove, every tenant's events older than its retention now (the job runs daily)."""
    return _run_lake_command("apply-retention")


def _run_lake_command(name: str) -> int:
    from app.retention.commands import run_apply_retention, run_export_lake

    settings = _command_settings()
    run = run_export_lake if name == "export-lake" else run_apply_retention
    with _database(settings):
        totals = asyncio.run(run(settings))
    print(json.dumps({"command": name, **totals}))
    return 1 if totals.get("failed") else 0


def cmd_verify(args: argparse.Namespace) -> int:
    """Check an export with proofs, or a tenant's lake folder, offline (no server, no settings): 0 when
    everything holds, 1 when something does not, 2 when the input cannot be read."""
    from app.verifiable.verify import parse_verifier_keys, verify_export

    key = Path(args.key)
    target = Path(args.file)
    try:
        verifiers = parse_verifier_keys(key.read_text() if key.is_file() else args.key)
        if target.is_dir():
            return _verify_lake(target, verifiers, args)
        if args.checkpoint:
            raise ValueError("--checkpoint is for a lake folder; an export carries its checkpoint")
        with open(target, encoding="utf-8") as handle:
            report = verify_export(handle, verifiers, origin=args.origin)
    except (OSError, ValueError) as exc:
        print(f"auditlog verify: {exc}")
        return 2
    held = f"{report.events} events and {report.erased} erased leaves"
    return _print_report(report.failures, (), report.checkpoint if report.ok else None, held)


def cmd_new_checkpoint_key(args: argparse.Namespace) -> int:
    """Print a new checkpoint signer key (secret: for AUDIT_CHECKPOINT_SIGNING_KEYS) and its verifier key."""
    from app.verifiable.note import NoteSigner, generate_signer_key

    signer = NoteSigner.parse(generate_signer_key(args.name))
    print(f"AUDIT_CHECKPOINT_SIGNING_KEYS={signer.text()}")
    print(f"# verifier key (public, served at /.well-known/auditlog/checkpoint-key): {signer.verifier.text()}")
    return 0


def _verify_lake(folder: Path, verifiers: list[NoteVerifier], args: argparse.Namespace) -> int:
    from app.verifiable.verify_lake import verify_lake

    checkpoint = Path(args.checkpoint).read_text(encoding="utf-8") if args.checkpoint else None
    report = verify_lake(folder, verifiers, checkpoint=checkpoint, origin=args.origin)
    held = f"{report.covered} lake rows ({report.files} files)"
    return _print_report(report.failures, report.notes, report.checkpoint if report.ok else None, held)


def _print_report(failures: Sequence[str], notes: Sequence[str], checkpoint: Checkpoint | None, held: str) -> int:
    """Print what ``auditlog verify`` found: each failure and note, then ``OK`` with what ``held`` against the
    ``checkpoint`` (given only when everything held), else ``FAILED``; the exit status."""
    for failure in failures:
        print(f"FAIL {failure}")
    for note in notes:
        print(f"NOTE {note}")
    if checkpoint is not None:
        print(f"OK {held} verified against the checkpoint of {checkpoint.origin} at tree size {checkpoint.tree_size}")
        return 0
    print(f"FAILED: {len(failures)} problem(s)")
    return 1


def _release(embedded: EmbeddedPostgres | None) -> None:
    """Let go of the embedded server: stopped only by its owner, and only when no other process uses it."""
    if embedded is not None:
        embedded.release()


def operator_password_source(settings: Settings) -> str:
    """Where the operator's password in force comes from, for the start-up line (never the password).

    The generated one in ``secrets.json`` applies only while ``AUDIT_OPERATOR_PASSWORD`` does not override
    it: bootstrap sets the operator's password to whichever is in force at each start.
    """
    path = settings.data_dir / "secrets.json"
    if settings.is_dev and path.exists():
        try:
            stored = json.loads(path.read_text()).get("operator_password")
        except (OSError, ValueError):
            stored = None
        if stored and stored == settings.operator_password:
            return f"generated, in {path} (set AUDIT_OPERATOR_PASSWORD to choose it)"
    return "the value of AUDIT_OPERATOR_PASSWORD"


def _serve_options(args: argparse.Namespace) -> dict[str, object]:
    """``serve --host/--port/--workers``: given ones win over ``AUDIT_HOST/PORT/WORKERS``."""
    return {name: getattr(args, name) for name in ("host", "port", "workers") if getattr(args, name, None) is not None}


def main(argv: list[str] | None = None) -> int:
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    parser = argparse.ArgumentParser(prog="auditlog", description="Audit Log API")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the API (embedded PostgreSQL when AUDIT_DATABASE_URL is unset)")
    serve.add_argument("--host", help="address to listen on (default: AUDIT_HOST, 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default: AUDIT_PORT, 8000)")
    serve.add_argument("--workers", type=int, help="Granian worker processes (default: AUDIT_WORKERS, 1)")
    sub.add_parser("worker", help="run the background job worker")
    sub.add_parser("migrate", help="apply database migrations and create the operator")
    sub.add_parser("rotate-keys", help="give every tenant a new data key now")
    sub.add_parser("export-lake", help="export every tenant's new events to the Parquet lake now")
    sub.add_parser("reindex-search", help="rewrite the search column of events stored before the blind index")
    sub.add_parser("apply-retention", help="archive and remove events past each tenant's retention now")
    verify = sub.add_parser(
        "verify", help="check an export with proofs, or a tenant's lake folder, offline against the checkpoint key"
    )
    verify.add_argument(
        "file", help="the export (GET /api/v1/logs/export?format=ndjson&proofs=true) or a lake folder tenant_id=<id>"
    )
    verify.add_argument("--key", required=True, help="a verifier key, or a file of them (one a line)")
    verify.add_argument("--origin", help="require the checkpoint of this log (<name>/<tenant id>)")
    verify.add_argument(
        "--checkpoint", help="lake folder only: a signed checkpoint file you kept (default: the folder's checkpoint)"
    )
    new_key = sub.add_parser(
        "new-checkpoint-key", help="print a new checkpoint signing key (put it first in AUDIT_CHECKPOINT_SIGNING_KEYS)"
    )
    new_key.add_argument("--name", default="auditlog.example", help="the key's name (default: auditlog.example)")
    args = parser.parse_args(argv)
    if args.command == "verify":  # offline: no settings, no logging set-up
        return cmd_verify(args)
    if args.command == "new-checkpoint-key":
        return cmd_new_checkpoint_key(args)
    handler = {
        "serve": cmd_serve,
        "worker": cmd_worker,
        "migrate": cmd_migrate,
        "rotate-keys": cmd_rotate_keys,
        "export-lake": cmd_export_lake,
        "reindex-search": cmd_reindex_search,
        "apply-retention": cmd_apply_retention,
    }[args.command]
    from app.web.observability import capture_warnings, configure_logging

    configure_logging()  # JSON from the first line, even if reading the settings fails; commands reapply it
    capture_warnings()
    try:
        return handler(args)
    except Exception:
        log.exception("auditlog %s failed", args.command)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
