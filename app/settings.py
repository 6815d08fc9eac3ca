"""Typed settings read from the environment (prefix ``AUDIT_``) and an optional ``.env`` file.

In development, secrets that are not given are generated once and persisted under the data dir, so
every process and every restart agrees on them. Outside development they are required.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field, model_validator

if TYPE_CHECKING:
    from jobs.config import JobsConfig
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Environment", "Settings", "load_settings", "write_private"]


class Environment(StrEnum):
    development = "development"
    test = "test"
    production = "production"


class Settings(BaseSettings):
    """Every knob of the service; each field maps to one ``AUDIT_<NAME>`` variable."""

    model_config = SettingsConfigDict(env_prefix="AUDIT_", env_file=".env", extra="ignore")

    env: Environment = Environment.development
    """Deployment environment; secrets are only generated in development and test."""
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    """Granian worker processes for ``auditlog serve``."""
    data_dir: Path = Path(".auditlog")
    """Where the embedded PostgreSQL, generated dev secrets, demo credentials and the lake live."""

    database_url: str | None = None
    """API connection (a role that owns nothing and cannot bypass RLS). Unset: embedded PostgreSQL."""
    migration_database_url: str | None = None
    """Owner connection used by ``auditlog migrate``; defaults to ``database_url``'s server as owner."""
    db_pool_size: int = 10
    db_pool_max_overflow: int = 10
    read_statement_timeout_ms: int = Field(default=30_000, ge=1)
    """Longest a read statement (list, search, get) may run, waiting for locks included; past it PostgreSQL
    cancels it and the request answers ``503`` with ``Retry-After``, so one costly search cannot hold a read
    connection indefinitely."""
    allow_private_urls: bool = False
    """Let alert webhooks and export destinations reach loopback, link-local, private and metadata addresses."""
    alert_retry_delay_seconds: float = Field(default=2.0, gt=0)
    """First retry delay of a failed alert delivery; it doubles on each retry (at most 5 minutes)."""
    alert_sweep_seconds: float = Field(default=5.0, gt=0)
    """How often the worker re-evaluates every tenant's alert rules besides the commit notifications."""
    export_schedule_tick_seconds: float = Field(default=30.0, gt=0, le=3600)
    """How often the worker looks for scheduled-export windows to deliver (and retries that are due)."""
    export_schedule_close_lag_seconds: float = Field(default=60.0, ge=0, le=3600)
    """How long after a window's end it may close: a bound on the time from an event's ``received_at`` to its
    transaction starting, and on the clock skew between API and worker hosts (``app.export_schedules.windows``)."""
    export_schedule_retry_delay_seconds: float = Field(default=30.0, gt=0)
    """First retry delay of a failed scheduled-export window; it doubles on each retry (at most an hour)."""
    stream_buffer_events: int = Field(default=10_000, ge=1, le=1_000_000)
    """The live stream's in-memory window per tenant (per API process): its most recent events, shared by its
    subscribers. A subscriber further behind reads from PostgreSQL until it is back inside."""
    stream_stall_seconds: float = Field(default=3.0, gt=0, le=300)
    """A live-stream client behind the window that takes no data for this long is cut (with the position to
    resume from)."""
    stream_ping_seconds: float = Field(default=20.0, gt=0)
    """Quiet time after which a live stream sends a ping (WebSocket frame, SSE comment)."""
    embedded_postgres: bool = False
    """Set internally when ``database_url`` points at the embedded server."""

    redis_url: str | None = None
    """Redis for the job queue and shared rate-limit budgets; unset: PostgreSQL queue, in-memory limits."""
    run_worker_in_process: bool | None = None
    """Run the SAQ worker inside the API process; default: yes with the embedded database."""

    master_key: str | None = None
    """Base64 32-byte key that wraps every tenant data key (AES-256-GCM)."""
    jwt_signing_keys: str | None = None
    """Comma-separated ``kid:secret`` pairs; the first signs, all verify (rotation)."""
    jwt_issuer: str = "auditlog"
    jwt_audience: str = "auditlog-api"
    access_token_ttl_seconds: int = 900
    refresh_token_ttl_seconds: int = 30 * 24 * 3600
    operator_password: str | None = None
    """Password of user ``operator`` of tenant ``platform``; generated in development when unset."""
    checkpoint_signing_keys: str | None = None
    """Comma-separated Ed25519 note signer keys (``PRIVATE+KEY+<name>+<hash>+<base64>``, ``auditlog
    new-checkpoint-key`` makes one), newest first: the first signs checkpoints, all are listed by
    ``/.well-known/auditlog/checkpoint-key`` (rotation). Required in production (a verifiable log that is
    silently off is worse than a refused start); generated into ``secrets.json`` in development; unset in
    tests: no checkpoints are signed and the key route answers 503."""
    checkpoint_origin: str = "auditlog.example"
    """A tenant's checkpoints name ``<checkpoint_origin>/<tenant id>`` as their log (origin line)."""
    checkpoint_interval_seconds: float = Field(default=0.5, gt=0, le=10)
    """How long the integrator gathers new events before adding them to the tree and signing a checkpoint."""

    trusted_proxies: str = ""
    """Comma-separated addresses or networks (CIDR) of reverse proxies whose ``X-Forwarded-For`` is believed;
    empty: the address a request arrives from is the client's (``app.web.proxies``)."""

    rate_limit_log_routes: int = 10_000
    """Requests per minute per tenant and caller on ``/api/v1/logs...``."""
    rate_limit_other_routes: int = 100
    """Requests per minute per tenant and caller on every other route."""
    failed_auth_per_minute: int = Field(default=30, ge=1)
    """Failed authentications (bad token or API key, failed login) per minute per client address; past it,
    that address gets ``429`` with ``Retry-After`` before its credentials are checked."""

    max_event_bytes: int = 64 * 1024
    max_bulk_bytes: int = 64 * 1024 * 1024
    max_request_bytes: int = Field(default=16 * 1024, ge=1024)
    """Body limit of every route but ingest (``/auth/token`` included); larger bodies answer 413."""
    max_json_depth: int = Field(default=32, ge=2, le=256)
    """Deepest nesting of objects/arrays a JSON body may have (the body itself is level 1); deeper → 400."""
    lake_url: str | None = None
    s3_endpoint_url: str | None = None
    lake_export_interval_seconds: int = Field(default=300, ge=60)
    """How often the scheduled lake export runs (rounded to whole minutes)."""
    llm_model: str | None = None
    demo_data: bool | None = None
    """Seed the sample tenants on a fresh development database; default: yes in development."""
    log_level: str = "INFO"
    log_json: bool = True
    access_log: bool = True
    """One ``auditlog.access`` line per request (method, path, status, duration, tenant, request id, client)."""
    password_hash_time_cost: int = 2
    password_hash_memory_kib: int = 19_456

    @model_validator(mode="after")
    def _check_trusted_proxies(self) -> Settings:
        from app.web.proxies import parse_networks

        try:
            parse_networks(self.trusted_proxies)
        except ValueError as exc:
            raise ValueError(f"AUDIT_TRUSTED_PROXIES: {exc}") from None
        return self

    @model_validator(mode="after")
    def _check_checkpoint_keys(self) -> Settings:
        if self.checkpoint_signing_keys:
            from app.verifiable.note import NoteSigner

            try:
                for part in self.checkpoint_signing_keys.split(","):
                    if part.strip():
                        NoteSigner.parse(part.strip())
            except ValueError as exc:
                raise ValueError(f"AUDIT_CHECKPOINT_SIGNING_KEYS: {exc}") from None
        return self

    @model_validator(mode="after")
    def _require_secrets_outside_development(self) -> Settings:
        if self.env is Environment.production:
            missing = [
                name
                for name in (
                    "master_key",
                    "jwt_signing_keys",
                    "operator_password",
                    "database_url",
                    "checkpoint_signing_keys",
                )
                if not getattr(self, name)
            ]
            if missing:
                names = ", ".join(f"AUDIT_{m.upper()}" for m in missing)
                raise ValueError(f"production requires {names}")
        return self

    def jobs_config(self) -> JobsConfig:
        """What the job queue and worker need (``jobs`` does not read these settings itself)."""
        from jobs.config import JobsConfig

        if not self.database_url or not self.master_key:
            raise ValueError("the job worker needs AUDIT_DATABASE_URL and AUDIT_MASTER_KEY")
        return JobsConfig(
            database_url=self.database_url,
            master_key=self.master_key,
            redis_url=self.redis_url,
            pool_size=max(2, self.db_pool_size // 2),
            max_overflow=max(2, self.db_pool_max_overflow // 2),
            lake_url=self.lake_location,
            s3_endpoint_url=self.s3_endpoint_url,
            lake_export_interval_seconds=self.lake_export_interval_seconds,
        )

    @property
    def is_dev(self) -> bool:
        return self.env is not Environment.production

    @property
    def lake_location(self) -> str:
        return self.lake_url or str((self.data_dir / "lake").resolve())

    @property
    def worker_in_process(self) -> bool:
        if self.run_worker_in_process is not None:
            return self.run_worker_in_process
        return self.embedded_postgres

    @property
    def seed_demo_data(self) -> bool:
        if self.demo_data is not None:
            return self.demo_data
        return self.env is Environment.development

    def jwt_keys(self) -> list[tuple[str, bytes]]:
        """``[(kid, secret), ...]``, the signing key first."""
        assert self.jwt_signing_keys, "jwt_signing_keys must be set (ensure_dev_secrets in development)"
        keys: list[tuple[str, bytes]] = []
        for part in self.jwt_signing_keys.split(","):
            kid, _, secret = part.strip().partition(":")
            if not kid or len(secret) < 32:
                raise ValueError("AUDIT_JWT_SIGNING_KEYS entries must be 'kid:secret' with 32+ char secrets")
            keys.append((kid, secret.encode()))
        return keys

    def _new_checkpoint_key(self) -> str:
        from app.verifiable.note import generate_signer_key

        return generate_signer_key(self.checkpoint_origin)

    def ensure_dev_secrets(self) -> Settings:
        """Fill unset secrets from ``<data_dir>/secrets.json``, generating it once (development only)."""
        if not self.is_dev:
            return self
        self.data_dir.mkdir(parents=True, exist_ok=True)
        path = self.data_dir / "secrets.json"
        stored: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
        generated = {
            "master_key": lambda: base64.urlsafe_b64encode(os.urandom(32)).decode(),
            "jwt_signing_keys": lambda: f"k1:{secrets.token_urlsafe(48)}",
            "operator_password": lambda: secrets.token_urlsafe(18),
            "checkpoint_signing_keys": self._new_checkpoint_key,
        }
        changed = False
        for name, make in generated.items():
            if name not in stored:
                stored[name] = make()
                changed = True
            if not getattr(self, name):
                setattr(self, name, stored[name])
        if changed:
            write_private(path, json.dumps(stored, indent=2))
        return self


def write_private(path: Path, content: str) -> None:
    """Write a file only its owner can read (created 0600, never readable by others even for a moment)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(content)
    tmp.replace(path)


def load_settings(**overrides: Any) -> Settings:
    """Read the environment (and ``.env``), apply overrides, and fill development secrets."""
    return Settings(**overrides).ensure_dev_secrets()
