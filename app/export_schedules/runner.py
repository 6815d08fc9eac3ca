"""Delivering one closed window of one schedule: read it, send it, record it.

One run, under a per-schedule PostgreSQL advisory lock (held by the export's own connection, so a worker that
dies drops it), so two workers never deliver a schedule at once:

1. in one short transaction: load the schedule (credentials decrypted), check the window is closed
   (``windows.fence_settled``; a window before the cursor was closed when it was delivered), mark runs left
   ``running`` by a worker that died as failed, and record this run as ``running`` with its attempt number;
2. read the window's events through the analytics engine (the lake plus the hot tail, one snapshot, flat
   memory): the schedule's ``GET /logs`` filters plus ``received_at`` in ``[start, end)`` and the position
   bounds (``windows.seq_floor`` .. the tenant's last position), in the schedule's format;
3. send them (``destinations``): S3 object ``<prefix>/<window start>.<format>`` or one signed gzip POST
   carrying the window's idempotency key;
4. record the read as an ``EXPORT`` event of the tenant (``user_id`` ``export_schedule:<id>``);
5. in one transaction: the run ``delivered`` (or ``failed`` with the error), and, when the window is the
   schedule's cursor, the cursor moved to the next window (or the attempt counted and the retry time set:
   ``retry_delay * 2**(n-1)`` seconds, 1-1.25 of jitter, at most ``MAX_RETRY_DELAY``).

A crash between 3 and 5 leaves the cursor where it was: the next run sends the same window again, to the same
object or with the same idempotency key, so the destination still holds one copy.
"""

from __future__ import annotations

import contextlib
import logging
import random
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final, Literal, cast

import asyncpg
import msgspec

from analytics.engine import AnalyticsEngine
from analytics.export_formats import MEDIA_TYPES
from app.audit_trail.service_events import record_service_event
from app.export_schedules.destinations import (
    Delivered,
    DeliveryFailed,
    check_destination,
    display,
    gzip_to_file,
    post_file,
    temp_file,
    upload_s3,
)
from app.export_schedules.schemas import S3Destination
from app.export_schedules.store import LoadedSchedule, load_schedule, schedule_filters
from app.export_schedules.windows import fence_settled, seq_floor, window_end, window_name
from app.exports.access import ExportProgress, export_bytes
from app.outbound.url_guard import UnsafeURL
from db.event_filters import READ_AUDIT
from db.keyring import KeyringStore
from db.tenancy import TenantDB

__all__ = ["MAX_RETRY_DELAY", "RunResult", "RunnerConfig", "deliver_window", "idempotency_key", "retry_delay_of"]

log = logging.getLogger(__name__)

MAX_RETRY_DELAY: Final = 3600.0
BATCH_ROWS: Final = {"csv": 8192, "ndjson": 8192, "parquet": 65_536}
"""Rows per chunk of a window's bytes. A text chunk (and the copies made of it on its way out) is what a delivery
holds in memory, so 8,192 rather than the download route's 65,536; a Parquet chunk is a row group of the file, kept
at 65,536 rows so the tenant's readers get reasonable row groups (its bytes are compressed and small anyway)."""
_LOCK_SQL: Final = "SELECT pg_try_advisory_lock(hashtextextended($1, 0))"
_UNLOCK_SQL: Final = "SELECT pg_advisory_unlock(hashtextextended($1, 0))"

Status = Literal["delivered", "failed", "busy", "not_closed", "skipped", "gone"]


@dataclass
class RunnerConfig:
    """What a run needs; the worker plugin builds one, and so do the tests and the benchmark."""

    db: TenantDB
    keyrings: KeyringStore
    lag: timedelta
    retry_delay: float
    allow_private: bool
    engine: AnalyticsEngine = field(default_factory=AnalyticsEngine)
    lake: Any = None
    """The lake store (``analytics.lake.LakeStore``), or a callable returning it, or ``None`` (no lake)."""
    audit: Any = None
    """Something with ``services["ingest"]`` (an ingest writer) to record the ``EXPORT`` reads."""

    def lake_store(self) -> Any:
        return self.lake() if callable(self.lake) else self.lake


@dataclass(frozen=True)
class RunResult:
    status: Status
    window_start: datetime
    window_end: datetime | None = None
    rows: int = 0
    bytes: int = 0
    error: str | None = None


def retry_delay_of(attempt: int, base: float) -> float:
    """Seconds to wait after failed attempt ``attempt`` (1-based): doubling, up to 25 % jitter, capped."""
    return min(MAX_RETRY_DELAY, base * 2 ** (attempt - 1)) * random.uniform(1.0, 1.25)  # noqa: S311 - jitter


def idempotency_key(schedule_id: uuid.UUID, start: datetime) -> str:
    """The same for every delivery of one window of one schedule (a UUID, like alert delivery ids)."""
    return str(uuid.uuid5(schedule_id, window_name(start)))


async def _raw(session: Any) -> asyncpg.Connection:
    conn = await session.connection()
    raw = await conn.get_raw_connection()
    return raw.driver_connection  # type: ignore[no-any-return]


@contextlib.asynccontextmanager
async def _locked_connection(db: TenantDB, schedule_id: uuid.UUID) -> AsyncIterator[asyncpg.Connection | None]:
    """A connection holding the schedule's advisory lock, or ``None`` when another worker holds it."""
    name = f"export_schedule:{schedule_id}"
    async with db.engine.connect() as sa_conn:
        pg: asyncpg.Connection = (await sa_conn.get_raw_connection()).driver_connection  # type: ignore[assignment]
        if not await pg.fetchval(_LOCK_SQL, name):
            yield None
            return
        try:
            yield pg
        finally:
            try:
                await pg.fetchval(_UNLOCK_SQL, name)
            except BaseException:  # never hand a connection still holding the lock back to the pool
                with contextlib.suppress(Exception):
                    await sa_conn.invalidate()
                raise


_STALE = """
UPDATE export_schedule_runs SET status = 'failed', error = 'interrupted (the worker stopped during the run)',
  finished_at = now()
WHERE tenant_id = $1 AND schedule_id = $2 AND status = 'running'
"""
_INSERT_RUN = """
INSERT INTO export_schedule_runs (tenant_id, id, schedule_id, window_start, window_end, trigger, attempt, status,
  seq_after, seq_through)
VALUES ($1, $2, $3, $4, $5, $6,
  1 + (SELECT count(*) FROM export_schedule_runs WHERE tenant_id = $1 AND schedule_id = $3 AND window_start = $4),
  'running', $7, $8)
RETURNING attempt
"""
_FINISH_RUN = """
UPDATE export_schedule_runs SET status = $3, rows = $4, bytes = $5, http_status = $6, error = $7, location = $8,
  finished_at = now()
WHERE tenant_id = $1 AND id = $2
"""
_ADVANCE = """
UPDATE export_schedules SET next_window_start = $4, attempts = 0, retry_at = NULL, last_error = NULL,
  last_delivered_at = now()
WHERE tenant_id = $1 AND id = $2 AND next_window_start = $3
"""
_FAILED = """
UPDATE export_schedules SET attempts = attempts + 1, retry_at = $4, last_error = $5
WHERE tenant_id = $1 AND id = $2 AND next_window_start = $3
"""


async def _begin(
    cfg: RunnerConfig,
    tenant_id: uuid.UUID,
    schedule_id: uuid.UUID,
    start: datetime,
    *,
    trigger: str,
    expect_cursor: bool,
) -> tuple[LoadedSchedule, uuid.UUID, int, int, int] | RunResult:
    """Step 1: the schedule, the run's id, attempt and position bounds, or why there is no run."""
    async with cfg.db.tenant(tenant_id) as session:
        conn = await _raw(session)
        schedule = await load_schedule(conn, cfg.keyrings, tenant_id, schedule_id)
        if schedule is None:
            return RunResult("gone", start)
        if expect_cursor and (schedule.next_window_start != start or not schedule.enabled):
            return RunResult("skipped", start)
        end = window_end(start, schedule.every)
        if start >= schedule.next_window_start and not await fence_settled(conn, tenant_id, schedule_id, end, cfg.lag):
            return RunResult("not_closed", start, end)
        await conn.execute(_STALE, tenant_id, schedule_id)
        lo = await seq_floor(conn, tenant_id, start, cfg.lag)
        hi = int(await conn.fetchval("SELECT last_seq FROM tenant_log_seq WHERE tenant_id = $1", tenant_id) or 0)
        run_id = uuid.uuid4()
        attempt = await conn.fetchval(_INSERT_RUN, tenant_id, run_id, schedule_id, start, end, trigger, lo, hi)
    return schedule, run_id, int(attempt), lo, hi


async def _send(
    cfg: RunnerConfig,
    pg: asyncpg.Connection,
    schedule: LoadedSchedule,
    start: datetime,
    end: datetime,
    lo: int,
    hi: int,
    progress: ExportProgress,
    after_upload: Callable[[], Awaitable[None]] | None,
) -> Delivered:
    """Steps 2 and 3."""
    dest = schedule.destination
    try:
        await check_destination(dest, allow_private=cfg.allow_private)  # before reading anything
    except UnsafeURL as exc:
        field = "endpoint_url" if isinstance(dest, S3Destination) else "url"
        raise DeliveryFailed(f"refused: {field} {exc}") from None
    filters = msgspec.structs.replace(
        schedule_filters(schedule.filters), received_from=start, received_before=end, seq_after=lo, seq_through=hi
    )
    source = cast("AsyncGenerator[bytes, None]", export_bytes(
        pg, schedule.tenant_id, cfg.keyrings, cfg.engine, cfg.lake_store(),
        filters=filters, fmt=schedule.format, progress=progress, batch_rows=BATCH_ROWS[schedule.format],
    ))  # fmt: skip
    media_type = MEDIA_TYPES[schedule.format]
    if isinstance(dest, S3Destination):
        name = f"{window_name(start)}.{schedule.format}"
        async with contextlib.aclosing(source) as chunks:  # the read's snapshot ends here, whatever happens
            return await upload_s3(
                dest, name, chunks, media_type, allow_private=cfg.allow_private, after_upload=after_upload
            )
    with temp_file() as body:
        async with contextlib.aclosing(source) as chunks:
            size = await gzip_to_file(chunks, body)
        key = idempotency_key(schedule.id, start)
        headers = {
            "Idempotency-Key": key,
            "X-Auditlog-Delivery": key,
            "X-Auditlog-Schedule": str(schedule.id),
            "X-Auditlog-Window-Start": window_name(start),
            "X-Auditlog-Window-End": window_name(end),
            "X-Auditlog-Event-Count": str(progress.rows),
        }
        return await post_file(
            dest, body, size, secret=schedule.secret, content_type=media_type, headers=headers,
            allow_private=cfg.allow_private, after_upload=after_upload,
        )  # fmt: skip


async def _audit(
    cfg: RunnerConfig,
    schedule: LoadedSchedule,
    start: datetime,
    end: datetime,
    *,
    trigger: str,
    attempt: int,
    progress: ExportProgress,
    delivered: Delivered | None,
) -> None:
    """Step 4: the read, recorded in the tenant's log (an attempt that read nothing is not a read)."""
    if cfg.audit is None or (delivered is None and progress.rows == 0):
        return
    details = {
        "route": "export-schedule",
        "schedule_id": str(schedule.id),
        "window_start": window_name(start),
        "window_end": window_name(end),
        "format": schedule.format,
        "filters": schedule.filters,
        "destination": msgspec.to_builtins(display(schedule.destination)),
        "count": progress.rows,
        "bytes": delivered.bytes if delivered is not None else progress.bytes,
        "delivered": delivered is not None,
        "trigger": trigger,
        "attempt": attempt,
    }
    try:
        await record_service_event(
            cfg.audit,
            tenant_id=schedule.tenant_id,
            actor=f"export_schedule:{schedule.id}",
            action="EXPORT",
            resource_type=READ_AUDIT,
            resource_id=str(schedule.id),
            details=details,
            message=f"EXPORT scheduled export {schedule.name!r} window {window_name(start)} ({progress.rows} events)",
        )
    except Exception:
        log.exception(
            "the EXPORT read of schedule %s (tenant %s) could not be recorded", schedule.id, schedule.tenant_id
        )


async def _finish(
    cfg: RunnerConfig,
    schedule: LoadedSchedule,
    run_id: uuid.UUID,
    start: datetime,
    end: datetime,
    *,
    now: datetime,
    progress: ExportProgress,
    delivered: Delivered | None,
    failure: DeliveryFailed | None,
) -> datetime | None:
    """Step 5; returns the retry time when the cursor's window failed."""
    tid = schedule.tenant_id
    retry_at = None
    async with cfg.db.tenant(tid) as session:
        conn = await _raw(session)
        if delivered is not None:
            await conn.execute(_FINISH_RUN, tid, run_id, "delivered", progress.rows, delivered.bytes,
                               delivered.http_status, None, delivered.location)  # fmt: skip
            await conn.execute(_ADVANCE, tid, schedule.id, start, end)
        else:
            assert failure is not None
            error = str(failure)
            await conn.execute(_FINISH_RUN, tid, run_id, "failed", progress.rows, None, failure.http_status, error,
                               None)  # fmt: skip
            if start == schedule.next_window_start:
                retry_at = now + timedelta(seconds=retry_delay_of(schedule.attempts + 1, cfg.retry_delay))
                await conn.execute(_FAILED, tid, schedule.id, start, retry_at, error)
    return retry_at


async def deliver_window(
    cfg: RunnerConfig,
    tenant_id: uuid.UUID,
    schedule_id: uuid.UUID,
    start: datetime,
    *,
    now: datetime,
    trigger: str = "schedule",
    expect_cursor: bool = True,
    after_upload: Callable[[], Awaitable[None]] | None = None,
) -> RunResult:
    """Deliver the window starting at ``start`` (see the module docstring). ``expect_cursor``: only if it is still
    the schedule's next window (what the scheduler wants; a re-run of an earlier window passes ``False``)."""
    async with _locked_connection(cfg.db, schedule_id) as pg:
        if pg is None:
            return RunResult("busy", start)
        begun = await _begin(cfg, tenant_id, schedule_id, start, trigger=trigger, expect_cursor=expect_cursor)
        if isinstance(begun, RunResult):
            return begun
        schedule, run_id, attempt, lo, hi = begun
        end = window_end(start, schedule.every)
        progress = ExportProgress()
        delivered: Delivered | None = None
        failure: DeliveryFailed | None = None
        try:
            delivered = await _send(cfg, pg, schedule, start, end, lo, hi, progress, after_upload)
        except DeliveryFailed as exc:
            failure = exc
        except Exception as exc:
            log.exception(
                "scheduled export %s of tenant %s, window %s failed", schedule_id, tenant_id, window_name(start)
            )
            failure = DeliveryFailed(f"internal error ({type(exc).__name__})")
        await _audit(cfg, schedule, start, end, trigger=trigger, attempt=attempt, progress=progress,
                     delivered=delivered)  # fmt: skip
        retry_at = await _finish(cfg, schedule, run_id, start, end, now=now, progress=progress, delivered=delivered,
                                 failure=failure)  # fmt: skip
    if failure is not None:
        log.warning(
            "scheduled export %s of tenant %s: window %s attempt %d failed (%s)%s",
            schedule_id, tenant_id, window_name(start), attempt, failure,
            f"; next try at {retry_at:%Y-%m-%dT%H:%M:%SZ}" if retry_at else "",
        )  # fmt: skip
        return RunResult("failed", start, end, progress.rows, 0, str(failure))
    assert delivered is not None
    log.info(
        "scheduled export %s of tenant %s: window %s delivered (%d events, %d bytes)",
        schedule_id, tenant_id, window_name(start), progress.rows, delivered.bytes,
    )  # fmt: skip
    return RunResult("delivered", start, end, progress.rows, delivered.bytes)
