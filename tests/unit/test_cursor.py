"""Cursor codec: round trip, and every kind of tampering or rebinding is refused."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from app.logs.cursor import CursorCodec, CursorError, CursorPosition, cursor_codec, derive_cursor_key

TENANT = uuid.uuid4()
FP = b'{"severity":["ERROR"]}'
POS = CursorPosition(timestamp=datetime(2026, 5, 1, 12, 30, 1, 123456, tzinfo=UTC), id=uuid.uuid4())


@pytest.fixture
def codec() -> CursorCodec:
    return CursorCodec(derive_cursor_key(b"k" * 32))


def test_round_trip_is_exact_and_url_safe(codec: CursorCodec) -> None:
    token = codec.encode(POS, tenant_id=TENANT, fingerprint=FP)
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert codec.decode(token, tenant_id=TENANT, fingerprint=FP) == POS
    # other zones are normalised; microseconds survive; pre-epoch times too
    other = CursorPosition(timestamp=datetime(1960, 1, 1, 1, 0, 0, 5, tzinfo=timezone(timedelta(hours=2))), id=POS.id)
    back = codec.decode(codec.encode(other, tenant_id=TENANT, fingerprint=FP), tenant_id=TENANT, fingerprint=FP)
    assert back.timestamp == other.timestamp and back.timestamp.tzinfo is UTC


def test_opaque(codec: CursorCodec) -> None:
    token = codec.encode(POS, tenant_id=TENANT, fingerprint=FP)
    assert str(POS.id) not in token and POS.id.hex not in token and "2026" not in token


@pytest.mark.parametrize(
    "bad", ["", "x", "!!!!", "A" * 200, "AAAA", base64.urlsafe_b64encode(b"\x02" + b"0" * 40).decode()]
)
def test_malformed(codec: CursorCodec, bad: str) -> None:
    with pytest.raises(CursorError):
        codec.decode(bad, tenant_id=TENANT, fingerprint=FP)


def test_every_flipped_bit_is_refused(codec: CursorCodec) -> None:
    token = codec.encode(POS, tenant_id=TENANT, fingerprint=FP)
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    for i in range(len(raw) * 8):
        flipped = bytearray(raw)
        flipped[i // 8] ^= 1 << (i % 8)
        forged = base64.urlsafe_b64encode(bytes(flipped)).rstrip(b"=").decode()
        with pytest.raises(CursorError):
            codec.decode(forged, tenant_id=TENANT, fingerprint=FP)


def test_bound_to_tenant_filters_and_key(codec: CursorCodec) -> None:
    token = codec.encode(POS, tenant_id=TENANT, fingerprint=FP)
    with pytest.raises(CursorError):
        codec.decode(token, tenant_id=uuid.uuid4(), fingerprint=FP)
    with pytest.raises(CursorError):
        codec.decode(token, tenant_id=TENANT, fingerprint=b'{"severity":["INFO"]}')
    with pytest.raises(CursorError):
        CursorCodec(derive_cursor_key(b"j" * 32)).decode(token, tenant_id=TENANT, fingerprint=FP)


def test_codec_is_derived_once_per_key() -> None:
    assert cursor_codec("secret-a") is cursor_codec("secret-a")
    token = cursor_codec("secret-a").encode(POS, tenant_id=TENANT, fingerprint=FP)
    with pytest.raises(CursorError):
        cursor_codec("secret-b").decode(token, tenant_id=TENANT, fingerprint=FP)


def test_naive_positions_and_short_keys_are_refused(codec: CursorCodec) -> None:
    with pytest.raises(ValueError):
        codec.encode(CursorPosition(timestamp=datetime(2026, 1, 1), id=POS.id), tenant_id=TENANT, fingerprint=FP)
    with pytest.raises(ValueError):
        CursorCodec(b"short")
