"""Turn request bytes into validated, masked events ready for the writer, before anything is queued.

Everything that can refuse an event happens here, per event and per bulk item, so one bad submission can
never fail the group-commit batch it would have shared with others: JSON shape and field rules (msgspec
types in ``schemas``), the rules types cannot say (zone-aware time not too far in the future, a real IP
address, no NUL characters PostgreSQL text cannot hold), then masking of secrets and PII. The result
carries the masked plaintexts the writer encrypts, the COPY row, and the 201 body.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import uuid_utils

from app.logs.masking import mask_event
from app.logs.schemas import ACTION_PATTERN, EventIn, EventOut

__all__ = [
    "FUTURE_TOLERANCE",
    "FieldError",
    "PreparedEvent",
    "decode_bulk",
    "decode_event",
    "prepare_event",
    "request_hash",
]

FUTURE_TOLERANCE = timedelta(minutes=5)
_ACTION_RE = re.compile(ACTION_PATTERN.rstrip("$") + r"\Z")
_AT_RE = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_MISSING_RE = re.compile(r"Object missing required field `(?P<name>[^`]+)`")
_TEXT_FIELDS = (
    "action",
    "resource_type",
    "resource_id",
    "user_id",
    "session_id",
    "request_id",
    "user_agent",
    "message",
)

_event_decoder = msgspec.json.Decoder(EventIn)
_raw_list_decoder = msgspec.json.Decoder(list[msgspec.Raw])


class _RawItems(msgspec.Struct, forbid_unknown_fields=False):
    items: list[msgspec.Raw]


_raw_bulk_decoder = msgspec.json.Decoder(list[msgspec.Raw] | _RawItems)
_any_decoder = msgspec.json.Decoder()


class FieldError(Exception):
    """A refused event: ``status`` (400 malformed, 413 too large, 422 invalid), the field and why."""

    def __init__(self, field: str | None, message: str, *, status: int = 422, index: int | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.message = message
        self.status = status
        self.index = index

    def as_error(self) -> dict[str, Any]:
        err: dict[str, Any] = {"field": self.field or "body", "message": self.message}
        if self.index is not None:
            err = {"index": self.index, **err}
        return err

    def detail(self) -> str:
        where = f"{self.field}: " if self.field else ""
        prefix = f"item {self.index}: " if self.index is not None else ""
        return f"{prefix}{where}{self.message}"


@dataclass(slots=True)
class PreparedEvent:
    """One validated, masked event. ``payload_plain``/``pii_plain`` are encrypted by the writer."""

    out: EventOut
    search_text: str
    payload_plain: bytes | None
    pii_plain: bytes | None

    def copy_record(self, ordinal: int) -> tuple[Any, ...]:
        """The staging row (see ``ingest.STAGING_COLUMNS``) without the encrypted columns."""
        o = self.out
        return (
            ordinal,
            o.id,
            o.timestamp,
            o.received_at,
            o.action,
            o.resource_type,
            o.resource_id,
            o.user_id,
            o.session_id,
            o.request_id,
            o.severity,
            o.ip_address,
            o.user_agent,
            o.message,
        )


def _field_error(exc: msgspec.ValidationError, body: bytes, index: int | None = None) -> FieldError:
    try:
        _any_decoder.decode(body)
    except msgspec.DecodeError:
        return FieldError(None, "malformed JSON body", status=400, index=index)
    m = _AT_RE.match(str(exc))
    msg, path = (m.group("msg"), m.group("path") or "") if m else (str(exc), "")
    missing = _MISSING_RE.search(msg)
    if missing:
        path = f"{path}.{missing.group('name')}"
        msg = "is required"
    field = path.lstrip(".") or None
    return FieldError(field, msg, index=index)


def decode_event(body: bytes) -> EventIn:
    """Decode one event; raises ``FieldError`` (400 for malformed JSON, 422 naming the field)."""
    try:
        return _event_decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise _field_error(exc, body) from None
    except msgspec.DecodeError:
        raise FieldError(None, "malformed JSON body", status=400) from None


def decode_bulk(body: bytes, *, max_items: int, max_item_bytes: int) -> list[EventIn]:
    """Decode a bulk body (an array, or ``{"items": [...]}``); every refusal names the item's index."""
    try:
        raw = _raw_bulk_decoder.decode(body)
    except msgspec.ValidationError:
        try:
            _any_decoder.decode(body)
        except msgspec.DecodeError:
            raise FieldError(None, "malformed JSON body", status=400) from None
        raise FieldError("items", "body must be a JSON array of events or an object with an items array") from None
    except msgspec.DecodeError:
        raise FieldError(None, "malformed JSON body", status=400) from None
    items = raw.items if isinstance(raw, _RawItems) else raw
    if not 1 <= len(items) <= max_items:
        raise FieldError("items", f"must hold 1 to {max_items} events, got {len(items)}")
    events: list[EventIn] = []
    for i, item in enumerate(items):
        if len(item) > max_item_bytes:
            raise FieldError(None, f"event is larger than {max_item_bytes} bytes", status=413, index=i)
        try:
            events.append(_event_decoder.decode(item))
        except msgspec.ValidationError as exc:
            raise _field_error(exc, bytes(item), index=i) from None
    return events


def _check_text(ev: EventIn) -> None:
    if not _ACTION_RE.match(ev.action):
        raise FieldError("action", f"must match {ACTION_PATTERN}")
    for name in _TEXT_FIELDS:
        value = getattr(ev, name)
        if value is not None and "\x00" in value:
            raise FieldError(name, "must not contain NUL characters")


def _normalise_ip(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        if "%" in value:
            raise ValueError(value)
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise FieldError("ip_address", "must be a valid IPv4 or IPv6 address") from None


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield str(value)


def _search_text(message: str | None, metadata: dict[str, Any] | None) -> str:
    parts = [message] if message else []
    if metadata:
        parts.extend(_strings(metadata))
    return " ".join(parts).replace("\x00", " ")


def new_event_id() -> uuid.UUID:
    return uuid.UUID(bytes=uuid_utils.uuid7().bytes)


def prepare_event(ev: EventIn, *, tenant_id: uuid.UUID, actor: str, now: datetime) -> PreparedEvent:
    """Validate the rules types cannot express, mask, and build the stored event (``FieldError``)."""
    _check_text(ev)
    if ev.timestamp is None:
        timestamp = now
    else:
        timestamp = ev.timestamp.astimezone(UTC)
        if timestamp > now + FUTURE_TOLERANCE:
            raise FieldError("timestamp", "must not be more than 5 minutes in the future")
    ip = _normalise_ip(ev.ip_address)
    masked = mask_event(ev.message, ev.metadata, ev.before_state, ev.after_state)
    if masked.metadata is None and masked.before_state is None and masked.after_state is None:
        payload = None
    else:
        payload = msgspec.json.encode(
            {
                "metadata": masked.metadata,
                "before_state": masked.before_state,
                "after_state": masked.after_state,
            }
        )
    out = EventOut(
        id=new_event_id(),
        tenant_id=tenant_id,
        action=ev.action,
        resource_type=ev.resource_type,
        resource_id=ev.resource_id,
        user_id=ev.user_id if ev.user_id is not None else actor,
        session_id=ev.session_id,
        request_id=ev.request_id,
        severity=ev.severity,
        timestamp=timestamp,
        ip_address=ip,
        user_agent=ev.user_agent,
        message=masked.message,
        before_state=masked.before_state,
        after_state=masked.after_state,
        metadata=masked.metadata,
        received_at=now,
    )
    return PreparedEvent(
        out=out,
        search_text=_search_text(masked.message, masked.metadata),
        payload_plain=payload,
        pii_plain=msgspec.json.encode(masked.pii) if masked.pii else None,
    )


def request_hash(route: str, body: bytes) -> bytes:
    """A fingerprint of a request for Idempotency-Key: the route and the JSON (key order ignored)."""
    try:
        canonical = msgspec.json.encode(_any_decoder.decode(body), order="sorted")
    except msgspec.DecodeError:
        canonical = body
    return hashlib.sha256(route.encode() + b"\x00" + canonical).digest()
