"""Opaque, tamper-proof keyset cursors for ``GET /api/v1/logs``.

A cursor carries the position of the last row of a page, ``("timestamp", id)``, and an HMAC-SHA256 tag
that binds it to the tenant and to the exact filter set it was issued for. A cursor that was altered,
forged, issued for another tenant or replayed with different filters fails verification, and the route
answers ``400`` naming ``cursor``. The page size (``limit``) is deliberately *not* bound: a client may
change it between pages.

Wire format (base64url, unpadded)::

    0x01 | timestamp (int64 microseconds since the epoch, big-endian) | id (16 bytes) | tag (16 bytes)

The tag is ``HMAC-SHA256(key, "auditlog/cursor/v1" | tenant id | filter fingerprint | body)`` truncated to
128 bits. The key is derived once, here, with HKDF-SHA256 from the master key (:func:`cursor_codec`), so
every API process that shares the master key accepts the others' cursors.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import struct
import uuid
from datetime import UTC, datetime, timedelta
from typing import Final

import msgspec
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["CursorCodec", "CursorError", "CursorPosition", "cursor_codec", "derive_cursor_key"]

VERSION: Final = 0x01
TAG_SIZE: Final = 16
_BODY: Final = struct.Struct(">Bq16s")
_TOKEN_SIZE: Final = _BODY.size + TAG_SIZE
_DOMAIN: Final = b"auditlog/cursor/v1"
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


class CursorError(ValueError):
    """The cursor is malformed, forged, or belongs to another tenant or filter set."""


class CursorPosition(msgspec.Struct, frozen=True):
    """The keyset position a cursor points after: the last row of the previous page."""

    timestamp: datetime
    id: uuid.UUID


def derive_cursor_key(secret: bytes) -> bytes:
    """HKDF-SHA256 of a server secret into the 32-byte cursor MAC key (the only place it is derived)."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=_DOMAIN, info=b"cursor-hmac").derive(secret)


def _micros(ts: datetime) -> int:
    delta = ts - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


class CursorCodec:
    """Encodes and verifies cursors with one MAC key."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("cursor key must be at least 32 bytes")
        self._key = bytes(key)

    def _tag(self, tenant_id: uuid.UUID, fingerprint: bytes, body: bytes) -> bytes:
        msg = _DOMAIN + tenant_id.bytes + hashlib.sha256(fingerprint).digest() + body
        return hmac.digest(self._key, msg, "sha256")[:TAG_SIZE]

    def encode(self, position: CursorPosition, *, tenant_id: uuid.UUID, fingerprint: bytes) -> str:
        """A cursor for the page after ``position``, valid only for this tenant and filter fingerprint."""
        if position.timestamp.tzinfo is None:
            raise ValueError("cursor timestamps must be timezone-aware")
        body = _BODY.pack(VERSION, _micros(position.timestamp), position.id.bytes)
        token = body + self._tag(tenant_id, fingerprint, body)
        return base64.urlsafe_b64encode(token).rstrip(b"=").decode("ascii")

    def decode(self, cursor: str, *, tenant_id: uuid.UUID, fingerprint: bytes) -> CursorPosition:
        """Verify ``cursor`` for this tenant and filter fingerprint; raise :class:`CursorError` otherwise."""
        if not cursor or len(cursor) > 128:
            raise CursorError("malformed cursor")
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        except (binascii.Error, ValueError):
            raise CursorError("malformed cursor") from None
        if len(raw) != _TOKEN_SIZE or raw[0] != VERSION:
            raise CursorError("malformed cursor")
        body, tag = raw[: _BODY.size], raw[_BODY.size :]
        if not hmac.compare_digest(tag, self._tag(tenant_id, fingerprint, body)):
            raise CursorError("cursor is not valid for this tenant and these filters")
        _version, micros, id_bytes = _BODY.unpack(body)
        try:
            timestamp = _EPOCH + timedelta(microseconds=micros)
        except OverflowError:
            raise CursorError("malformed cursor") from None
        return CursorPosition(timestamp=timestamp, id=uuid.UUID(bytes=id_bytes))


@functools.lru_cache(maxsize=8)
def cursor_codec(master_key_setting: str) -> CursorCodec:
    """The process-wide codec for a master key setting (derivation runs once per key)."""
    if not master_key_setting.strip():
        raise ValueError("a master key is required to sign cursors")
    return CursorCodec(derive_cursor_key(master_key_setting.strip().encode()))
