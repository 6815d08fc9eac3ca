"""Reading events: ``GET /api/v1/logs`` (filtered, keyset-paginated list) and ``GET /api/v1/logs/{id}``.

The hot path runs one hand-written statement (a ``q`` page up to three: ``app.logs.search_page``), in one
round trip, on a read-only connection bound to the caller's tenant (``TenantDB.read``: asyncpg, which prepares
and caches it per connection), decrypts the payloads of the rows it returns and nothing else (their JSON is
passed through, not parsed again), and queues a read-audit record without waiting for it to be written.

Registration: ``list_logs`` is a plain handler on ``/api/v1/logs``, not part of a controller, and must be
registered *after* any controller that also serves ``/api/v1/logs`` itself (``LogIngestController``'s
POST): in Litestar 2 two routers/controllers on the same path both bring an automatic OPTIONS handler and
the app refuses to start ("Handler already registered ... OPTIONS"); a plain handler added later merges.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

import msgspec
from litestar import Controller, Request, get
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Operation
from litestar.params import FromPath

from app.dependencies import runtime_of
from app.guards import READERS, principal_of
from app.logs.cursor import CursorError, CursorPosition, cursor_codec
from app.logs.query import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    MAX_VALUES,
    SEVERITIES,
    build_get_sql,
    build_list_sql,
    parse_list_query,
)
from app.logs.rows import PageWire, row_to_wire, rows_to_wire
from app.logs.schemas import ACTION_PATTERN, EventOut, EventPage
from app.logs.search_page import fetch_search_page
from app.read_audit import record_request_read
from app.runtime import Runtime
from app.web.errors import ApiError, NotFound
from app.web.responses import EncodedJSON
from db.blind_index import search_index

if TYPE_CHECKING:
    from app.auth.principal import Principal

__all__ = ["LogQueryController", "list_logs"]

_TIME_DOC = "RFC 3339 date-time with a zone (e.g. 2026-01-31T12:00:00Z); naive times are refused. Inclusive."
_Q_DOC = (
    "Full-text search over the (masked) message and metadata values, web-search syntax: words are ANDed, "
    '"quoted phrase", `or`, `-word`; case-insensitive, whole words, no stemming. Metadata values are indexed '
    "as keyed tokens (never in clear), so they match by exact word, a phrase by all of its words."
)

_LIST_PROBLEMS = {
    400: ResponseSpec(None, description="Bad, tampered or mismatched `cursor` (problem details naming `cursor`)"),
    401: ResponseSpec(None, description="No or bad credentials"),
    403: ResponseSpec(None, description="Role may not read events"),
    422: ResponseSpec(None, description="Invalid query parameters; `errors` names each one"),
    500: ResponseSpec(None, description="An event payload failed its integrity check (no detail is given)"),
    503: ResponseSpec(
        None,
        description="The query ran past `AUDIT_READ_STATEMENT_TIMEOUT_MS` and was cancelled; narrow the window or "
        "the filters (`Retry-After` is set)",
    ),
}
_GET_PROBLEMS = {
    401: _LIST_PROBLEMS[401],
    403: _LIST_PROBLEMS[403],
    404: ResponseSpec(None, description="No such event in the caller's tenant"),
    500: _LIST_PROBLEMS[500],
    503: _LIST_PROBLEMS[503],
}


def _json(body: msgspec.Struct) -> Any:
    """The response, encoded here once; the handler's annotation still documents :class:`EventOut`."""
    return EncodedJSON(msgspec.json.encode(body))


def _audit(
    request: Request[Any, Any, Any],
    runtime: Runtime,
    principal: Principal,
    route: str,
    details: dict[str, Any],
    *,
    resource_id: str | None = None,
) -> None:
    record_request_read(request, runtime, principal, "VIEW", route, details, resource_id=resource_id)


def _param(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}


_TIME = {"type": "string", "format": "date-time"}
_TEXT = {"type": "string"}


# ``GET /api/v1/logs`` reads its query string itself (``parse_list_query``: one pass, every bad parameter named
# in one 422), so the handler declares no query parameters for Litestar to parse a second time; they are
# documented here instead.
def _repeatable(name: str, description: str, items: dict[str, Any] | None = None) -> dict[str, Any]:
    schema = {"type": "array", "items": items or _TEXT, "maxItems": MAX_VALUES}
    return {**_param(name, description, schema), "style": "form", "explode": True}


_ACTION = {"type": "string", "pattern": ACTION_PATTERN, "maxLength": 64}
_SYSTEM_DOC = (
    "Also list the service's own events: read records (`resource_type` `audit_log`, written for every read) "
    "and administrative events (`auditlog.tenant`, `auditlog.user`, `auditlog.api_key`, `auditlog.session`, "
    "`auditlog.data_key`). Default `false`: they are left out, unless a `resource_type` filter names one of "
    "them. `true`/`false` (also `1`/`0`)."
)
_LIST_PARAMETERS = [
    _param("start_time", _TIME_DOC, _TIME),
    _param("end_time", _TIME_DOC, _TIME),
    _repeatable("user_id", "The actor (exact match); repeatable: any of the values.", {**_TEXT, "maxLength": 256}),
    _repeatable("action", "e.g. CREATE, VIEW (exact match); repeatable: any of the values.", _ACTION),
    _repeatable(
        "resource_type",
        "Exact match; repeatable: any of the values. Naming a service type (`audit_log`, `auditlog.*`) lists "
        "those service events without `include_system`.",
        {**_TEXT, "maxLength": 64},
    ),
    _param("resource_id", "Exact match.", _TEXT),
    _repeatable(
        "severity",
        "INFO, WARNING, ERROR, CRITICAL; repeatable (or comma-separated): any of the values.",
        {"type": "string", "enum": list(SEVERITIES)},
    ),
    _param("session_id", "Exact match.", _TEXT),
    _param("request_id", "Exact match (correlation id).", _TEXT),
    _param("ip_address", "An IPv4 or IPv6 address.", _TEXT),
    _param("q", _Q_DOC, _TEXT),
    _repeatable(
        "exclude_user_id",
        "Leave out events by these actors (exact match; repeatable). Events without a user_id are kept.",
        {**_TEXT, "maxLength": 256},
    ),
    _repeatable("exclude_action", "Leave out events with these actions (exact match; repeatable).", _ACTION),
    _repeatable(
        "exclude_resource_type",
        "Leave out events of these resource types (exact match; repeatable).",
        {**_TEXT, "maxLength": 64},
    ),
    _param("include_system", _SYSTEM_DOC, {"type": "boolean", "default": False}),
    _param(
        "limit",
        f"Page size, 1-{MAX_LIMIT} (default {DEFAULT_LIMIT}).",
        {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
    ),
    _param("cursor", "`next_cursor` of the previous page.", _TEXT),
]


class _ListOperation(Operation):
    def to_schema(self) -> dict[str, Any]:
        out = super().to_schema()
        out["parameters"] = [*out.get("parameters", []), *_LIST_PARAMETERS]
        return out


@get(
    "/api/v1/logs",
    guards=[READERS],
    tags=["logs"],
    name="list_logs",
    responses=_LIST_PROBLEMS,
    operation_class=_ListOperation,
    summary="List and search events (newest first, keyset pagination)",
    description=(
        "Events of the caller's tenant, `timestamp` desc then `id` desc. All filters are ANDed; the values "
        "of one repeatable filter are ORed, and `exclude_*` values are left out. The service's own events "
        "(the read records every read writes, and administrative events) are left out unless "
        "`include_system=true` or a `resource_type` filter names one; `GET /logs/{id}` returns any event. "
        "`next_cursor` is an opaque token bound to the tenant and to this exact filter set; pass it as "
        "`cursor` with the same filters for the next page (`limit` may change). It is `null` on the last "
        "page. Pages stay disjoint and complete while new events arrive. Invalid parameters answer 422 "
        "naming each one; a bad, tampered or mismatched cursor answers 400."
    ),
)
async def list_logs(request: Request[Any, Any, Any]) -> EventPage:
    runtime = runtime_of(request)
    principal = principal_of(request)
    query = parse_list_query(request.query_params.dict())
    tenant_id = principal.tenant_id
    fingerprint = query.filters.fingerprint()
    codec = cursor_codec(runtime.settings.master_key or "")
    after = None
    if query.cursor is not None:
        try:
            pos = codec.decode(query.cursor, tenant_id=tenant_id, fingerprint=fingerprint)
        except CursorError as exc:
            raise ApiError(400, f"invalid cursor: {exc}", errors=[{"field": "cursor", "message": str(exc)}]) from None
        after = (pos.timestamp, pos.id)
    async with runtime.db.read(tenant_id) as pg:
        keyring = await runtime.keyrings.get(pg, tenant_id)
        if query.filters.q is not None:  # a bounded walk first, the GIN index for rare terms (search_page)
            search = search_index(keyring)
            rows, _ = await fetch_search_page(
                pg, tenant_id, query.filters, search, after=after, limit=query.limit, rare=runtime.rare_searches
            )
        else:
            sql, args = build_list_sql(tenant_id, query.filters, after=after, limit=query.limit)
            rows = await pg.fetch(sql, *args)
    more = len(rows) > query.limit
    if more:
        rows = rows[: query.limit]
    items = rows_to_wire(rows, keyring)
    next_cursor = None
    if more:
        last = items[-1]
        next_cursor = codec.encode(
            CursorPosition(timestamp=datetime.fromisoformat(last.timestamp), id=last.id),
            tenant_id=tenant_id,
            fingerprint=fingerprint,
        )
    details = {"filters": query.filters.describe(), "count": len(items), "limit": query.limit,
               "continued": query.cursor is not None}  # fmt: skip
    _audit(request, runtime, principal, "/api/v1/logs", details)
    return _json(PageWire(items=items, next_cursor=next_cursor))


class LogQueryController(Controller):
    path = "/api/v1/logs"
    tags = ["logs"]

    @get(
        ["/{event_id:uuid}"],
        guards=[READERS],
        summary="One event by id",
        description="The event, or 404 if it does not exist in the caller's tenant.",
        responses=_GET_PROBLEMS,
    )
    async def get_event(self, request: Request[Any, Any, Any], event_id: FromPath[uuid.UUID]) -> EventOut:
        runtime = runtime_of(request)
        principal = principal_of(request)
        sql, args = build_get_sql(principal.tenant_id, event_id)
        async with runtime.db.read(principal.tenant_id) as pg:
            row = await pg.fetchrow(sql, *args)
            keyring = await runtime.keyrings.get(pg, principal.tenant_id) if row is not None else None
        event = row_to_wire(row, keyring) if row is not None and keyring is not None else None
        _audit(
            request,
            runtime,
            principal,
            "/api/v1/logs/{id}",
            {"count": int(event is not None)},
            resource_id=str(event_id),
        )
        if event is None:
            raise NotFound("event")
        return _json(event)
