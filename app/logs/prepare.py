"""Turn request bytes into validated, masked events ready for the writer, before anything is queued.

Everything that can refuse an event happens here, per event and per bulk item, so one bad submission can
never fail the group-commit batch it would have shared with others: JSON itself (``app.web.validation``: UTF-8,
nesting depth), field types (msgspec types in ``schemas``), the rules types cannot say (zone-aware time
between 2000-01-01 and 5 minutes from now, a real IP address, no NUL characters PostgreSQL text cannot
hold), for clients only the resource types reserved for the service, then masking of secrets and PII.
Every bad field is reported, and in a bulk every bad item (up to ``MAX_ERRORS``), not just the first.
The result carries the masked plaintexts the writer encrypts (and indexes: ``db.blind_index``), the COPY row,
and the 201 body.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

import msgspec
import uuid_utils

from app.logs.masking import mask_event
from app.logs.schemas import ACTION_PATTERN, EventIn, EventOut
from app.web.errors import ApiError
from app.web.validation import (
    MAX_ERRORS,
    check_depth,
    decode_json,
    not_json,
    pointer,
    struct_problems,
    too_deep,
    unprocessable,
)

__all__ = [
    "EARLIEST_TIMESTAMP",
    "FUTURE_TOLERANCE",
    "FieldError",
    "FieldErrors",
    "PreparedEvent",
    "prepare_bulk",
    "prepare_client_event",
    "prepare_event",
    "request_hash",
]

FUTURE_TOLERANCE = timedelta(minutes=5)
EARLIEST_TIMESTAMP = datetime(2000, 1, 1, tzinfo=UTC)
"""Events dated before this are refused (a clock at its epoch, a unit mix-up), as in the OpenAPI document."""
_ACTION_RE = re.compile(ACTION_PATTERN.rstrip("$") + r"\Z")
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
_any_decoder = msgspec.json.Decoder()


class _RawItems(msgspec.Struct, forbid_unknown_fields=True):
    items: list[msgspec.Raw]


_raw_bulk_decoder = msgspec.json.Decoder(list[msgspec.Raw] | _RawItems)


class FieldError(Exception):
    """A refused event: ``status`` (400 malformed, 413 too large, 422 invalid), the field and why.

    ``path`` locates the value inside the event (``("metadata", "a")``); ``index`` is the bulk item.
    """

    def __init__(
        self,
        field: str | None,
        message: str,
        *,
        status: int = 422,
        index: int | None = None,
        path: tuple[str | int, ...] | None = None,
    ) -> None:
        super().__init__(message)
        self.field = field
        self.message = message
        self.status = status
        self.index = index
        self.path: tuple[str | int, ...] = path if path is not None else ((field,) if field else ())
        self.prefix: tuple[str | int, ...] = ()
        """Where the event sits in the body (bulk: ``(i,)`` or ``("items", i)``)."""

    def as_error(self) -> dict[str, Any]:
        err: dict[str, Any] = {"field": self.field or "body", "pointer": pointer((*self.prefix, *self.path)),
                               "message": self.message}  # fmt: skip
        if self.index is not None:
            err = {"index": self.index, **err}
        return err

    def detail(self) -> str:
        where = f"{self.field}: " if self.field else ""
        prefix = f"item {self.index}: " if self.index is not None else ""
        return f"{prefix}{where}{self.message}"

    def problem(self) -> ApiError:
        """The problem response (400/413 with one error, 422 listing every error)."""
        if self.status == 422:
            return unprocessable([self.as_error()])
        return ApiError(self.status, self.detail(), errors=[self.as_error()])


class FieldErrors(FieldError):
    """Several refusals at once (every bad field, every bad bulk item, up to ``MAX_ERRORS``)."""

    def __init__(self, errors: list[FieldError], *, more: int = 0) -> None:
        first = errors[0]
        super().__init__(first.field, first.message, status=first.status, index=first.index, path=first.path)
        self.prefix = first.prefix
        self.errors = errors
        self.more = more

    def detail(self) -> str:
        return "; ".join(e.detail() for e in self.errors)

    def problem(self) -> ApiError:
        return unprocessable([e.as_error() for e in self.errors], more=self.more)


def _refuse(errors: list[FieldError]) -> NoReturn:
    if len(errors) == 1:
        raise errors[0]
    raise FieldErrors(errors) if errors else FieldError(None, "is not valid")


def _check(errors: list[FieldError]) -> None:
    if errors:
        _refuse(errors)


@dataclass(slots=True)
class PreparedEvent:
    """One validated, masked event. ``payload_plain``/``pii_plain`` are encrypted by the writer."""

    out: EventOut
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


def _type_errors(body: bytes, max_depth: int) -> list[FieldError]:
    """Every field of an event body that breaks its type (after the typed decoder refused it)."""
    data = decode_json(body, max_depth=max_depth)  # 400 when it is not JSON at all
    problems = struct_problems(data, EventIn)
    return [FieldError(_field_name(p.path), p.message, path=p.path) for p in problems] or [
        FieldError(None, "is not a valid event")
    ]


def _field_name(path: tuple[str | int, ...]) -> str | None:
    return ".".join(str(p) for p in path if not isinstance(p, int)) or None


def decode_event(body: bytes, *, max_depth: int) -> EventIn:
    """Decode one event: 400 (not JSON, nested too deeply), 422 naming every field of the wrong type."""
    try:
        event = _event_decoder.decode(body)
    except msgspec.ValidationError:
        _refuse(_type_errors(body, max_depth))
    except (msgspec.DecodeError, UnicodeDecodeError):
        raise not_json() from None
    except RecursionError:
        raise too_deep(max_depth) from None
    if body.count(b"{") + body.count(b"[") > max_depth:  # could nest too deeply: look (rare)
        check_depth(body, _any_decoder.decode(body), max_depth)
    return event


def _decode_bulk_body(body: bytes, max_items: int, max_depth: int) -> tuple[list[msgspec.Raw], tuple[str, ...]]:
    try:
        raw = _raw_bulk_decoder.decode(body)
    except msgspec.ValidationError:
        data = decode_json(body, max_depth=max_depth)  # 400 when it is not JSON at all
        if not isinstance(data, dict):
            raise FieldError(None, "must be a JSON array of events or an object with an items array") from None
        _refuse([FieldError(_field_name(p.path), p.message, path=p.path) for p in struct_problems(data, _RawItems)])
    except (msgspec.DecodeError, UnicodeDecodeError):
        raise not_json() from None
    except RecursionError:
        raise too_deep(max_depth) from None
    items, prefix = (raw.items, ("items",)) if isinstance(raw, _RawItems) else (raw, ())
    if not 1 <= len(items) <= max_items:
        raise FieldError("items", f"must hold 1 to {max_items} events, got {len(items)}", path=prefix)
    return items, prefix


def _rule_errors(ev: EventIn, now: datetime) -> tuple[list[FieldError], str | None]:
    """The rules the types cannot express (every one checked, so all are reported together), and the
    address in canonical form (parsed once, here)."""
    errors: list[FieldError] = []
    if not _ACTION_RE.match(ev.action):
        errors.append(FieldError("action", f"must match {ACTION_PATTERN}"))
    for name in _TEXT_FIELDS:
        value = getattr(ev, name)
        if value is not None and "\x00" in value:
            errors.append(FieldError(name, "must not contain NUL characters"))
    if ev.timestamp is not None:
        timestamp = ev.timestamp.astimezone(UTC)
        if timestamp > now + FUTURE_TOLERANCE:
            errors.append(FieldError("timestamp", "must not be more than 5 minutes in the future"))
        elif timestamp < EARLIEST_TIMESTAMP:
            errors.append(FieldError("timestamp", f"must not be before {EARLIEST_TIMESTAMP:%Y-%m-%dT%H:%M:%SZ}"))
    ip = None
    if ev.ip_address is not None:
        ip = canonical_ip(ev.ip_address)
        if ip is None:
            errors.append(FieldError("ip_address", "must be a valid IPv4 or IPv6 address"))
    return errors, ip


@functools.cache
def _is_reserved() -> Callable[[str], bool]:
    # ``app.audit_trail.service_events`` imports this module: bind its check on first use, once.
    from app.audit_trail.service_events import is_service_resource_type

    return is_service_resource_type


def _client_errors(ev: EventIn, now: datetime) -> tuple[list[FieldError], str | None]:
    """``_rule_errors`` plus what only clients may not do: use a resource type reserved for the service."""
    errors, ip = _rule_errors(ev, now)
    if _is_reserved()(ev.resource_type):
        errors.append(FieldError("resource_type", "is reserved for the service's own events (audit_log, auditlog.*)"))
    return errors, ip


_DOTTED_QUAD = re.compile(
    r"(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
)
"""An IPv4 address already in canonical form (no leading zeros): most addresses, kept as they are, without
``ipaddress`` (a fifth of the Python an event costs at ingest, for the address alone)."""


def canonical_ip(value: str) -> str | None:
    """The address in canonical text (IPv4-mapped IPv6 as ``::ffff:1.2.3.4``), or ``None`` if not one."""
    if _DOTTED_QUAD.fullmatch(value):
        return value
    return parsed_ip(value)


def parsed_ip(value: str) -> str | None:
    """:func:`canonical_ip` by ``ipaddress`` alone, for any address (the fast path's reference in the tests)."""
    if "%" in value:  # a zone id is not an address
        return None
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return f"::ffff:{ip.ipv4_mapped}"
    return str(ip)


def new_event_id() -> uuid.UUID:
    return uuid.UUID(bytes=uuid_utils.uuid7().bytes)


def prepare_event(ev: EventIn, *, tenant_id: uuid.UUID, actor: str, now: datetime) -> PreparedEvent:
    """Validate the rules types cannot express, mask, and build the stored event (``FieldError``).

    The service's own writers (read audit, administrative events) call this directly; client events come
    through :func:`prepare_client_event` / :func:`prepare_bulk`, which also refuse reserved resource types.
    """
    errors, ip = _rule_errors(ev, now)
    _check(errors)
    return _build(ev, ip, tenant_id=tenant_id, actor=actor, now=now)


def _build(ev: EventIn, ip: str | None, *, tenant_id: uuid.UUID, actor: str, now: datetime) -> PreparedEvent:
    """The stored event from a validated one (``ip``: its address in canonical form)."""
    timestamp = now if ev.timestamp is None else ev.timestamp.astimezone(UTC)
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
        payload_plain=payload,
        pii_plain=msgspec.json.encode(masked.pii) if masked.pii else None,
    )


def prepare_client_event(
    body: bytes, *, tenant_id: uuid.UUID, actor: str, now: datetime, max_depth: int
) -> PreparedEvent:
    """One client event from its bytes: 400 (not JSON, too deep) or 422 naming every bad field."""
    event = decode_event(body, max_depth=max_depth)
    errors, ip = _client_errors(event, now)
    _check(errors)
    return _build(event, ip, tenant_id=tenant_id, actor=actor, now=now)


def prepare_bulk(
    body: bytes,
    *,
    tenant_id: uuid.UUID,
    actor: str,
    now: datetime,
    max_items: int,
    max_item_bytes: int,
    max_depth: int,
) -> list[PreparedEvent]:
    """A bulk body (an array, or ``{"items": [...]}``), all or nothing.

    Every bad item is reported (up to ``MAX_ERRORS`` errors), each error with the item's ``index``; nothing is
    prepared for storage unless every item is valid.
    """
    items, prefix = _decode_bulk_body(body, max_items, max_depth)
    valid: list[tuple[EventIn, str | None]] = []
    errors: list[FieldError] = []
    more = 0
    for index, item in enumerate(items):
        if len(item) > max_item_bytes:
            found = [FieldError(None, f"event is larger than {max_item_bytes} bytes", status=413)]
        else:
            try:
                event = decode_event(bytes(item), max_depth=max_depth)
            except FieldError as exc:
                found = exc.errors if isinstance(exc, FieldErrors) else [exc]
            except ApiError as exc:  # this item is not JSON the decoder accepts (too deep)
                found = [FieldError(None, exc.detail, status=400)]
            else:
                found, ip = _client_errors(event, now)
                valid.append((event, ip))
        for err in found:
            if err.status != 422:  # too large or too deep: that status for the whole body, this item named
                err.index, err.prefix = index, (*prefix, index)
                raise err
            if len(errors) < MAX_ERRORS:
                err.index, err.prefix = index, (*prefix, index)
                errors.append(err)
            else:
                more += 1
    if errors:
        raise FieldErrors(errors, more=more)
    return [_build(ev, ip, tenant_id=tenant_id, actor=actor, now=now) for ev, ip in valid]


def request_hash(route: str, body: bytes) -> bytes:
    """A fingerprint of a request for Idempotency-Key: the route and the JSON (key order ignored)."""
    try:
        canonical = msgspec.json.encode(_any_decoder.decode(body), order="sorted")
    except msgspec.DecodeError:
        canonical = body
    return hashlib.sha256(route.encode() + b"\x00" + canonical).digest()
