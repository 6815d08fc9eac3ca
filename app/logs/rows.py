"""Database rows of ``audit_logs`` → :class:`EventOut`, decrypting the payload of returned rows only.

The payload (``metadata``, ``before_state``, ``after_state``) is one AES-GCM blob bound to the tenant,
the event id and the field name. If it fails to decrypt (a tampered, truncated or moved ciphertext) the
read fails closed: :class:`PayloadIntegrityError` becomes a ``500`` problem "event payload failed
integrity check" with no further detail, and the event id is logged for the operator. Nothing of the
row - let alone another row's data - is returned in that case.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from app.logs.schemas import EventOut
from app.web.errors import ApiError
from db.crypto import DecryptionError

if TYPE_CHECKING:
    from db.crypto import TenantKeyring

__all__ = ["EventWire", "PageWire", "PayloadIntegrityError", "row_to_wire", "rows_to_wire"]

log = logging.getLogger("auditlog.logs.rows")


class _RawPayload(msgspec.Struct):
    """The decrypted payload with each part kept as the JSON text it already is (no parse, no re-encode)."""

    metadata: msgspec.Raw = msgspec.Raw(b"null")
    before_state: msgspec.Raw = msgspec.Raw(b"null")
    after_state: msgspec.Raw = msgspec.Raw(b"null")


_EMPTY_RAW = _RawPayload()
_raw_decoder = msgspec.json.Decoder(_RawPayload)


_PASSED_THROUGH = ("metadata", "before_state", "after_state")
_AS_TEXT = ("timestamp", "received_at")  # RFC 3339 text formatted by the query (``app.logs.query``)

# :class:`EventOut` as it goes on the wire from the read path: the same fields in the same order, with the
# JSON parts passed through verbatim and the times as the text the query formatted; built positionally (the
# row order of ``SELECT_COLUMNS``). Derived from EventOut so the two cannot drift; the OpenAPI schema is
# EventOut's.
EventWire: Any = msgspec.defstruct(
    "EventWire",
    [
        (f.name, msgspec.Raw if f.name in _PASSED_THROUGH else str if f.name in _AS_TEXT else f.type)
        for f in msgspec.structs.fields(EventOut)
    ],
)


class PageWire(msgspec.Struct, kw_only=True):
    items: list[EventWire]  # type: ignore[valid-type]
    next_cursor: str | None


class PayloadIntegrityError(ApiError):
    """An event's encrypted payload did not authenticate; answered as a detail-free 500."""

    def __init__(self) -> None:
        super().__init__(500, "event payload failed integrity check")


def _refuse(event_id: Any, tenant_id: str) -> PayloadIntegrityError:
    log.error("payload of event %s (tenant %s) failed its integrity check; refusing to return it", event_id, tenant_id)
    return PayloadIntegrityError()


def _wire(row: Sequence[Any], tenant_id: str, open_payload: Callable[[bytes, Any], bytes]) -> Any:
    (event_id, action, resource_type, resource_id, user_id, session_id, request_id, severity,
     timestamp, ip_address, user_agent, message, received_at, blob) = row  # fmt: skip
    if blob is None:
        payload = _EMPTY_RAW
    else:
        try:
            payload = _raw_decoder.decode(open_payload(blob, event_id))
        except (DecryptionError, msgspec.DecodeError):
            raise _refuse(event_id, tenant_id) from None
    return EventWire(
        event_id, tenant_id, action, resource_type, resource_id, user_id, session_id, request_id, severity,
        timestamp, ip_address, user_agent, message, payload.before_state, payload.after_state, payload.metadata,
        received_at,
    )  # fmt: skip


def row_to_wire(row: Sequence[Any], keyring: TenantKeyring) -> Any:
    """One row (asyncpg ``Record`` of ``SELECT_COLUMNS``, in that order) of the keyring's tenant as the API event;
    the decrypted JSON parts are passed through, not parsed again."""
    return _wire(row, str(keyring.tenant_id), keyring.opener("payload"))


def rows_to_wire(rows: Iterable[Sequence[Any]], keyring: TenantKeyring) -> list[Any]:
    open_payload, tenant_id = keyring.opener("payload"), str(keyring.tenant_id)
    return [_wire(row, tenant_id, open_payload) for row in rows]
