"""Database rows of ``audit_logs`` → :class:`EventOut`, decrypting the payload of returned rows only.

The payload (``metadata``, ``before_state``, ``after_state``) is one AES-GCM blob bound to the tenant,
the event id and the field name. If it fails to decrypt (a tampered, truncated or moved ciphertext) the
read fails closed: :class:`PayloadIntegrityError` becomes a ``500`` problem "event payload failed
integrity check" with no further detail, and the event id is logged for the operator. Nothing of the
row - let alone another row's data - is returned in that case.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import msgspec

from app.errors import ApiError
from app.logs.schemas import EventOut
from db.crypto import DecryptionError

if TYPE_CHECKING:
    from db.crypto import TenantKeyring

__all__ = ["PayloadIntegrityError", "decode_payload", "row_to_event", "rows_to_events"]

log = logging.getLogger("auditlog.logs.rows")


class _Payload(msgspec.Struct):
    metadata: dict[str, Any] | None = None
    before_state: dict[str, Any] | None = None
    after_state: dict[str, Any] | None = None


_EMPTY = _Payload()
_decoder = msgspec.json.Decoder(_Payload)


class PayloadIntegrityError(ApiError):
    """An event's encrypted payload did not authenticate; answered as a detail-free 500."""

    def __init__(self) -> None:
        super().__init__(500, "event payload failed integrity check")


def decode_payload(keyring: TenantKeyring, blob: bytes | None, event_id: Any) -> _Payload:
    if blob is None:
        return _EMPTY
    try:
        return _decoder.decode(keyring.decrypt(bytes(blob), event_id=event_id, field="payload"))
    except (DecryptionError, msgspec.DecodeError):
        log.error(
            "payload of event %s (tenant %s) failed its integrity check; refusing to return it",
            event_id,
            keyring.tenant_id,
        )
        raise PayloadIntegrityError() from None


def row_to_event(row: Mapping[str, Any], keyring: TenantKeyring) -> EventOut:
    """One row (asyncpg ``Record`` or mapping with the ``SELECT_COLUMNS`` names) as the API event."""
    payload = decode_payload(keyring, row["payload"], row["id"])
    return EventOut(
        id=row["id"],
        tenant_id=row["tenant_id"],
        action=row["action"],
        resource_type=row["resource_type"],
        resource_id=row["resource_id"],
        user_id=row["user_id"],
        session_id=row["session_id"],
        request_id=row["request_id"],
        severity=row["severity"],
        timestamp=row["timestamp"],
        ip_address=row["ip_address"],
        user_agent=row["user_agent"],
        message=row["message"],
        before_state=payload.before_state,
        after_state=payload.after_state,
        metadata=payload.metadata,
        received_at=row["received_at"],
    )


def rows_to_events(rows: Iterable[Mapping[str, Any]], keyring: TenantKeyring) -> list[EventOut]:
    return [row_to_event(row, keyring) for row in rows]
