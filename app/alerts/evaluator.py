"""Evaluating alert rules on the committed stream, in the job worker (never in a request).

The worker listens to ``auditlog_events`` (the write path's commit notifications: tenant and position, no
content) and, at most every ``debounce`` seconds per tenant, evaluates that tenant's enabled rules that are
not cooling down; a sweep every ``sweep_seconds`` covers notifications missed while reconnecting and windows
that close without new events. A rule fires when at least ``threshold`` matching events were received in its
window (and since the rule exists). Firing is a conditional ``UPDATE`` of ``last_fired_at`` (so several
workers fire a rule once per cool-down), a stored firing whose body carries up to 100 of the matching events
(as ``GET /logs/{id}`` shows them; encrypted, since it holds event data), and a ``deliver_alert`` job.

Counting stays cheap on a large tenant: the worker remembers, per tenant, which log position it had seen at
which time, so a window's count starts from a position (the per-partition ``seq`` index) instead of
scanning the tenant's events by ``received_at``, which has no index.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from app.alerts.delivery import BODY_FIELD, deliver_alert, enqueue_delivery
from app.alerts.rules import match_filters
from app.logs.ingest import NOTIFY_CHANNEL
from app.logs.rows import rows_to_wire
from app.settings import Settings
from db.blind_index import search_index
from db.event_filters import COLUMN_COUNT, SELECT_COLUMNS, Binder, filter_predicate
from db.listener import listen_forever
from db.urls import plain_dsn

__all__ = ["AlertEvaluator", "AlertsPlugin", "alerts_plugin"]

log = logging.getLogger(__name__)

MAX_EVENTS_IN_BODY = 100
MAX_COUNT = 100_000
FLOOR_SCAN = 50_000
"""Without a remembered position older than a window, the newest this many events are searched for its start."""


async def _raw(session: AsyncSession) -> asyncpg.Connection:
    """The asyncpg connection under a tenant-bound session (same transaction, same tenant binding)."""
    conn = await session.connection()
    raw = await conn.get_raw_connection()
    return raw.driver_connection  # type: ignore[return-value]


@dataclass
class _Seen:
    marks: deque[tuple[float, int]] = field(default_factory=deque)
    """(wall time, the tenant's last position then), oldest first."""

    def floor(self, since: float) -> int | None:
        best = None
        for at, seq in self.marks:
            if at <= since:
                best = seq
            else:
                break
        return best

    def add(self, at: float, seq: int, keep_seconds: float) -> None:
        self.marks.append((at, seq))
        while len(self.marks) > 1 and self.marks[1][0] <= at - keep_seconds:
            self.marks.popleft()


class AlertEvaluator:
    def __init__(
        self,
        ctx: dict[str, Any],
        dsn: str,
        *,
        sweep_seconds: float = 5.0,
        debounce: float = 0.2,
    ) -> None:
        self._ctx = ctx
        self._dsn = dsn
        self._sweep = sweep_seconds
        self._debounce = debounce
        self._seen: dict[uuid.UUID, _Seen] = {}
        self._due: dict[uuid.UUID, asyncio.Task[None]] = {}
        self._again: set[uuid.UUID] = set()
        """Tenants notified while their evaluation ran: evaluated once more right after it."""
        self._tasks: list[asyncio.Task[None]] = []
        self.fired = 0

    # -- scheduling ----------------------------------------------------------------------------------
    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        with contextlib.suppress(ValueError):
            self.poke(uuid.UUID(payload.partition(":")[0]))

    def poke(self, tenant_id: uuid.UUID) -> None:
        """Evaluate the tenant's rules after the debounce; a poke during an evaluation makes one more round."""
        task = self._due.get(tenant_id)
        if task is None or task.done():
            self._due[tenant_id] = asyncio.create_task(self._later(tenant_id), name=f"alerts-{tenant_id}")
        else:
            self._again.add(tenant_id)

    async def _later(self, tenant_id: uuid.UUID) -> None:
        while True:
            await asyncio.sleep(self._debounce)
            self._again.discard(tenant_id)  # what was poked so far is committed: this round reads it
            try:
                await self.evaluate(tenant_id)
            except Exception:
                log.exception("evaluating the alert rules of tenant %s failed", tenant_id)
            if tenant_id not in self._again:
                return

    async def _sweeper(self) -> None:
        while True:
            await asyncio.sleep(self._sweep)
            try:
                async with self._ctx["db"].system() as session:
                    tenants = await (await _raw(session)).fetch("SELECT * FROM auditlog_alert_tenants()")
                for row in tenants:
                    self.poke(row[0])
            except Exception:
                log.exception("alert sweep failed")

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(
                listen_forever(self._dsn, NOTIFY_CHANNEL, self._on_notify, name="alert listener"),
                name="alerts-listener",
            ),
            asyncio.create_task(self._sweeper(), name="alerts-sweeper"),
        ]

    async def stop(self) -> None:
        tasks = [*self._tasks, *self._due.values()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # -- evaluation ----------------------------------------------------------------------------------
    async def evaluate(self, tenant_id: uuid.UUID) -> int:
        """Evaluate the tenant's rules now; returns how many fired."""
        firings: list[uuid.UUID] = []
        async with self._ctx["db"].tenant(tenant_id) as session:
            conn = await _raw(session)
            rules = await conn.fetch(
                "SELECT id, name, match, threshold, window_seconds, created_at FROM alert_rules"
                " WHERE tenant_id = $1 AND enabled AND (last_fired_at IS NULL"
                "  OR last_fired_at <= now() - make_interval(secs => cooldown_seconds))",
                tenant_id,
            )
            last = int(await conn.fetchval("SELECT last_seq FROM tenant_log_seq WHERE tenant_id = $1", tenant_id) or 0)
            now_wall = time.time()
            seen = self._seen.setdefault(tenant_id, _Seen())
            keep = max([r["window_seconds"] for r in rules] or [60]) + 60
            for rule in rules:
                fired = await self._evaluate_rule(session, conn, tenant_id, dict(rule), seen, now_wall)
                if fired is not None:
                    firings.append(fired)
            seen.add(now_wall, last, keep)
        queue = self._ctx["worker"].queue
        for firing_id in firings:
            await enqueue_delivery(queue, tenant_id, firing_id, 1, 0)
        self.fired += len(firings)
        return len(firings)

    async def _floor(self, conn: asyncpg.Connection, tenant_id: uuid.UUID, seen: _Seen, since: datetime) -> int:
        remembered = seen.floor(since.timestamp() - 2.0)  # received_at is set a moment before the commit
        if remembered is not None:
            return remembered
        value = await conn.fetchval(
            "SELECT min(seq) - 1 FROM (SELECT seq, received_at FROM audit_logs WHERE tenant_id = $1"
            f" ORDER BY seq DESC LIMIT {FLOOR_SCAN}) recent WHERE received_at >= $2",
            tenant_id,
            since,
        )
        return int(value) if value is not None else 2**62

    async def _evaluate_rule(
        self,
        session: AsyncSession,
        conn: asyncpg.Connection,
        tenant_id: uuid.UUID,
        rule: dict[str, Any],
        seen: _Seen,
        now_wall: float,
    ) -> uuid.UUID | None:
        match = rule["match"] if isinstance(rule["match"], dict) else msgspec.json.decode(rule["match"])
        try:
            filters = match_filters(match)
        except Exception:
            log.error("alert %s of tenant %s has an invalid match; skipped", rule["id"], tenant_id)
            return None
        now = datetime.fromtimestamp(now_wall, UTC)
        window_start = max(now - timedelta(seconds=rule["window_seconds"]), rule["created_at"])
        lo = await self._floor(conn, tenant_id, seen, window_start)
        keyring = await self._ctx["keyrings"].get(session, tenant_id)
        search = search_index(keyring) if filters.q is not None else None
        bind = Binder()
        where = (
            f"tenant_id = {bind(tenant_id)} AND seq > {bind(lo)} AND received_at >= {bind(window_start)}"
            f" AND {filter_predicate(tenant_id, filters, bind, search=search)}"
        )
        count = int(
            await conn.fetchval(
                f"SELECT count(*) FROM (SELECT 1 FROM audit_logs WHERE {where} LIMIT {MAX_COUNT}) matching",
                *bind.args,
            )
        )
        if count < rule["threshold"]:
            return None
        claimed = await conn.fetchval(
            "UPDATE alert_rules SET last_fired_at = now() WHERE tenant_id = $1 AND id = $2 AND enabled"
            " AND (last_fired_at IS NULL OR last_fired_at <= now() - make_interval(secs => cooldown_seconds))"
            " RETURNING id",
            tenant_id,
            rule["id"],
        )
        if claimed is None:
            return None  # another worker fired it first
        rows = await conn.fetch(
            f"SELECT {SELECT_COLUMNS} FROM audit_logs WHERE {where} ORDER BY seq DESC LIMIT {MAX_EVENTS_IN_BODY}",
            *bind.args,
        )
        events = rows_to_wire([r[:COLUMN_COUNT] for r in rows], keyring)
        body = msgspec.json.encode(
            {
                "alert_id": str(rule["id"]),
                "name": rule["name"],
                "count": count,
                "window_start": window_start,
                "window_end": now,
                "events": events,
            }
        )
        firing_id = uuid.uuid4()
        await conn.execute(
            "INSERT INTO alert_firings (tenant_id, id, alert_id, window_start, window_end, event_count, body)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7)",
            tenant_id,
            firing_id,
            rule["id"],
            window_start,
            now,
            count,
            keyring.encrypt(body, event_id=firing_id, field=BODY_FIELD),
        )
        log.info("alert %s of tenant %s fired (%d events)", rule["id"], tenant_id, count)
        return firing_id


class AlertsPlugin:
    """What the job worker runs for alerts: the ``deliver_alert`` task and the evaluator beside it."""

    def __init__(self, dsn: str, *, allow_private_urls: bool, retry_delay: float, sweep_seconds: float) -> None:
        self.functions: Sequence[Callable[..., Any]] = [deliver_alert]
        self._dsn = dsn
        self._allow_private = allow_private_urls
        self._retry_delay = retry_delay
        self._sweep = sweep_seconds

    async def startup(self, ctx: dict[str, Any]) -> None:
        ctx["allow_private_urls"] = self._allow_private
        ctx["alert_retry_delay"] = self._retry_delay
        evaluator = AlertEvaluator(ctx, self._dsn, sweep_seconds=self._sweep)
        evaluator.start()
        ctx["alert_evaluator"] = evaluator

    async def shutdown(self, ctx: dict[str, Any]) -> None:
        evaluator = ctx.pop("alert_evaluator", None)
        if evaluator is not None:
            await evaluator.stop()


def alerts_plugin(settings: Settings) -> AlertsPlugin:
    """The alerts part of the job worker, configured from the API's settings."""
    return AlertsPlugin(
        plain_dsn(settings.database_url or ""),
        allow_private_urls=settings.allow_private_urls,
        retry_delay=settings.alert_retry_delay_seconds,
        sweep_seconds=settings.alert_sweep_seconds,
    )
