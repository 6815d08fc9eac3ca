"""``app.verifiable.tiles``: a tree grown by batches into tlog tiles gives the same roots and proofs as the tree
computed from all its leaves, across tile-level boundaries (256 and 65,536 leaves)."""

from __future__ import annotations

import random

import pytest

from app.verifiable import merkle
from app.verifiable.tiles import TILE_WIDTH, MissingTile, append_leaves, edge_tiles, node_reader, tiles_needed


def _leaves(n: int) -> list[bytes]:
    return [merkle.hash_leaf(i.to_bytes(8, "big")) for i in range(n)]


def test_batches_across_tile_levels_match_the_reference_tree() -> None:
    rng = random.Random(12)
    total = TILE_WIDTH * TILE_WIDTH + 300
    leaves = _leaves(total)
    tiles: dict[tuple[int, int], bytes] = {}
    size = 0
    checked = 0
    while size < total:
        batch = min(total - size, rng.choice([1, 3, 255, 256, 257, 1000, 5000]))
        edge = {k: tiles[k] for k in edge_tiles(size) if k in tiles}
        assert set(edge) == edge_tiles(size), "every partial tile of the tree is stored"
        size, changed = append_leaves(tiles, size, leaves[size : size + batch])
        assert changed
        node = node_reader(tiles)
        if checked < 40 or size == total:
            checked += 1
            root = merkle.root_from_leaves(leaves[:size])
            assert merkle.subtree_root(node, 0, size) == root
            index = rng.randrange(size)
            proof = merkle.inclusion_proof(node, index, size)
            merkle.verify_inclusion(index, size, leaves[index], proof, root)
    assert len(tiles[(2, 0)]) == 32  # the first complete 65,536-leaf subtree
    old = TILE_WIDTH * 3 + 7
    node = node_reader(tiles)
    proof = merkle.consistency_proof(node, old, total)
    merkle.verify_consistency(
        old, total, proof, merkle.root_from_leaves(leaves[:old]), merkle.subtree_root(node, 0, total)
    )


def test_tiles_needed_is_what_the_builder_reads_and_missing_tiles_are_refused() -> None:
    leaves = _leaves(1000)
    tiles: dict[tuple[int, int], bytes] = {}
    append_leaves(tiles, 0, leaves)
    keys = tiles_needed(lambda node: merkle.inclusion_proof(node, 5, 1000))
    subset = {k: tiles[k] for k in keys}
    merkle.inclusion_proof(node_reader(subset), 5, 1000)  # no MissingTile
    with pytest.raises(MissingTile):
        merkle.subtree_root(node_reader(tiles), 0, 1001 + TILE_WIDTH)


def test_append_refuses_a_tree_without_its_edge() -> None:
    tiles: dict[tuple[int, int], bytes] = {}
    append_leaves(tiles, 0, _leaves(10))
    with pytest.raises(ValueError, match="edge"):
        append_leaves(tiles, 11, _leaves(1))
