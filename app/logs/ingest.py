"""The ingest writer: group commit of validated events, one transaction per tenant per group.

Concurrent POST /logs (and small bulk) submissions are collected for a short window, grouped per tenant,
and each tenant's group is written in ONE transaction on the writer's own asyncpg pool (four round trips):
BEGIN with the tenant bound (``db.tenancy.bind_tenant``, the only place that sets it), claim the
Idempotency-Keys (if any), COPY the rows into the session's TEMP staging table (COPY cannot target a table
with row-level security), then one statement that takes the tenant's next ``seq`` range (the row lock
makes seq order commit order), ``INSERT .. SELECT``s into ``audit_logs`` (RLS WITH CHECK applies there),
vaults the encrypted PII originals and ``NOTIFY auditlog_events, '<tenant_id>:<max_seq>'`` for live tails
and exporters; then COMMIT. Nothing of the metadata reaches PostgreSQL in clear, the staging table included:
the payload is encrypted, the search column is the tenant's blind index (``db.blind_index``), and the stored
Idempotency-Key responses are sealed (``app.logs.idempotency.seal``). Each submitter's future resolves only
after the commit, so a 201 means durable. The window only applies while other groups are in flight, so
an idle writer adds no latency. A failed group is retried submission by submission, so one
submission can never fail another; what still fails gets ``WriterUnavailable`` (a 503), never a half
write. Large bulk requests skip the batcher and are written directly, the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from app.logs.idempotency import Claim, StoredResponse, seal, unseal
from app.logs.prepare import PreparedEvent
from db.blind_index import search_index
from db.crypto import TenantKeyring
from db.keyring import KeyringStore
from db.tenancy import TenantDB, bind_tenant
from jobs.idempotency import TTL_SQL

__all__ = [
    "NOTIFY_CHANNEL",
    "STAGING_COLUMNS",
    "IngestWriter",
    "Outcome",
    "WriterUnavailable",
]

log = logging.getLogger(__name__)

NOTIFY_CHANNEL = "auditlog_events"
STAGING = "ingest_staging"
STAGING_COLUMNS = (
    "ord",
    "id",
    "timestamp",
    "received_at",
    "action",
    "resource_type",
    "resource_id",
    "user_id",
    "session_id",
    "request_id",
    "severity",
    "ip_address",
    "user_agent",
    "message",
    "payload",
    "search",
    "pii",
)
_CREATE_STAGING = f"""
CREATE TEMP TABLE IF NOT EXISTS {STAGING} (
  ord integer NOT NULL, id uuid NOT NULL, "timestamp" timestamptz NOT NULL, received_at timestamptz NOT NULL,
  action text NOT NULL, resource_type text NOT NULL, resource_id text, user_id text, session_id text,
  request_id text, severity text NOT NULL, ip_address inet, user_agent text, message text, payload bytea,
  search text, pii bytea
) ON COMMIT DELETE ROWS
"""
_CLAIM = f"""
INSERT INTO idempotency_keys (tenant_id, caller, key, request_hash, response)
SELECT $1::uuid, u.c, u.k, u.h, u.r
FROM unnest($2::uuid[], $3::text[], $4::bytea[], $5::bytea[]) AS u(c, k, h, r) ORDER BY u.c, u.k
ON CONFLICT (tenant_id, caller, key) DO UPDATE
  SET request_hash = EXCLUDED.request_hash, response = EXCLUDED.response, created_at = now()
  WHERE idempotency_keys.created_at < now() - {TTL_SQL}
RETURNING caller, key
"""
_STORED = """SELECT i.caller, i.key, i.request_hash, i.response
FROM idempotency_keys i JOIN unnest($2::uuid[], $3::text[]) AS u(c, k) ON i.caller = u.c AND i.key = u.k
WHERE i.tenant_id = $1"""
_COLUMNS = """tenant_id, "timestamp", id, seq, received_at, action, resource_type, resource_id, user_id,
  session_id, request_id, severity, ip_address, user_agent, message, payload, search"""
# One statement after the COPY: take the seq range (the row lock is held until COMMIT, so seq order is
# commit order), insert the events (RLS WITH CHECK applies), vault the PII, and NOTIFY the new max seq.
_STORE = f"""
WITH next AS (
  UPDATE tenant_log_seq SET last_seq = last_seq + $2 WHERE tenant_id = $1 RETURNING last_seq
), events AS (
  INSERT INTO audit_logs ({_COLUMNS})
  SELECT $1::uuid, s."timestamp", s.id, (SELECT last_seq FROM next) - $2 + s.ord, s.received_at, s.action,
    s.resource_type, s.resource_id, s.user_id, s.session_id, s.request_id, s.severity, s.ip_address,
    s.user_agent, s.message, s.payload, to_tsvector('simple', coalesce(s.message, '')) || s.search::tsvector
  FROM pg_temp.{STAGING} s ORDER BY s.ord
  RETURNING 1
)__PII__
SELECT next.last_seq, pg_notify('{NOTIFY_CHANNEL}', $1::text || ':' || next.last_seq) FROM next
"""
_STORE_PII = _STORE.replace(
    "__PII__",
    f""", pii AS (
  INSERT INTO event_pii (tenant_id, event_id, findings)
  SELECT $1::uuid, s.id, s.pii FROM pg_temp.{STAGING} s WHERE s.pii IS NOT NULL
  RETURNING 1
)""",
)
_STORE = _STORE.replace("__PII__", "")


class WriterUnavailable(Exception):
    """The events could not be stored (database failure or shutdown); nothing was written."""


@dataclass(slots=True, frozen=True)
class Outcome:
    """``replay`` is set when the submission's Idempotency-Key was already used: nothing new was stored."""

    replay: StoredResponse | None = None


@dataclass(slots=True, eq=False)
class _Submission:
    tenant_id: uuid.UUID
    events: list[PreparedEvent]
    claim: Claim | None
    future: asyncio.Future[Outcome] = field(repr=False)


class IngestWriter:
    """The per-process group-commit writer (``runtime.services["ingest"]``), on its own asyncpg pool."""

    def __init__(
        self,
        dsn: str,
        db: TenantDB,
        keyrings: KeyringStore,
        *,
        window_seconds: float = 0.002,
        max_rows: int = 2000,
        max_flushes: int = 4,
        max_connections: int = 6,
        direct_threshold: int = 500,
    ) -> None:
        self.dsn = dsn
        self.db = db
        self.keyrings = keyrings
        self.window = window_seconds
        self.max_rows = max_rows
        self.direct_threshold = direct_threshold
        self.max_connections = max_connections
        self._queue: asyncio.Queue[_Submission | None] = asyncio.Queue()
        self._flush_slots = asyncio.Semaphore(max_flushes)
        self._flushes: set[asyncio.Task[None]] = set()
        self._runner: asyncio.Task[None] | None = None
        self._pool: asyncpg.Pool | None = None
        self._closed = False
        self._busy = 0  # transactions open right now

    async def start(self) -> None:
        self._pool = await asyncpg.create_pool(
            self.dsn,
            min_size=0,  # connect lazily: the API starts even while the database is still coming up
            max_size=self.max_connections,
            init=_init_connection,
            reset=_keep_session,
            server_settings={"application_name": "auditlog-ingest"},
        )
        self._runner = asyncio.create_task(self._run(), name="ingest-writer")

    async def stop(self) -> None:
        """Stop accepting, write everything already queued, and wait for in-flight groups to commit."""
        if self._closed:
            return
        self._closed = True
        self._queue.put_nowait(None)
        if self._runner is not None:
            with contextlib.suppress(Exception):
                await self._runner
        if self._flushes:
            await asyncio.gather(*self._flushes, return_exceptions=True)
        while not self._queue.empty():  # only if the runner died: never leave a submitter hanging
            item = self._queue.get_nowait()
            if item is not None:
                _fail(item, WriterUnavailable("the writer is shutting down"))
        if self._pool is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._pool.close(), timeout=10)

    async def submit(self, tenant_id: uuid.UUID, events: list[PreparedEvent], claim: Claim | None = None) -> Outcome:
        """Store ``events`` atomically; returns after COMMIT. Raises ``WriterUnavailable``."""
        if self._closed or self._runner is None or self._runner.done():
            raise WriterUnavailable("the writer is not running")
        loop = asyncio.get_running_loop()
        sub = _Submission(tenant_id, events, claim, loop.create_future())
        if len(events) > self.direct_threshold:
            await self._write_one_tenant(tenant_id, [sub])
        else:
            self._queue.put_nowait(sub)
        return await sub.future

    # -- batching ------------------------------------------------------------------------------------
    async def _run(self) -> None:
        stopping = False
        while not stopping:
            await self._flush_slots.acquire()
            try:
                first = await self._queue.get()
            except BaseException:
                self._flush_slots.release()
                raise
            if first is None:
                self._flush_slots.release()
                return
            batch, rows = [first], len(first.events)
            # Wait for company only when other groups are in flight: an idle writer commits at once
            # (lowest latency); a busy one gathers up to ``window`` seconds or ``max_rows`` rows.
            if rows < self.max_rows and self.window > 0 and self._busy:
                await asyncio.sleep(self.window)
            while rows < self.max_rows and not self._queue.empty():
                item = self._queue.get_nowait()
                if item is None:
                    stopping = True
                    break
                batch.append(item)
                rows += len(item.events)
            task = asyncio.create_task(self._flush(batch))
            self._flushes.add(task)
            task.add_done_callback(self._flushes.discard)

    async def _flush(self, batch: list[_Submission]) -> None:
        try:
            by_tenant: dict[uuid.UUID, list[_Submission]] = {}
            for sub in batch:
                by_tenant.setdefault(sub.tenant_id, []).append(sub)
            await asyncio.gather(*(self._write_one_tenant(t, subs) for t, subs in by_tenant.items()))
        finally:
            self._flush_slots.release()

    async def _write_one_tenant(self, tenant_id: uuid.UUID, subs: list[_Submission]) -> None:
        assert self._pool is not None
        committed = False
        try:
            keyring = await self._keyring(tenant_id)
            async with self._pool.acquire() as conn:
                self._busy += 1
                try:
                    outcomes = await self._transaction(conn, keyring, tenant_id, subs)
                finally:
                    self._busy -= 1
                committed = True
                for sub, outcome in zip(subs, outcomes, strict=True):  # answer before the pool reset
                    if not sub.future.done():
                        sub.future.set_result(outcome)
        except Exception as exc:
            if committed:  # only the connection's release failed; the answers are already out
                log.warning("releasing an ingest connection failed: %s", exc)
                return
            if len(subs) > 1:  # isolate: one submission must never fail the others
                log.warning("group write for tenant %s failed (%s); retrying one by one", tenant_id, exc)
                for sub in subs:
                    await self._write_one_tenant(tenant_id, [sub])
                return
            log.exception("ingest write for tenant %s failed", tenant_id)
            _fail(subs[0], WriterUnavailable("the events could not be stored"))

    # -- one transaction -----------------------------------------------------------------------------
    async def _transaction(
        self, conn: asyncpg.Connection, keyring: TenantKeyring, tenant_id: uuid.UUID, subs: list[_Submission]
    ) -> list[Outcome]:
        async with bind_tenant(conn, tenant_id):
            replays = await _claim_keys(conn, keyring, tenant_id, subs)
            winners = [s for s in subs if id(s) not in replays]
            records = _records(keyring, [e for s in winners for e in s.events])
            if records:
                await _write_events(conn, tenant_id, records)
        return [Outcome(replays.get(id(s))) for s in subs]

    async def _keyring(self, tenant_id: uuid.UUID) -> TenantKeyring:
        """The tenant's keyring: cached by ``KeyringStore``; a miss loads it in a tenant-bound transaction."""
        keyring = self.keyrings.cached(tenant_id)
        if keyring is not None:
            return keyring
        async with self.db.tenant(tenant_id) as session:
            return await self.keyrings.get(session, tenant_id)


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.execute(_CREATE_STAGING)


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Pool reset: asyncpg already rolled back any open transaction; keep the TEMP staging table."""


async def _claim_keys(
    conn: asyncpg.Connection, keyring: TenantKeyring, tenant_id: uuid.UUID, subs: Sequence[_Submission]
) -> dict[int, StoredResponse]:
    """Claim every key of the group. Returns, by ``id(submission)``, the stored first response of each
    submission that repeats a key of the same caller: one claimed before (by any transaction) or earlier
    in this group. Keys are scoped per caller: another caller's key of the same name is another key."""
    first: dict[tuple[uuid.UUID, str], _Submission] = {}
    for sub in subs:
        if sub.claim is not None:
            first.setdefault(sub.claim.scope, sub)
    if not first:
        return {}
    claims = sorted((s.claim for s in first.values() if s.claim is not None), key=lambda c: c.scope)
    sealed = [seal(keyring, c) for c in claims]
    won_rows = await conn.fetch(
        _CLAIM,
        tenant_id,
        [c.caller for c in claims],
        [c.key for c in claims],
        [h for h, _ in sealed],
        [r for _, r in sealed],
    )
    won = {(r["caller"], r["key"]) for r in won_rows}
    replaying = [s for s in subs if s.claim is not None and (s.claim.scope not in won or first[s.claim.scope] is not s)]
    if not replaying:
        return {}
    scopes = sorted({s.claim.scope for s in replaying if s.claim is not None})
    rows = await conn.fetch(_STORED, tenant_id, [c for c, _ in scopes], [k for _, k in scopes])
    stored = {
        (r["caller"], r["key"]): unseal(keyring, r["caller"], r["key"], bytes(r["request_hash"]), bytes(r["response"]))
        for r in rows
    }
    out: dict[int, StoredResponse] = {}
    for s in replaying:
        assert s.claim is not None
        if s.claim.scope not in stored:  # purged between claim and read: let the retry claim it afresh
            raise RuntimeError("idempotency key vanished while claiming")
        out[id(s)] = stored[s.claim.scope]
    return out


def _records(keyring: TenantKeyring, events: list[PreparedEvent]) -> list[tuple[Any, ...]]:
    """The staging rows: payload and PII encrypted, the metadata's words as the tenant's blind-index tokens (the
    statement adds the message's words: ``to_tsvector('simple', message)``)."""
    index = search_index(keyring)
    records = []
    for ordinal, ev in enumerate(events, start=1):
        eid = ev.out.id
        payload = keyring.encrypt(ev.payload_plain, event_id=eid, field="payload") if ev.payload_plain else None
        pii = keyring.encrypt(ev.pii_plain, event_id=eid, field="pii") if ev.pii_plain else None
        search = index.vector(ev.out.metadata)
        records.append((*ev.copy_record(ordinal), payload, search, pii))
    return records


async def _write_events(conn: asyncpg.Connection, tenant_id: uuid.UUID, records: list[tuple[Any, ...]]) -> None:
    await conn.copy_records_to_table(STAGING, records=records, columns=STAGING_COLUMNS)
    sql = _STORE_PII if any(r[-1] is not None for r in records) else _STORE
    row = await conn.fetchrow(sql, tenant_id, len(records))
    if row is None:
        raise RuntimeError(f"tenant {tenant_id} has no tenant_log_seq row")


def _fail(sub: _Submission, exc: Exception) -> None:
    if not sub.future.done():
        sub.future.set_exception(exc)
