"""A Merkle tree held as C2SP tlog-tiles (https://c2sp.org/tlog-tiles), in memory; storage is the caller's.

Tile level ``L``, index ``N`` holds up to 256 consecutive hashes of Merkle level ``8·L`` (level 0: the leaf
hashes), those of indices ``256·N ..``; its width is how many it holds so far (256: full). A tree of ``n``
leaves has ``n >> 8L`` hashes at tile level ``L``; each full tile's root is the next level's hash. Any
complete subtree's hash is the root of at most 128 hashes of one tile, so a proof reads a few tiles only:
:func:`tiles_needed` runs a proof builder over a recording callback to learn which, before reading them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from typing import TypeVar

from app.verifiable.merkle import HASH_SIZE, NodeFn, root_from_leaves

__all__ = [
    "TILE_HEIGHT",
    "TILE_WIDTH",
    "MissingTile",
    "TileKey",
    "append_leaves",
    "edge_tiles",
    "node_reader",
    "tiles_needed",
]

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT

TileKey = tuple[int, int]
"""(tile level, tile index)"""

T = TypeVar("T")


class MissingTile(LookupError):
    """A proof needed a tile (or a part of one) the store does not hold: a tree size beyond the integrated one."""


def _locate(level: int, index: int) -> tuple[TileKey, int, int]:
    tile_level, sub = divmod(level, TILE_HEIGHT)
    first = index << sub
    tile_index, offset = divmod(first, TILE_WIDTH)
    return (tile_level, tile_index), offset, 1 << sub


def node_reader(tiles: dict[TileKey, bytes]) -> NodeFn:
    """``node(level, index)`` answered from ``tiles`` (concatenated hashes per tile)."""

    def node(level: int, index: int) -> bytes:
        key, offset, count = _locate(level, index)
        data = tiles.get(key)
        end = (offset + count) * HASH_SIZE
        if data is None or len(data) < end:
            raise MissingTile(f"tile {key} does not hold hashes {offset}..{offset + count - 1}")
        chunk = data[offset * HASH_SIZE : end]
        if count == 1:
            return chunk
        return root_from_leaves([chunk[i : i + HASH_SIZE] for i in range(0, len(chunk), HASH_SIZE)])

    return node


def tiles_needed(build: Callable[[NodeFn], T]) -> set[TileKey]:
    """The tiles ``build(node)`` reads (it is run once with placeholder hashes)."""
    keys: set[TileKey] = set()

    def record(level: int, index: int) -> bytes:
        keys.add(_locate(level, index)[0])
        return bytes(HASH_SIZE)

    build(record)
    return keys


def edge_tiles(size: int) -> set[TileKey]:
    """The partial tiles of a tree of ``size`` leaves (the only ones an append changes besides new ones)."""
    keys: set[TileKey] = set()
    level, count = 0, size
    while count:
        if count % TILE_WIDTH:
            keys.add((level, count // TILE_WIDTH))
        level, count = level + 1, count // TILE_WIDTH
    return keys


def _perfect_root(data: bytes) -> bytes:
    """The root of a full tile's 256 hashes (a perfect tree), folded level by level."""
    sha256 = hashlib.sha256
    level = [data[i : i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)]
    while len(level) > 1:
        level = [sha256(b"\x01" + level[i] + level[i + 1]).digest() for i in range(0, len(level), 2)]
    return level[0]


def append_leaves(tiles: dict[TileKey, bytes], size: int, leaf_hashes: Iterable[bytes]) -> tuple[int, set[TileKey]]:
    """Append leaf hashes to a tree of ``size`` leaves whose :func:`edge_tiles` are in ``tiles``.

    Returns the new size and the tiles written (new or grown). Works a level at a time: the new hashes of a
    level fill its edge tile and new tiles in slices; each tile that becomes full adds its root to the next
    level's new hashes.
    """
    new = list(leaf_hashes)
    if any(len(leaf) != HASH_SIZE for leaf in new):
        raise ValueError("a leaf hash is 32 bytes")
    appended = len(new)
    changed: set[TileKey] = set()
    level, start = 0, size  # start: the level's hash index of new[0]
    while new:
        completed: list[bytes] = []
        done = 0
        while done < len(new):
            index = start + done
            key = (level, index // TILE_WIDTH)
            offset = index % TILE_WIDTH
            data = tiles.get(key, b"")
            if len(data) != offset * HASH_SIZE:
                raise ValueError(f"tile {key} is not the edge of a tree of {size} leaves")
            take = min(TILE_WIDTH - offset, len(new) - done)
            data += b"".join(new[done : done + take])
            tiles[key] = data
            changed.add(key)
            if len(data) == TILE_WIDTH * HASH_SIZE:
                completed.append(_perfect_root(data))
            done += take
        level, start, new = level + 1, start // TILE_WIDTH, completed
    return size + appended, changed
