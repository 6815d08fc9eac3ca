"""Re-index the search column of events written before the blind index (migration 0014), with the tenants' keys.

Those rows hold ``to_tsvector`` of their metadata values in clear. The migration cannot rewrite them (it has no
master key), so this job does, tenant by tenant, ``BATCH`` rows per transaction in primary-key order (no other
index needed): decrypt the payload, build the row's vector as the writer does (the message's words by
``to_tsvector('simple', ...)``, the metadata's as the tenant's tokens: ``db.blind_index``) and hand it to
``auditlog_reindex_search``, which rewrites ``search`` only, only of the tenant's old rows. Progress is kept in
``search_reindex`` (the row is locked for the batch, so two workers never interleave), so a stopped job resumes
where it was. Old rows stay searchable before and during the re-index (see the migration). Scheduled every
minute (a no-op once every tenant is done) and run at once by ``auditlog reindex-search``.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any, Final

import msgspec
from sqlalchemy import text

from db.blind_index import search_index
from db.crypto import DecryptionError
from db.keyring import KeyringStore
from db.tenancy import TenantDB

__all__ = ["BATCH", "reindex_search", "reindex_tenant_batch"]

log = logging.getLogger(__name__)

BATCH: Final = 1000
_PENDING = text("SELECT auditlog_search_reindex_pending()")
_PROGRESS = text(
    "SELECT upto_seq, after_ts, after_id FROM search_reindex WHERE tenant_id = :t AND finished_at IS NULL FOR UPDATE"
)
_ROWS = (
    "SELECT \"timestamp\", id, to_tsvector('simple', coalesce(message, ''))::text, payload FROM audit_logs"
    " WHERE tenant_id = :t AND seq <= :upto{after} ORDER BY id LIMIT :n"
)
# In the primary key's order ``(tenant_id, id, "timestamp")``, migration 0019: each batch reads on from the last
# id (``after_ts`` is kept beside it, the rewrite needs both to find a row).
_FIRST = text(_ROWS.format(after=""))
_NEXT = text(_ROWS.format(after=" AND id > :id"))
_REWRITE = text("SELECT auditlog_reindex_search(:ts, :ids, :search)")
_ADVANCE = text(
    "UPDATE search_reindex SET after_ts = :ts, after_id = :id, done_rows = done_rows + :n,"
    " finished_at = CASE WHEN :finished THEN now() END WHERE tenant_id = :t"
)


class _Payload(msgspec.Struct):
    metadata: Any = None


_payload_decoder = msgspec.json.Decoder(_Payload)


async def reindex_tenant_batch(
    db: TenantDB, keyrings: KeyringStore, tenant_id: uuid.UUID, *, batch: int = BATCH
) -> tuple[int, bool]:
    """Re-index the tenant's next ``batch`` old rows; returns (rows rewritten, whether the tenant is done)."""
    async with db.tenant(tenant_id) as session:
        progress = (await session.execute(_PROGRESS, {"t": tenant_id})).first()
        if progress is None:
            return 0, True
        upto, after_ts, after_id = progress
        args = {"t": tenant_id, "upto": upto, "n": batch}
        if after_id is None:
            rows = (await session.execute(_FIRST, args)).all()
        else:
            rows = (await session.execute(_NEXT, {**args, "id": after_id})).all()
        keyring = await keyrings.get(session, tenant_id)
        index = search_index(keyring)
        vectors = []
        for _ts, event_id, message_words, payload in rows:
            metadata = None
            if payload is not None:
                try:
                    plain = keyring.decrypt(bytes(payload), event_id=event_id, field="payload")
                    metadata = _payload_decoder.decode(plain).metadata
                except (DecryptionError, msgspec.DecodeError):
                    log.warning("search re-index: payload of event %s does not open; message words only", event_id)
            tokens = index.vector(metadata)
            vectors.append(f"{message_words} {tokens}" if message_words and tokens else message_words or tokens)
        rewritten = 0
        if rows:
            rewritten = int(
                (
                    await session.execute(
                        _REWRITE, {"ts": [r[0] for r in rows], "ids": [r[1] for r in rows], "search": vectors}
                    )
                ).scalar_one()
            )
        finished = len(rows) < batch
        last = rows[-1] if rows else (after_ts, after_id)
        await session.execute(
            _ADVANCE, {"t": tenant_id, "ts": last[0], "id": last[1], "n": rewritten, "finished": finished}
        )
        return rewritten, finished


async def reindex_search(ctx: dict[str, Any], *, budget_seconds: float = 50.0, batch: int = BATCH) -> int:
    """Re-index old rows of every pending tenant for up to ``budget_seconds``; returns the rows rewritten
    (the next run goes on where this one stopped)."""
    db: TenantDB = ctx["db"]
    keyrings: KeyringStore = ctx["keyrings"]
    async with db.system() as session:
        pending = list((await session.execute(_PENDING)).scalars().all())
    deadline = time.monotonic() + budget_seconds
    total = 0
    for tenant_id in pending:
        finished = False
        while not finished and time.monotonic() < deadline:
            rewritten, finished = await reindex_tenant_batch(db, keyrings, tenant_id, batch=batch)
            total += rewritten
        if finished:
            log.info("search re-index of tenant %s finished", tenant_id)
    if pending:
        log.info("search re-index: %d rows rewritten, %d tenants were pending", total, len(pending))
    return total
