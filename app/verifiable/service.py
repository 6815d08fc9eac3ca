"""A tenant's tree in PostgreSQL: integrating new events as leaves, and reading proofs and checkpoints from tiles.

Every function takes an asyncpg connection already bound to the tenant (row-level security applies).
:func:`integrate` must run inside one transaction: it locks the tenant's ``merkle_trees`` row, appends the
leaves of the events past the tree's size (stopping at the first gap in ``seq``), writes the grown tiles,
the new size and root and a signed checkpoint, all or nothing, so a crash leaves no gap and no duplicate
leaf, and concurrent integrators wait for each other. Proofs read tiles only, never ``audit_logs``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import asyncpg

from app.verifiable import merkle
from app.verifiable.keys import CheckpointKeys
from app.verifiable.note import Checkpoint, format_checkpoint
from app.verifiable.tiles import TileKey, append_leaves, edge_tiles, node_reader, tiles_needed

__all__ = [
    "LEAF_SQL",
    "Integrated",
    "StoredCheckpoint",
    "checkpoint_at",
    "consistency",
    "inclusion",
    "integrate",
    "latest_checkpoint",
    "tree_size",
]

log = logging.getLogger(__name__)

DEFAULT_BATCH = 20_000


def _field(expr: str) -> str:
    """SQL of one field of the leaf encoding (``app.verifiable.leaf``): 0x00, or 0x01 ‖ int4 length ‖ bytes."""
    present = f"'\\x01'::bytea || int4send(length({expr})) || ({expr})"
    return f"CASE WHEN ({expr}) IS NULL THEN '\\x00'::bytea ELSE {present} END"


def _text(column: str) -> str:
    return _field(f"convert_to({column}, 'UTF8')")


_ENCODING = " || ".join(
    [
        "'auditlog-leaf-v1'::bytea",
        _text("tenant_id::text"),
        _text("seq::text"),
        _text("id::text"),
        _text('((extract(epoch FROM "timestamp") * 1000000)::bigint)::text'),
        _text("((extract(epoch FROM received_at) * 1000000)::bigint)::text"),
        *(_text(c) for c in ("action", "resource_type", "resource_id", "user_id", "session_id", "request_id")),
        _text("severity"),
        _field("substring(inet_send(ip_address) FROM 5)"),  # the packed address after family, bits, cidr, length
        _text("user_agent"),
        _text("message"),
        _field("payload"),
    ]
)
LEAF_SQL = (
    f"SELECT seq, sha256('\\x00'::bytea || {_ENCODING}) FROM audit_logs"
    " WHERE tenant_id = $1 AND seq > $2 AND seq <= $3 ORDER BY seq"
)
"""Each event's leaf hash, computed by PostgreSQL (in C, beside the Python process) with exactly the encoding
``app.verifiable.leaf.encode_leaf`` defines; the integration tests hold the two equal on every stored field."""


@dataclass(frozen=True)
class Integrated:
    old_size: int
    new_size: int
    root_hash: bytes


@dataclass(frozen=True)
class StoredCheckpoint:
    tree_size: int
    root_hash: bytes
    note: str


async def load_tiles(conn: asyncpg.Connection, tenant_id: uuid.UUID, keys: Iterable[TileKey]) -> dict[TileKey, bytes]:
    wanted = sorted(set(keys))
    if not wanted:
        return {}
    rows = await conn.fetch(
        "SELECT t.level, t.idx, t.hashes FROM merkle_tiles t"
        " JOIN unnest($2::smallint[], $3::bigint[]) AS w(level, idx) ON t.level = w.level AND t.idx = w.idx"
        " WHERE t.tenant_id = $1",
        tenant_id,
        [k[0] for k in wanted],
        [k[1] for k in wanted],
    )
    return {(r[0], r[1]): bytes(r[2]) for r in rows}


async def integrate(
    conn: asyncpg.Connection,
    tenant_id: uuid.UUID,
    keys: CheckpointKeys,
    *,
    batch: int = DEFAULT_BATCH,
    before_commit: Callable[[], Awaitable[None]] | None = None,
) -> Integrated:
    """Append the tenant's next events (up to ``batch``) and sign a checkpoint of the new tree, in the caller's
    transaction. ``before_commit`` runs after every write (tests use it to crash there)."""
    await conn.execute(
        "INSERT INTO merkle_trees (tenant_id, size, root_hash) VALUES ($1, 0, $2) ON CONFLICT DO NOTHING",
        tenant_id,
        merkle.EMPTY_ROOT,
    )
    size = int(await conn.fetchval("SELECT size FROM merkle_trees WHERE tenant_id = $1 FOR UPDATE", tenant_id))
    rows = await conn.fetch(LEAF_SQL, tenant_id, size, size + batch)
    leaves: list[bytes] = []
    for row in rows:
        if row[0] != size + len(leaves) + 1:
            # seq is assigned under a row lock and committed in order, so a gap does not close by itself: an
            # event removed before it was integrated. Never skip a position; say so.
            log.warning("tenant %s: event seq %d is missing; its tree waits at size %d", tenant_id,
                        size + len(leaves) + 1, size + len(leaves))  # fmt: skip
            break
        leaves.append(bytes(row[1]))
    if not leaves:
        root = await conn.fetchval("SELECT root_hash FROM merkle_trees WHERE tenant_id = $1", tenant_id)
        return Integrated(size, size, bytes(root))
    tiles = await load_tiles(conn, tenant_id, edge_tiles(size))
    new_size, changed = append_leaves(tiles, size, leaves)
    root = merkle.subtree_root(node_reader(tiles), 0, new_size)
    ordered = sorted(changed)
    await conn.execute(
        "INSERT INTO merkle_tiles (tenant_id, level, idx, width, hashes)"
        " SELECT $1, t.level, t.idx, octet_length(t.hashes) / 32, t.hashes"
        " FROM unnest($2::smallint[], $3::bigint[], $4::bytea[]) AS t(level, idx, hashes)"
        " ON CONFLICT (tenant_id, level, idx) DO UPDATE SET width = excluded.width, hashes = excluded.hashes",
        tenant_id,
        [k[0] for k in ordered],
        [k[1] for k in ordered],
        [tiles[k] for k in ordered],
    )
    await conn.execute(
        "UPDATE merkle_trees SET size = $2, root_hash = $3, updated_at = now() WHERE tenant_id = $1",
        tenant_id,
        new_size,
        root,
    )
    note = keys.signer.sign(format_checkpoint(Checkpoint(keys.origin(tenant_id), new_size, root)))
    await conn.execute(
        "INSERT INTO merkle_checkpoints (tenant_id, tree_size, root_hash, note) VALUES ($1, $2, $3, $4)",
        tenant_id,
        new_size,
        root,
        note,
    )
    if before_commit is not None:
        await before_commit()
    return Integrated(size, new_size, root)


async def tree_size(conn: asyncpg.Connection, tenant_id: uuid.UUID) -> int:
    return int(await conn.fetchval("SELECT size FROM merkle_trees WHERE tenant_id = $1", tenant_id) or 0)


def _checkpoint(row: Any) -> StoredCheckpoint | None:
    return None if row is None else StoredCheckpoint(int(row[0]), bytes(row[1]), row[2])


async def latest_checkpoint(conn: asyncpg.Connection, tenant_id: uuid.UUID) -> StoredCheckpoint | None:
    return _checkpoint(
        await conn.fetchrow(
            "SELECT tree_size, root_hash, note FROM merkle_checkpoints WHERE tenant_id = $1"
            " ORDER BY tree_size DESC LIMIT 1",
            tenant_id,
        )
    )


async def checkpoint_at(conn: asyncpg.Connection, tenant_id: uuid.UUID, size: int) -> StoredCheckpoint | None:
    return _checkpoint(
        await conn.fetchrow(
            "SELECT tree_size, root_hash, note FROM merkle_checkpoints WHERE tenant_id = $1 AND tree_size = $2",
            tenant_id,
            size,
        )
    )


async def _build(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, build: Callable[[merkle.NodeFn], list[bytes]]
) -> list[bytes]:
    tiles = await load_tiles(conn, tenant_id, tiles_needed(build))
    return build(node_reader(tiles))


async def inclusion(conn: asyncpg.Connection, tenant_id: uuid.UUID, index: int, size: int) -> tuple[bytes, list[bytes]]:
    """(leaf hash, audit path) of leaf ``index`` in the tenant's tree of ``size`` leaves (``size`` integrated)."""
    leaf = await _build(conn, tenant_id, lambda node: [node(0, index)])
    return leaf[0], await _build(conn, tenant_id, lambda node: merkle.inclusion_proof(node, index, size))


async def consistency(conn: asyncpg.Connection, tenant_id: uuid.UUID, size1: int, size2: int) -> list[bytes]:
    return await _build(conn, tenant_id, lambda node: merkle.consistency_proof(node, size1, size2))


async def root_at(conn: asyncpg.Connection, tenant_id: uuid.UUID, size: int) -> bytes:
    return (await _build(conn, tenant_id, lambda node: [merkle.subtree_root(node, 0, size)]))[0]
