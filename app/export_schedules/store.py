"""A tenant's export schedules in PostgreSQL: create, list, read, change, delete, their runs, and loading one
for a run (credentials decrypted).

The destination (URL, credentials, extra headers) and the signing secret are encrypted with the tenant's data
key, bound to the schedule's id, so a database copy holds no usable credential; responses show
``destination_display`` only. Filters are validated by ``GET /logs``'s own parser, so a schedule exports exactly
what those filters list. Every statement names the tenant, on a tenant-bound connection (row-level security).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import asyncpg
import msgspec

from app.export_schedules.destinations import RESERVED_HEADERS, check_destination, display
from app.export_schedules.schemas import (
    Destination,
    DestinationOut,
    HttpDestination,
    RunOut,
    ScheduleCreate,
    ScheduleCreated,
    ScheduleFilters,
    ScheduleOut,
    SchedulePatch,
)
from app.export_schedules.windows import align
from app.logs.query import LogFilters, parse_filters
from app.outbound.signing import new_secret
from app.outbound.url_guard import UnsafeURL
from app.web.errors import ApiError, NotFound
from db.keyring import KeyringStore

__all__ = [
    "DESTINATION_FIELD",
    "MAX_SCHEDULES_PER_TENANT",
    "SECRET_FIELD",
    "LoadedSchedule",
    "create_schedule",
    "delete_schedule",
    "filters_json",
    "get_schedule",
    "list_runs",
    "list_schedules",
    "load_schedule",
    "schedule_filters",
    "update_schedule",
]

DESTINATION_FIELD: Final = "export_destination"
SECRET_FIELD: Final = "export_schedule_secret"  # noqa: S105 - the name of an encryption context
MAX_SCHEDULES_PER_TENANT: Final = 50
MAX_BACKFILL: Final = timedelta(days=366)
_destination_decoder = msgspec.json.Decoder(Destination)
_filters_decoder = msgspec.json.Decoder(ScheduleFilters)
_COLUMNS = (
    "id, name, every, format, filters, destination_display, enabled, next_window_start, retry_at, last_error,"
    " last_delivered_at, created_at, updated_at"
)


def _as_params(filters: Mapping[str, Any]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, value in filters.items():
        items = value if isinstance(value, list) else [value]
        out[key] = ["true" if v is True else "false" if v is False else str(v) for v in items]
    return out


def filters_json(filters: ScheduleFilters) -> dict[str, Any]:
    """The filters as stored and shown (only those given)."""
    out: dict[str, Any] = msgspec.to_builtins(filters)
    return out


def schedule_filters(filters: ScheduleFilters | Mapping[str, Any]) -> LogFilters:
    """A schedule's filters as the ``GET /logs`` filter set (``ApiError`` 422 naming each bad field: the rules the
    body's schema cannot state, e.g. ``start_time`` after ``end_time``, a malformed IP address)."""
    given = filters_json(filters) if isinstance(filters, ScheduleFilters) else dict(filters)
    errors: list[dict[str, Any]] = []
    parsed = parse_filters(_as_params(given), errors)
    if errors:
        for e in errors:
            e["field"] = f"filters.{e['field']}"
        raise ApiError(422, "invalid filters", errors=errors)
    return parsed


def _check_headers(dest: Destination) -> None:
    if not isinstance(dest, HttpDestination) or not dest.headers:
        return
    bad = sorted(n for n in dest.headers if n.lower() in RESERVED_HEADERS or n.lower().startswith("x-auditlog-"))
    if bad:
        message = f"may not set {', '.join(bad)}: the service sends these headers itself"
        raise ApiError(
            422, f"destination.headers {message}", errors=[{"field": "destination.headers", "message": message}]
        )


async def _check_destination(dest: Destination, allow_private: bool) -> None:
    _check_headers(dest)
    field = "destination.endpoint_url" if dest.__struct_config__.tag == "s3" else "destination.url"
    try:
        await check_destination(dest, allow_private=allow_private)
    except UnsafeURL as exc:
        raise ApiError(422, f"{field} {exc}", errors=[{"field": field, "message": str(exc)}]) from None


def _out(row: asyncpg.Record) -> ScheduleOut:
    filters = row["filters"]
    shown = row["destination_display"]
    return ScheduleOut(
        id=row["id"],
        name=row["name"],
        every=row["every"],
        format=row["format"],
        filters=_filters_decoder.decode(filters)
        if isinstance(filters, str)
        else msgspec.convert(filters, ScheduleFilters),
        destination=msgspec.json.decode(
            shown if isinstance(shown, str | bytes) else msgspec.json.encode(shown), type=DestinationOut
        ),
        enabled=row["enabled"],
        next_window_start=row["next_window_start"],
        retry_at=row["retry_at"],
        last_error=row["last_error"],
        last_delivered_at=row["last_delivered_at"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _start(data: ScheduleCreate, now: datetime) -> datetime:
    if data.start_at is None:
        return align(now, data.every)
    if abs(data.start_at - now) > MAX_BACKFILL:
        raise ApiError(
            422,
            "start_at must be within 366 days of now",
            errors=[{"field": "start_at", "message": "must be within 366 days of now"}],
        )
    return align(data.start_at, data.every)


async def create_schedule(
    conn: asyncpg.Connection,
    keyrings: KeyringStore,
    tenant_id: uuid.UUID,
    data: ScheduleCreate,
    *,
    actor: str,
    allow_private: bool,
    now: datetime | None = None,
) -> ScheduleCreated:
    """Store a new schedule (``conn``: bound to ``tenant_id``, in a transaction); its secret is in the answer only."""
    schedule_filters(data.filters)
    await _check_destination(data.destination, allow_private)
    start = _start(data, now or datetime.now(UTC))
    count = await conn.fetchval("SELECT count(*) FROM export_schedules WHERE tenant_id = $1", tenant_id)
    if count >= MAX_SCHEDULES_PER_TENANT:
        raise ApiError(409, f"a tenant may have at most {MAX_SCHEDULES_PER_TENANT} export schedules")
    schedule_id = uuid.uuid4()
    secret = new_secret()
    keyring = await keyrings.get(conn, tenant_id)
    row = await conn.fetchrow(
        "INSERT INTO export_schedules (tenant_id, id, name, every, format, filters, destination_type,"
        " destination_display, destination, secret, enabled, next_window_start, created_by)"
        " VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8::jsonb, $9, $10, $11, $12, $13)"
        f" RETURNING {_COLUMNS}",
        tenant_id,
        schedule_id,
        data.name,
        data.every,
        data.format,
        msgspec.json.encode(filters_json(data.filters)).decode(),
        data.destination.__struct_config__.tag,
        msgspec.json.encode(display(data.destination)).decode(),
        keyring.encrypt(msgspec.json.encode(data.destination), event_id=schedule_id, field=DESTINATION_FIELD),
        keyring.encrypt(secret.encode(), event_id=schedule_id, field=SECRET_FIELD),
        data.enabled,
        start,
        actor,
    )
    assert row is not None
    return ScheduleCreated(**msgspec.structs.asdict(_out(row)), secret=secret)


async def list_schedules(conn: asyncpg.Connection, tenant_id: uuid.UUID) -> list[ScheduleOut]:
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM export_schedules WHERE tenant_id = $1 ORDER BY created_at, id", tenant_id
    )
    return [_out(r) for r in rows]


async def get_schedule(conn: asyncpg.Connection, tenant_id: uuid.UUID, schedule_id: uuid.UUID) -> ScheduleOut:
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM export_schedules WHERE tenant_id = $1 AND id = $2", tenant_id, schedule_id
    )
    if row is None:
        raise NotFound("export schedule")
    return _out(row)


async def update_schedule(
    conn: asyncpg.Connection,
    keyrings: KeyringStore,
    tenant_id: uuid.UUID,
    schedule_id: uuid.UUID,
    data: SchedulePatch,
    *,
    allow_private: bool,
) -> tuple[ScheduleOut, list[str]]:
    """Apply the fields given; returns the schedule and the names of the fields changed. The cursor stays: a
    changed period applies from the next window (``windows.window_end``); a new destination is tried at once."""
    await get_schedule(conn, tenant_id, schedule_id)
    changed = [f for f in data.__struct_fields__ if getattr(data, f) is not msgspec.UNSET]
    sets: list[str] = []
    args: list[Any] = [tenant_id, schedule_id]

    def put(column: str, value: Any, cast: str = "") -> None:
        args.append(value)
        sets.append(f"{column} = ${len(args)}{cast}")

    for name in ("name", "every", "format", "enabled"):
        value = getattr(data, name)
        if value is not msgspec.UNSET:
            put(name, value)
    if not isinstance(data.filters, msgspec.UnsetType):
        schedule_filters(data.filters)
        put("filters", msgspec.json.encode(filters_json(data.filters)).decode(), "::jsonb")
    if not isinstance(data.destination, msgspec.UnsetType):
        dest = data.destination
        await _check_destination(dest, allow_private)
        keyring = await keyrings.get(conn, tenant_id)
        put("destination_type", dest.__struct_config__.tag)
        put("destination_display", msgspec.json.encode(display(dest)).decode(), "::jsonb")
        put("destination", keyring.encrypt(msgspec.json.encode(dest), event_id=schedule_id, field=DESTINATION_FIELD))
        sets.append("retry_at = NULL")
    sets.append("updated_at = now()")
    row = await conn.fetchrow(
        f"UPDATE export_schedules SET {', '.join(sets)} WHERE tenant_id = $1 AND id = $2 RETURNING {_COLUMNS}", *args
    )
    if row is None:
        raise NotFound("export schedule")
    return _out(row), changed


async def delete_schedule(conn: asyncpg.Connection, tenant_id: uuid.UUID, schedule_id: uuid.UUID) -> ScheduleOut:
    row = await conn.fetchrow(
        f"DELETE FROM export_schedules WHERE tenant_id = $1 AND id = $2 RETURNING {_COLUMNS}", tenant_id, schedule_id
    )
    if row is None:
        raise NotFound("export schedule")
    return _out(row)


async def list_runs(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, schedule_id: uuid.UUID, *, limit: int
) -> list[RunOut]:
    await get_schedule(conn, tenant_id, schedule_id)
    rows = await conn.fetch(
        "SELECT id, window_start, window_end, trigger, attempt, status, rows, bytes, http_status, error, location,"
        " started_at, finished_at FROM export_schedule_runs WHERE tenant_id = $1 AND schedule_id = $2"
        " ORDER BY started_at DESC, attempt DESC LIMIT $3",
        tenant_id,
        schedule_id,
        limit,
    )
    return [RunOut(**dict(r)) for r in rows]


@dataclass(frozen=True)
class LoadedSchedule:
    """A schedule as a run needs it: credentials and secret decrypted (never logged, never returned)."""

    tenant_id: uuid.UUID
    id: uuid.UUID
    name: str
    every: str
    format: str
    filters: dict[str, Any]
    destination: Destination
    secret: str
    enabled: bool
    next_window_start: datetime
    attempts: int
    retry_at: datetime | None

    def __repr__(self) -> str:  # keep credentials out of tracebacks and debug output
        return f"LoadedSchedule(tenant_id={self.tenant_id}, id={self.id}, every={self.every!r})"


async def load_schedule(
    conn: asyncpg.Connection, keyrings: KeyringStore, tenant_id: uuid.UUID, schedule_id: uuid.UUID
) -> LoadedSchedule | None:
    """The schedule with its destination decrypted, or ``None`` (``conn``: bound to ``tenant_id``)."""
    row = await conn.fetchrow(
        "SELECT id, name, every, format, filters, destination, secret, enabled, next_window_start, attempts, retry_at"
        " FROM export_schedules WHERE tenant_id = $1 AND id = $2",
        tenant_id,
        schedule_id,
    )
    if row is None:
        return None
    keyring = await keyrings.get(conn, tenant_id)
    destination = _destination_decoder.decode(
        keyring.decrypt(bytes(row["destination"]), event_id=schedule_id, field=DESTINATION_FIELD)
    )
    secret = keyring.decrypt(bytes(row["secret"]), event_id=schedule_id, field=SECRET_FIELD).decode()
    filters = row["filters"]
    return LoadedSchedule(
        tenant_id=tenant_id,
        id=schedule_id,
        name=row["name"],
        every=row["every"],
        format=row["format"],
        filters=msgspec.json.decode(filters) if isinstance(filters, str) else filters,
        destination=destination,
        secret=secret,
        enabled=row["enabled"],
        next_window_start=row["next_window_start"],
        attempts=row["attempts"],
        retry_at=row["retry_at"],
    )
