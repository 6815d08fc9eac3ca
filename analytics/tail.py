"""The hot tail: a tenant's events not yet in the lake (``seq`` above the lake watermark), read from
PostgreSQL as Arrow record batches of ``analytics.schema``.

Rows come through a server-side cursor in ``seq`` order, ``batch_rows`` at a time, so memory stays flat
whatever the volume. Only the columns asked for are selected; the payload (one AES-GCM blob holding
``metadata``, ``before_state`` and ``after_state``) is fetched and decrypted with the tenant's keyring only
when one of those is asked for. A payload that fails authentication fails the read (as ``GET /logs`` does).

The caller holds the connection bound to the tenant inside one read-only transaction (``snapshot``): the
cursor needs it, and it pins the snapshot that the watermark was read against.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from typing import TYPE_CHECKING, Final

import asyncpg
import msgspec
import pyarrow as pa

from analytics.schema import SENSITIVE_COLUMNS, project
from db.blind_index import search_index
from db.event_filters import Binder, service_side
from db.fts import bind_search, search_source

if TYPE_CHECKING:
    from db.crypto import TenantKeyring
    from db.event_filters import LogFilters

__all__ = ["TailIntegrityError", "TailQuery", "snapshot", "tail_batches"]

_EPOCH_US = "(extract(epoch FROM {c}) * 1000000)::int8"
_SELECT: Final = {
    "id": "id",
    "seq": "seq",
    "timestamp": _EPOCH_US.format(c='"timestamp"'),
    "received_at": _EPOCH_US.format(c="received_at"),
    "ip_address": "host(ip_address)",
}


class TailIntegrityError(RuntimeError):
    """An event's encrypted payload did not authenticate (its id is in the message, for the operator)."""


class _Payload(msgspec.Struct):
    metadata: msgspec.Raw = msgspec.Raw(b"null")
    before_state: msgspec.Raw = msgspec.Raw(b"null")
    after_state: msgspec.Raw = msgspec.Raw(b"null")


_payload_decoder = msgspec.json.Decoder(_Payload)


class TailQuery:
    """The ``SELECT`` of a tenant's hot tail above ``watermark``, filtered, projected to ``columns``."""

    def __init__(
        self,
        tenant_id: uuid.UUID,
        filters: LogFilters,
        watermark: int,
        columns: tuple[str, ...] | None,
        keyring: TenantKeyring | None = None,
    ) -> None:
        """``keyring``: the tenant's, needed when ``filters.q`` is set (its blind index answers ``q``)."""
        from analytics.filters import tail_predicate

        self.schema = project(columns)
        self.names: tuple[str, ...] = tuple(self.schema.names)
        self.needs_payload = any(c in SENSITIVE_COLUMNS for c in self.names)
        bind = Binder()
        index = search_index(keyring) if filters.q is not None and keyring is not None else None
        where = tail_predicate(tenant_id, filters, bind, index)
        exprs = [_SELECT.get(c, c) for c in self.names if c not in SENSITIVE_COLUMNS]
        if self.needs_payload:
            exprs += ["id AS payload_id", "payload"]
        self.q = filters.q
        self.index = index
        table = "audit_logs" if filters.q is None else search_source(service_side(filters))
        self.sql = f"SELECT {', '.join(exprs)} FROM {table} WHERE {where} AND seq > {bind(watermark)} ORDER BY seq"
        self.args = bind.args


def _batch(query: TailQuery, rows: list[asyncpg.Record], keyring: TenantKeyring | None) -> pa.RecordBatch:
    cols = list(zip(*rows, strict=True))
    plain = [c for c in query.names if c not in SENSITIVE_COLUMNS]
    arrays: dict[str, pa.Array] = {}
    for i, name in enumerate(plain):
        field = query.schema.field(name)
        data = cols[i]
        if name == "id":
            arrays[name] = pa.array([str(v) for v in data], pa.string())
        elif name in ("timestamp", "received_at"):
            arrays[name] = pa.array(data, pa.int64()).cast(field.type)
        else:
            arrays[name] = pa.array(data, field.type)
    if query.needs_payload:
        if keyring is None:
            raise ValueError("a keyring is needed to read the sensitive columns")
        open_payload = keyring.opener("payload")
        parts: dict[str, list[str | None]] = {c: [] for c in SENSITIVE_COLUMNS}
        for event_id, blob in zip(cols[len(plain)], cols[len(plain) + 1], strict=True):
            if blob is None:
                for c in SENSITIVE_COLUMNS:
                    parts[c].append(None)
                continue
            try:
                payload = _payload_decoder.decode(open_payload(blob, event_id))
            except Exception:
                raise TailIntegrityError(f"payload of event {event_id} failed its integrity check") from None
            for c in SENSITIVE_COLUMNS:
                raw = bytes(getattr(payload, c))
                parts[c].append(None if raw == b"null" else raw.decode())
        for c in SENSITIVE_COLUMNS:
            if c in query.names:
                arrays[c] = pa.array(parts[c], pa.string())
    return pa.record_batch([arrays[n] for n in query.names], schema=query.schema)


async def tail_batches(
    conn: asyncpg.Connection, query: TailQuery, keyring: TenantKeyring | None, *, batch_rows: int = 8192
) -> AsyncGenerator[pa.RecordBatch, None]:
    """The tail's rows as record batches (inside the caller's transaction on ``conn``)."""
    if query.index is not None and query.q is not None:  # the search view applies it inside its security barrier
        await bind_search(conn, query.index, query.q, local=True)
    cursor = await conn.cursor(query.sql, *query.args)
    while True:
        rows = await cursor.fetch(batch_rows)
        if not rows:
            return
        yield _batch(query, rows, keyring)


@contextlib.asynccontextmanager
async def snapshot(conn: asyncpg.Connection, tenant_id: uuid.UUID) -> AsyncIterator[asyncpg.Connection]:
    """One ``REPEATABLE READ``, read-only transaction on ``conn`` bound to ``tenant_id``: every statement in it
    (the lake manifest, the watermark, each scan of the tail) sees the same committed events."""
    if not isinstance(tenant_id, uuid.UUID):
        raise TypeError("tenant_id must be a uuid.UUID")
    await conn.execute(
        f"BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SELECT set_config('auditlog.tenant_id', '{tenant_id}', true)"
    )
    try:
        yield conn
    finally:
        with contextlib.suppress(Exception):
            await conn.execute("ROLLBACK")
