"""A Merkle tree held as C2SP tlog-tiles (https://c2sp.org/tlog-tiles), in memory; storage is the caller's.

Tile level ``L``, index ``N`` holds up to 256 consecutive hashes of Merkle level ``8·L`` (level 0: the leaf
hashes), those of indices ``256·N ..``; its width is how many it holds so far (256: full). A tree of ``n``
leaves has ``n >> 8L`` hashes at tile level ``L``; each full tile's root is the next level's hash. Any
complete subtree's hash is the root of at most 128 hashes of one tile, so a proof reads a few tiles only:
:func:`tiles_needed` runs a proof builder over a recording callback to learn which, before reading them.
"""

from __future__ import annotations

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


def append_leaves(tiles: dict[TileKey, bytes], size: int, leaf_hashes: Iterable[bytes]) -> tuple[int, set[TileKey]]:
    """Append leaf hashes to a tree of ``size`` leaves whose :func:`edge_tiles` are in ``tiles``.

    Returns the new size and the tiles written (new or grown).
    """
    changed: set[TileKey] = set()
    for leaf in leaf_hashes:
        if len(leaf) != HASH_SIZE:
            raise ValueError("a leaf hash is 32 bytes")
        level, index, value = 0, size, leaf
        while True:
            key = (level, index // TILE_WIDTH)
            data = tiles.get(key, b"") + value
            if len(data) != (index % TILE_WIDTH + 1) * HASH_SIZE:
                raise ValueError(f"tile {key} is not the edge of a tree of {size} leaves")
            tiles[key] = data
            changed.add(key)
            if len(data) < TILE_WIDTH * HASH_SIZE:
                break
            value = root_from_leaves([data[i : i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)])
            level, index = level + 1, index // TILE_WIDTH
        size += 1
    return size, changed
