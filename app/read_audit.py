"""Reading is audited: every read of events becomes a ``VIEW``/``EXPORT``/``QUERY`` event of the same tenant.

Recording must not slow the read path, so :meth:`ReadAuditRecorder.record_read` only appends to an
in-memory queue (no I/O, no masking). A background task flushes the queue every ``interval`` (50 ms) or
as soon as ``batch`` (500) records are waiting; it prepares records in small slices and yields to the event
loop between them, so a flush never holds up the requests being served for more than a fraction of a
millisecond at a time. Each record is prepared with the write path's own
``app.logs.prepare.prepare_event`` (masking of secrets and PII, payload, search text) and stored per
tenant through the ingest writer (``runtime.services["ingest"].submit``: same transaction shape, seq
range, encrypted payload and PII vault, ``NOTIFY`` for live tails): there is one write path. The
recorder is stopped (and flushed) before the writer at shutdown; if the writer refuses, the records are
requeued and retried.

Audit events never trigger audit events: they are written here, not through any route, and nothing in this
module reads events. A failed flush is logged and retried (up to ``MAX_ATTEMPTS`` times per record);
``stop()`` flushes what is left. The queue is bounded (``max_pending``); if the database is unreachable
long enough to fill it, the oldest records are dropped with an error log rather than exhausting memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import uuid
from collections import defaultdict, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from app.logs.prepare import FieldError, PreparedEvent, prepare_event
from app.logs.schemas import EventIn
from db.event_filters import READ_AUDIT

if TYPE_CHECKING:
    from litestar import Request

    from app.auth.principal import Principal
    from app.runtime import Runtime

__all__ = ["RESOURCE_TYPE", "ReadAuditRecorder", "get_recorder", "record_request_read", "start_read_audit"]

log = logging.getLogger("auditlog.read_audit")

RESOURCE_TYPE: Final = READ_AUDIT
SERVICE_NAME: Final = "read_audit"
MAX_ATTEMPTS: Final = 5
PREPARE_SLICE: Final = 16


@dataclass(slots=True)
class _Pending:
    tenant_id: uuid.UUID
    event: EventIn
    actor: str
    attempts: int = field(default=0)


class ReadAuditRecorder:
    """Queue of read records with a background flusher (``runtime.services["read_audit"]``)."""

    def __init__(
        self, runtime: Runtime, *, interval: float = 0.05, batch: int = 500, max_pending: int = 100_000
    ) -> None:
        self.runtime = runtime
        self.interval = interval
        self.batch = batch
        self.max_pending = max_pending
        self._pending: deque[_Pending] = deque()
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self.recorded = 0
        self.written = 0
        self.dropped = 0

    def record_read(
        self,
        principal: Principal,
        action: str,
        route: str,
        details: dict[str, Any] | None = None,
        *,
        resource_id: str | None = None,
        request_id: str | None = None,
        ip_address: str | None = None,
        user_agent: str | None = None,
    ) -> None:
        """Queue one read by ``principal`` (``action``: ``VIEW``, ``EXPORT`` or ``QUERY``). Never blocks."""
        metadata: dict[str, Any] = {"route": route, "principal_kind": principal.kind, "role": principal.role.value}
        if details:
            metadata.update(details)
        if ip_address is not None:
            try:
                ip_address = str(ipaddress.ip_address(ip_address))
            except ValueError:
                ip_address = None
        count = metadata.get("count")
        message = f"{action} {route}" + (f" ({count} events)" if isinstance(count, int) else "")
        event = EventIn(
            action=action,
            resource_type=RESOURCE_TYPE,
            resource_id=resource_id,
            user_id=principal.actor,
            session_id=str(principal.session_id) if principal.session_id else None,
            request_id=_clip(request_id, 256),
            timestamp=datetime.now(UTC),
            ip_address=ip_address,
            user_agent=_clip(user_agent, 1024),
            message=message,
            metadata=metadata,
        )
        if len(self._pending) >= self.max_pending:
            self._pending.popleft()
            self.dropped += 1
            log.error("read audit queue full (%d); dropped the oldest record", self.max_pending)
        self._pending.append(_Pending(principal.tenant_id, event, principal.actor))
        self.recorded += 1
        if len(self._pending) >= self.batch:
            self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._pending)

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="read-audit-flusher")

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.interval)
            self._wake.clear()
            try:
                await self.flush()
            except Exception:  # never let the flusher die
                log.exception("read audit flush failed")

    async def flush(self) -> int:
        """Write everything queued so far; returns how many events were stored."""
        async with self._lock:
            stored = 0
            while self._pending:
                chunk = [self._pending.popleft() for _ in range(min(len(self._pending), self.batch * 4))]
                by_tenant: dict[uuid.UUID, list[_Pending]] = defaultdict(list)
                for item in chunk:
                    by_tenant[item.tenant_id].append(item)
                failed: list[_Pending] = []
                for tenant_id, items in by_tenant.items():
                    try:
                        stored += await self._write(tenant_id, items)
                    except Exception:
                        log.exception("could not store %d read audit events of tenant %s", len(items), tenant_id)
                        failed.extend(items)
                if failed:
                    self._requeue(failed)
                    break
            self.written += stored
            return stored

    def _requeue(self, items: list[_Pending]) -> None:
        for item in reversed(items):
            item.attempts += 1
            if item.attempts >= MAX_ATTEMPTS:
                self.dropped += 1
                log.error("dropping a read audit event of tenant %s after %d attempts", item.tenant_id, item.attempts)
                continue
            self._pending.appendleft(item)

    async def _write(self, tenant_id: uuid.UUID, items: list[_Pending]) -> int:
        now = datetime.now(UTC)
        prepared: list[PreparedEvent] = []
        for n, item in enumerate(items, 1):
            if n % PREPARE_SLICE == 0:
                await asyncio.sleep(0)  # let waiting requests run between slices
            try:
                prepared.append(prepare_event(item.event, tenant_id=tenant_id, actor=item.actor, now=now))
            except FieldError as exc:
                log.error("read audit event refused (%s); not stored", exc.detail())
        if not prepared:
            return 0
        writer = self.runtime.services.get("ingest")
        if writer is None:
            raise RuntimeError("the ingest writer is not running")
        await writer.submit(tenant_id, prepared)  # raises WriterUnavailable: the caller requeues
        return len(prepared)

    async def stop(self) -> None:
        """Stop the flusher and write what is still queued."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for _ in range(MAX_ATTEMPTS):
            if not self._pending:
                break
            await self.flush()


def _clip(value: str | None, limit: int) -> str | None:
    if value is None:
        return None
    return value.replace("\x00", "")[:limit]


async def start_read_audit(runtime: Runtime) -> ReadAuditRecorder:
    """Create and start the process's recorder (called from ``app.lifecycle``)."""
    recorder = ReadAuditRecorder(runtime)
    recorder.start()
    return recorder


def get_recorder(runtime: Runtime) -> ReadAuditRecorder:
    """The running recorder; started on first use if the lifecycle did not start one (reads stay audited)."""
    recorder = runtime.services.get(SERVICE_NAME)
    if recorder is None:
        recorder = ReadAuditRecorder(runtime)
        recorder.start()
        runtime.services[SERVICE_NAME] = recorder
    return recorder  # type: ignore[no-any-return]


def record_request_read(
    request: Request[Any, Any, Any],
    runtime: Runtime,
    principal: Principal,
    action: str,
    route: str,
    details: dict[str, Any] | None = None,
    *,
    resource_id: str | None = None,
) -> None:
    """:meth:`ReadAuditRecorder.record_read` of a read served to ``request``: its request id, client address
    (validated by the recorder) and user agent go with the record."""
    client = request.client
    get_recorder(runtime).record_read(
        principal,
        action,
        route,
        details,
        resource_id=resource_id,
        request_id=request.scope.get("state", {}).get("request_id"),
        ip_address=client.host if client else None,
        user_agent=request.headers.get("user-agent"),
    )
