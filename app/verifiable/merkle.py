"""RFC 6962 / RFC 9162 Merkle tree hashing, proof construction and proof verification.

Standard library only (``hashlib``): this is the part an auditor reads to trust a proof, so it does one
thing and depends on nothing. Hashes are SHA-256; a leaf hash is ``H(0x00 ‖ data)``, an interior node
``H(0x01 ‖ left ‖ right)``, the empty tree's root ``H("")``.

Proofs are built over a ``node(level, index)`` callback that returns the hash of the complete subtree of
``2**level`` leaves starting at leaf ``index * 2**level`` (the server answers it from tiles, a test from a
list of leaves): only complete subtrees are ever asked for, which is what a tiled tree stores.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "NodeFn",
    "ProofError",
    "consistency_proof",
    "hash_children",
    "hash_leaf",
    "inclusion_proof",
    "root_from_leaves",
    "subtree_root",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

NodeFn = Callable[[int, int], bytes]
"""``node(level, index)``: hash of the complete subtree of ``2**level`` leaves starting at ``index << level``."""


class ProofError(ValueError):
    """A proof that does not verify, or is malformed (wrong length, sizes out of range)."""


def hash_leaf(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def hash_children(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly below ``n`` (``n >= 2``)."""
    return 1 << ((n - 1).bit_length() - 1)


# -- building ---------------------------------------------------------------------------------------
def subtree_root(node: NodeFn, start: int, end: int) -> bytes:
    """MTH(D[start:end]) where ``start`` is aligned to the largest power of two not above ``end - start``
    (true of every range RFC 6962's recursion visits)."""
    n = end - start
    if n <= 0:
        return EMPTY_ROOT
    if n & (n - 1) == 0:
        level = n.bit_length() - 1
        return node(level, start >> level)
    k = _split(n)
    return hash_children(subtree_root(node, start, start + k), subtree_root(node, start + k, end))


def inclusion_proof(node: NodeFn, index: int, size: int) -> list[bytes]:
    """RFC 6962 audit path of leaf ``index`` in the tree of ``size`` leaves (leaf-to-root order)."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is outside a tree of size {size}")
    path: list[bytes] = []
    start, end = 0, size
    while end - start > 1:
        k = _split(end - start)
        if index < start + k:
            path.append(subtree_root(node, start + k, end))
            end = start + k
        else:
            path.append(subtree_root(node, start, start + k))
            start = start + k
    path.reverse()
    return path


def consistency_proof(node: NodeFn, size1: int, size2: int) -> list[bytes]:
    """RFC 6962 SUBPROOF(size1, D[0:size2], true), leaf-to-root order. Empty when the sizes are equal."""
    if not 0 < size1 <= size2:
        raise ProofError(f"no consistency proof from size {size1} to size {size2}")
    proof: list[bytes] = []
    start, end, m, whole = 0, size2, size1, True
    while True:
        n = end - start
        if m == n:
            if not whole:
                proof.append(subtree_root(node, start, end))
            break
        k = _split(n)
        if m <= k:
            proof.append(subtree_root(node, start + k, end))
            end = start + k
        else:
            proof.append(subtree_root(node, start, start + k))
            start, m, whole = start + k, m - k, False
    proof.reverse()
    return proof


def root_from_leaves(leaf_hashes: Iterable[bytes]) -> bytes:
    """The root of a tree given all its leaf hashes, in order (what an offline verifier recomputes). Reads
    them once, keeping only a stack of perfect subtrees (one hash per level), like an append-only log."""
    stack: list[tuple[int, bytes]] = []
    for h in leaf_hashes:
        size, cur = 1, h
        while stack and stack[-1][0] == size:
            cur = hash_children(stack.pop()[1], cur)
            size *= 2
        stack.append((size, cur))
    if not stack:
        return EMPTY_ROOT
    root = stack.pop()[1]
    while stack:
        root = hash_children(stack.pop()[1], root)
    return root


# -- verifying (RFC 9162 section 2.1.3.2 and 2.1.4.2) -----------------------------------------------
def _check_hashes(proof: Sequence[bytes]) -> None:
    for h in proof:
        if len(h) != HASH_SIZE:
            raise ProofError(f"proof hash of {len(h)} bytes, expected {HASH_SIZE}")


def _inner_border_lengths(index: int, size: int) -> tuple[int, int]:
    inner = (index ^ (size - 1)).bit_length()
    border = bin(index >> inner).count("1")
    return inner, border


def _chain_inner(seed: bytes, proof: Sequence[bytes], index: int) -> bytes:
    for i, h in enumerate(proof):
        seed = hash_children(seed, h) if (index >> i) & 1 == 0 else hash_children(h, seed)
    return seed


def _chain_inner_right(seed: bytes, proof: Sequence[bytes], index: int) -> bytes:
    for i, h in enumerate(proof):
        if (index >> i) & 1 == 1:
            seed = hash_children(h, seed)
    return seed


def _chain_border_right(seed: bytes, proof: Sequence[bytes]) -> bytes:
    for h in proof:
        seed = hash_children(h, seed)
    return seed


def root_from_inclusion(index: int, size: int, leaf_hash: bytes, proof: Sequence[bytes]) -> bytes:
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is outside a tree of size {size}")
    if len(leaf_hash) != HASH_SIZE:
        raise ProofError(f"leaf hash of {len(leaf_hash)} bytes, expected {HASH_SIZE}")
    _check_hashes(proof)
    inner, border = _inner_border_lengths(index, size)
    if len(proof) != inner + border:
        raise ProofError(f"inclusion proof has {len(proof)} hashes, expected {inner + border}")
    seed = _chain_inner(leaf_hash, proof[:inner], index)
    return _chain_border_right(seed, proof[inner:])


def verify_inclusion(index: int, size: int, leaf_hash: bytes, proof: Sequence[bytes], root: bytes) -> None:
    """Raise :class:`ProofError` unless ``proof`` shows leaf ``index`` hashing to ``leaf_hash`` in ``root``."""
    calculated = root_from_inclusion(index, size, leaf_hash, proof)
    if calculated != root:
        raise ProofError("inclusion proof does not lead to the root")


def verify_consistency(size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes) -> None:
    """Raise :class:`ProofError` unless ``proof`` shows the tree ``root2`` of ``size2`` extends ``root1`` of ``size1``.

    A tree of size 0 has nothing to be consistent with: any proof from (or between) empty trees is rejected.
    """
    if size1 <= 0:
        raise ProofError("a consistency proof needs a first tree of at least one leaf")
    if size2 < size1:
        raise ProofError(f"size2 ({size2}) is smaller than size1 ({size1})")
    if size1 == size2:
        if proof:
            raise ProofError("trees of equal size need an empty consistency proof")
        if root1 != root2:
            raise ProofError("trees of equal size have different roots")
        return
    if not proof:
        raise ProofError("empty consistency proof between different sizes")
    _check_hashes(proof)
    inner, border = _inner_border_lengths(size1 - 1, size2)
    shift = (size1 & -size1).bit_length() - 1  # trailing zeros of size1
    inner -= shift
    if size1 == 1 << shift:  # size1 is a power of two: its root is the seed, not in the proof
        seed, start = root1, 0
    else:
        seed, start = proof[0], 1
    if len(proof) != start + inner + border:
        raise ProofError(f"consistency proof has {len(proof)} hashes, expected {start + inner + border}")
    rest = proof[start:]
    mask = (size1 - 1) >> shift
    hash1 = _chain_inner_right(seed, rest[:inner], mask)
    hash1 = _chain_border_right(hash1, rest[inner:])
    if hash1 != root1:
        raise ProofError("consistency proof does not lead to the first root")
    hash2 = _chain_inner(seed, rest[:inner], mask)
    hash2 = _chain_border_right(hash2, rest[inner:])
    if hash2 != root2:
        raise ProofError("consistency proof does not lead to the second root")
