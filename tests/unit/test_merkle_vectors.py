"""``app.verifiable.merkle`` against the RFC 6962 vectors of ``../shared/testdata/rfc6962`` (transparency-dev/merkle).

Every vector must give the reference outcome: the valid proofs verify, every malformed or wrong one is
rejected. Proof construction is checked against the same definitions: a proof built from a tree of
leaves verifies, for every index and every pair of sizes up to 70 leaves.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from app.verifiable import merkle

VECTORS = Path(__file__).resolve().parents[2].parent / "shared" / "testdata" / "rfc6962"


def _load(kind: str) -> list[tuple[str, dict[str, Any]]]:
    files = sorted((VECTORS / kind).rglob("*.json"))
    return [(str(f.relative_to(VECTORS)), json.loads(f.read_text())) for f in files]


def _b64(value: str | None) -> bytes:
    return base64.b64decode(value or "")


def _proof(vector: dict[str, Any]) -> list[bytes]:
    return [_b64(h) for h in vector["proof"] or []]


INCLUSION = _load("inclusion")
CONSISTENCY = _load("consistency")


def test_vectors_present() -> None:
    assert len(INCLUSION) >= 98
    assert len(CONSISTENCY) >= 98
    assert any(v["wantErr"] for _, v in INCLUSION) and any(not v["wantErr"] for _, v in INCLUSION)
    assert any(v["wantErr"] for _, v in CONSISTENCY) and any(not v["wantErr"] for _, v in CONSISTENCY)


@pytest.mark.parametrize(("name", "vector"), INCLUSION, ids=[n for n, _ in INCLUSION])
def test_inclusion_vector(name: str, vector: dict[str, Any]) -> None:
    def check() -> None:
        merkle.verify_inclusion(
            vector["leafIdx"], vector["treeSize"], _b64(vector["leafHash"]), _proof(vector), _b64(vector["root"])
        )

    if vector["wantErr"]:
        with pytest.raises(merkle.ProofError):
            check()
    else:
        check()


@pytest.mark.parametrize(("name", "vector"), CONSISTENCY, ids=[n for n, _ in CONSISTENCY])
def test_consistency_vector(name: str, vector: dict[str, Any]) -> None:
    def check() -> None:
        merkle.verify_consistency(
            vector["size1"], vector["size2"], _proof(vector), _b64(vector["root1"]), _b64(vector["root2"])
        )

    if vector["wantErr"]:
        with pytest.raises(merkle.ProofError):
            check()
    else:
        check()


def _tree(n: int) -> tuple[list[bytes], merkle.NodeFn]:
    leaves = [merkle.hash_leaf(i.to_bytes(4, "big")) for i in range(n)]

    def node(level: int, index: int) -> bytes:
        start = index << level
        chunk = leaves[start : start + (1 << level)]
        assert len(chunk) == 1 << level, "only complete subtrees are asked for"
        return merkle.root_from_leaves(chunk)

    return leaves, node


def test_built_proofs_verify_and_reject_tampering() -> None:
    leaves, node = _tree(70)
    roots = [merkle.root_from_leaves(leaves[:n]) for n in range(71)]
    assert roots[0] == merkle.EMPTY_ROOT
    for size in range(1, 71):
        assert merkle.subtree_root(node, 0, size) == roots[size]
        for index in range(size):
            proof = merkle.inclusion_proof(node, index, size)
            merkle.verify_inclusion(index, size, leaves[index], proof, roots[size])
            wrong = leaves[(index + 1) % 70]
            with pytest.raises(merkle.ProofError):
                merkle.verify_inclusion(index, size, wrong, proof, roots[size])
        for size1 in range(1, size + 1):
            proof = merkle.consistency_proof(node, size1, size)
            merkle.verify_consistency(size1, size, proof, roots[size1], roots[size])
            if size1 < size:
                with pytest.raises(merkle.ProofError):
                    merkle.verify_consistency(
                        size1, size, proof, roots[size1 - 1] if size1 > 1 else b"x" * 32, roots[size]
                    )


def test_known_roots() -> None:
    # RFC 6962 reference: the empty tree and a one-leaf tree of the empty string.
    assert merkle.EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert merkle.hash_leaf(b"").hex() == "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
