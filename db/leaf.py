"""The canonical encoding of an event as a Merkle leaf (the stored form), shared by the server and the verifier.

Leaf ``seq - 1`` of a tenant's tree is ``hash_leaf(encode_leaf(...))`` of the event as it is *stored*: the
clear columns plus the payload ciphertext (whose header names the data key). Not the API form, because the
stored form outlives crypto-shredding: once a tenant's data key is destroyed the payload can no longer be
decrypted, but its ciphertext still hashes to the same leaf, so the tree and every proof stay valid.

Encoding (version 1): the ASCII bytes ``auditlog-leaf-v1`` then, for each field in this order, ``0x00`` if
the field is null, else ``0x01``, the value's length as 4 bytes big-endian, and the value's bytes:

==  ===============  ===================================================================================
 1  tenant_id        the tenant's UUID, lowercase hyphenated text (36 ASCII bytes)
 2  seq              the event's position in its tenant's log (leaf index + 1), decimal ASCII
 3  id               the event's UUID, lowercase hyphenated text
 4  timestamp        microseconds since 1970-01-01T00:00:00Z, decimal ASCII (may start with ``-``)
 5  received_at      the same, of the time the service received the event
 6  action           UTF-8
 7  resource_type    UTF-8
 8  resource_id      UTF-8 or null
 9  user_id          UTF-8 or null
10  session_id       UTF-8 or null
11  request_id       UTF-8 or null
12  severity         UTF-8 (INFO, WARNING, ERROR or CRITICAL)
13  ip_address       the packed address (4 bytes IPv4, 16 bytes IPv6) or null
14  user_agent       UTF-8 or null
15  message          UTF-8 or null
16  payload          the stored ciphertext of metadata/before_state/after_state, verbatim, or null
==  ===============  ===================================================================================

The payload blob is ``0x01 ‖ key id (4 bytes) ‖ nonce (12) ‖ AES-GCM ciphertext and tag``; it is bound to the
tenant and the event id, and the verifier does not need the key to hash it. Standard library only.
"""

from __future__ import annotations

import functools
import ipaddress
import struct
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from app.verifiable.merkle import hash_leaf

__all__ = ["LEAF_PREFIX", "LeafFields", "encode_leaf", "encode_values", "leaf_hash", "micros", "packed_ip"]

LEAF_PREFIX = b"auditlog-leaf-v1"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class LeafFields:
    tenant_id: uuid.UUID
    seq: int
    id: uuid.UUID
    timestamp: datetime
    received_at: datetime
    action: str
    resource_type: str
    resource_id: str | None
    user_id: str | None
    session_id: str | None
    request_id: str | None
    severity: str
    ip_address: str | None
    user_agent: str | None
    message: str | None
    payload: bytes | None


def micros(value: datetime) -> int:
    """Exact microseconds since the epoch of an aware datetime (no float rounding)."""
    if value.tzinfo is None:
        raise ValueError("timestamps must carry a time zone")
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


_PRESENT = struct.Struct(">BI")


def encode_values(values: Iterable[bytes | str | None]) -> bytes:
    """``auditlog-leaf-v1`` then each value as ``0x00`` (null) or ``0x01`` ‖ 4-byte length ‖ bytes (str: UTF-8)."""
    out = bytearray(LEAF_PREFIX)
    for value in values:
        if value is None:
            out += b"\x00"
            continue
        raw = value.encode() if isinstance(value, str) else value
        out += _PRESENT.pack(1, len(raw))
        out += raw
    return bytes(out)


@functools.lru_cache(maxsize=65_536)
def packed_ip(text: str) -> bytes:
    """The packed form of an address given as text (4 or 16 bytes); addresses repeat, so it is memoised."""
    return ipaddress.ip_address(text).packed


def encode_leaf(f: LeafFields) -> bytes:
    return encode_values(
        (
            str(f.tenant_id),
            str(f.seq),
            str(f.id),
            str(micros(f.timestamp)),
            str(micros(f.received_at)),
            f.action,
            f.resource_type,
            f.resource_id,
            f.user_id,
            f.session_id,
            f.request_id,
            f.severity,
            None if f.ip_address is None else packed_ip(f.ip_address),
            f.user_agent,
            f.message,
            f.payload,
        )
    )


def leaf_hash(f: LeafFields) -> bytes:
    return hash_leaf(encode_leaf(f))
