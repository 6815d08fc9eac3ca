"""``GET /api/v1/logs/export?format=ndjson&proofs=true``: the tenant's whole log with an inclusion proof per event.

One line per leaf of the latest checkpoint's tree, in leaf order (``seq`` 1..N), then a last line
``{"checkpoint": "<signed note>"}``. An event's line is the event as ``GET /logs/{id}`` shows it plus a
``proof`` object: ``leaf_index``, ``leaf_hash``, ``hashes`` (the audit path to the checkpoint's root) and
``payload``, the stored ciphertext (base64, or null) that the leaf encodes, so ``auditlog verify`` can
recompute every leaf without any key. An event whose payload no longer decrypts (its data key destroyed) shows
``metadata``/``before_state``/``after_state`` as null with ``"payload_unreadable": true``; its leaf still
verifies. A leaf whose event is no longer in the database (removed by retention or cleanup) is a line
``{"erased": true, "proof": {...}}`` that carries only the leaf hash. Proofs come from the tiles.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import msgspec

from app.logs.query import SELECT_COLUMNS
from app.logs.rows import EventWire
from app.verifiable import merkle
from app.verifiable.service import StoredCheckpoint, load_tiles
from app.verifiable.tiles import node_reader, tiles_needed
from db.crypto import DecryptionError

__all__ = ["BATCH", "ProofOut", "export_lines"]

BATCH = 1024


class ProofOut(msgspec.Struct, kw_only=True):
    leaf_index: int
    leaf_hash: str
    hashes: list[str]
    payload: str | None = None


class _Erased(msgspec.Struct, kw_only=True):
    erased: bool
    proof: ProofOut


_encode = msgspec.json.Encoder().encode


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


def _proofs(node: merkle.NodeFn, first: int, last: int, size: int) -> list[tuple[bytes, list[bytes]]]:
    return [(node(0, i), merkle.inclusion_proof(node, i, size)) for i in range(first, last)]


def _event_line(row: Any, tenant_id: uuid.UUID, open_payload: Any, proof: ProofOut) -> bytes:
    (event_id, action, resource_type, resource_id, user_id, session_id, request_id, severity,
     timestamp, ip_address, user_agent, message, received_at, blob) = row  # fmt: skip
    parts: dict[str, Any] = {"metadata": None, "before_state": None, "after_state": None}
    unreadable = False
    if blob is not None:
        try:
            parts.update(msgspec.json.decode(open_payload(bytes(blob), event_id)))
        except (DecryptionError, msgspec.DecodeError):
            unreadable = True
    event = EventWire(
        event_id, str(tenant_id), action, resource_type, resource_id, user_id, session_id, request_id, severity,
        timestamp, ip_address, user_agent, message, msgspec.Raw(_encode(parts.get("before_state"))),
        msgspec.Raw(_encode(parts.get("after_state"))), msgspec.Raw(_encode(parts.get("metadata"))), received_at,
    )  # fmt: skip
    body = _encode(event)[:-1]
    if unreadable:
        body += b',"payload_unreadable":true'
    proof.payload = None if blob is None else _b64(bytes(blob))
    return body + b',"proof":' + _encode(proof) + b"}\n"


async def export_lines(
    pg: asyncpg.Connection, tenant_id: uuid.UUID, keyring: Any, checkpoint: StoredCheckpoint
) -> AsyncIterator[bytes]:
    """The export's lines against ``checkpoint`` (``pg`` bound to the tenant). ``keyring``: the tenant's."""
    size = checkpoint.tree_size
    open_payload = keyring.opener("payload")
    for first in range(0, size, BATCH):
        last = min(size, first + BATCH)
        keys = tiles_needed(lambda node: _proofs(node, first, last, size))  # noqa: B023 - run at once
        proofs = _proofs(node_reader(await load_tiles(pg, tenant_id, keys)), first, last, size)
        rows = await pg.fetch(
            f"SELECT seq, {SELECT_COLUMNS} FROM audit_logs"
            " WHERE tenant_id = $1 AND seq > $2 AND seq <= $3 ORDER BY seq",
            tenant_id,
            first,
            last,
        )
        by_seq = {int(r[0]): r for r in rows}
        out: list[bytes] = []
        for i, (leaf, path) in enumerate(proofs, start=first):
            proof = ProofOut(leaf_index=i, leaf_hash=_b64(leaf), hashes=[_b64(h) for h in path])
            row = by_seq.get(i + 1)
            if row is None:
                out.append(_encode(_Erased(erased=True, proof=proof)) + b"\n")
            else:
                out.append(_event_line(tuple(row)[1:], tenant_id, open_payload, proof))
        yield b"".join(out)
    yield _encode({"checkpoint": checkpoint.note}) + b"\n"


PROOFS_PARAM = {
    "name": "proofs",
    "in": "query",
    "required": False,
    "description": "`true` (with `format=ndjson` and no filters): the whole log, each line with a `proof` object "
    "(`leaf_index`, `leaf_hash`, `hashes`, `payload`: the stored ciphertext the leaf encodes) against the latest "
    'checkpoint, which the last line `{"checkpoint": ...}` carries; `auditlog verify` checks it offline. Erased '
    'events are lines `{"erased": true, "proof": ...}`. 404 when no checkpoint is signed yet.',
    "schema": {"type": "boolean", "default": False},
}
