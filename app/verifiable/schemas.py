"""Bodies of the verifiable-log routes (API.md "The verifiable log"); hashes are standard base64 with padding."""

from __future__ import annotations

import msgspec

__all__ = ["CheckpointOut", "ConsistencyOut", "InclusionOut"]


class CheckpointOut(msgspec.Struct, kw_only=True):
    tree_size: int
    """Leaves (events) in the tree: those with ``seq`` 1..tree_size."""
    root_hash: str
    """The tree's RFC 6962 root hash, base64."""
    checkpoint: str
    """The C2SP signed note: origin (``<name>/<tenant id>``), tree size, base64 root, blank line, signatures."""


class InclusionOut(msgspec.Struct, kw_only=True):
    leaf_index: int
    """The event's position in its tenant's tree (its ``seq`` - 1)."""
    tree_size: int
    leaf_hash: str
    """SHA-256(0x00 ‖ the event's canonical encoding, README "The verifiable log"), base64."""
    hashes: list[str]
    """The RFC 6962 audit path, leaf to root, base64."""
    checkpoint: str
    """The signed checkpoint of ``tree_size`` the path leads to."""


class ConsistencyOut(msgspec.Struct, kw_only=True, rename={"from_": "from"}):
    from_: int
    to: int
    hashes: list[str]
    """The RFC 6962 consistency proof from the tree of ``from`` leaves to the tree of ``to`` leaves, base64."""
