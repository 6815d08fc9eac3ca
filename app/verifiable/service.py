"""A tenant's tree in PostgreSQL: integrating new events as leaves, and reading proofs and checkpoints from tiles.

Every function takes an asyncpg connection already bound to the tenant (row-level security applies).
:func:`integrate` must run inside one transaction: it locks the tenant's ``merkle_trees`` row, appends the
leaves of the events past the tree's size (stopping at the first gap in ``seq``), writes the grown tiles,
the new size and root and a signed checkpoint, all or nothing, so a crash leaves no gap and no duplicate
leaf, and concurrent integrators wait for each other. Proofs read tiles only, never ``audit_logs``.
"""

from __future__ import annotations

import asyncio
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
from db.leaf import flat_leaf_hasher

__all__ = [
    "FLAT_ROWS_SQL",
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


FLAT_ROWS_SQL = (
    'SELECT seq, id::text, (extract(epoch FROM "timestamp") * 1000000)::int8,'
    " (extract(epoch FROM received_at) * 1000000)::int8, action, resource_type, resource_id, user_id, session_id,"
    " request_id, severity, substring(inet_send(ip_address) FROM 5), user_agent, message, payload"
    " FROM audit_logs WHERE tenant_id = $1 AND seq > $2 AND seq <= $3 ORDER BY seq"
)
"""The tenant's events in ``(from, to]`` as ``db.leaf.FLAT_ROW`` rows (``inet_send`` minus its 4-byte header is
the packed address). PostgreSQL only reads and converts cheaply; Python encodes and hashes each leaf
(``flat_leaf_hasher``), 4-6x faster than the same encoding in SQL string functions (bench/bench_merkle.py)."""
FETCH_ROWS = 4096
"""Rows per fetch inside a round: the next fetch is on its way while this one is hashed."""


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


async def _leaves(conn: asyncpg.Connection, tenant_id: uuid.UUID, size: int, end: int) -> list[bytes]:
    """The leaf hashes of the events ``seq`` ``size + 1 .. end``, stopping before the first missing one."""
    leaf = flat_leaf_hasher(tenant_id)
    leaves: list[bytes] = []

    def fetch(low: int) -> asyncio.Future[list[Any]]:
        return asyncio.ensure_future(conn.fetch(FLAT_ROWS_SQL, tenant_id, low, min(end, low + FETCH_ROWS)))

    low = size
    pending: asyncio.Future[list[Any]] | None = fetch(size)
    try:
        while pending is not None:
            rows = await pending
            low += FETCH_ROWS
            # PostgreSQL reads the next rows while this process hashes these (a short page: a gap, or the end)
            pending = fetch(low) if low < end and len(rows) == FETCH_ROWS else None
            expected = size + len(leaves) + 1
            if rows and (rows[0][0] != expected or rows[-1][0] != expected + len(rows) - 1):
                # seq is assigned under a row lock and committed in order, so a gap does not close by itself:
                # an event removed before it was integrated. Never skip a position; say so.
                at = next(i for i, row in enumerate(rows) if row[0] != expected + i)
                leaves.extend(leaf(row) for row in rows[:at])
                log.warning("tenant %s: event seq %d is missing; its tree waits at size %d", tenant_id,
                            size + len(leaves) + 1, size + len(leaves))  # fmt: skip
                return leaves
            leaves.extend([leaf(row) for row in rows])  # seqs are unique and ordered: first and last tell a gap
        return leaves
    finally:
        if pending is not None:
            await asyncio.gather(pending, return_exceptions=True)


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
    leaves = await _leaves(conn, tenant_id, size, size + batch)
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
