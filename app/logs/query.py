"""The filters of ``GET /api/v1/logs`` (shared by export, stats and stream): parsing and SQL.

Parsing turns raw query parameters into a validated, normalised :class:`LogFilters`; every offending
parameter is named in one ``422`` problem. SQL is built only from fixed fragments with ``$n`` bound
parameters (asyncpg style), always with an explicit ``tenant_id = $1`` (partition pruning; row-level
security is the second wall) and keyset pagination on ``("timestamp", id)``.

``action``, ``resource_type``, ``user_id`` and ``severity`` are repeatable (any of the values matches);
``exclude_action``, ``exclude_resource_type`` and ``exclude_user_id`` (repeatable) leave their values out.
The service's own events (read records and ``auditlog.*`` administration, ``SERVICE_RESOURCE_TYPES``) are
left out unless ``include_system=true`` or a ``resource_type`` filter names one (API.md, "Reading is
audited, and so is administration"), so a poller does not find mostly its own reads.

``q`` is full-text search over the masked message and metadata values (the ``search`` column: the tenant's
keyed blind index, ``db.blind_index``), in ``websearch_to_tsquery``'s syntax: words are ANDed,
``"quoted phrases"``, ``or`` and ``-word`` work as in web search engines, matching is case-insensitive,
by whole word and without stemming; metadata values match by exact word (a phrase: all of its words).
"""

from __future__ import annotations

import ipaddress
import re
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Final, get_args

import msgspec

from app.logs.schemas import ACTION_PATTERN, Severity
from app.web.errors import ApiError
from db.blind_index import SearchIndex
from db.event_filters import (
    COLUMN_COUNT,
    SELECT_COLUMNS,
    SERVICE_EVENTS_SQL,
    STORED_COLUMNS,
    Binder,
    LogFilters,
    filter_predicate,
    is_service_resource_type,
    service_clause,
    service_side,
    where_clauses,
)
from db.fts import search_source

__all__ = [
    "COLUMN_COUNT",
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "MAX_VALUES",
    "SELECT_COLUMNS",
    "SERVICE_EVENTS_SQL",
    "Binder",
    "ListQuery",
    "LogFilters",
    "build_get_sql",
    "build_list_sql",
    "filter_predicate",
    "parse_filters",
    "parse_list_query",
]

DEFAULT_LIMIT: Final = 50
MAX_LIMIT: Final = 1000
MAX_Q_LENGTH: Final = 512
MAX_VALUES: Final = 100
"""Most values one repeatable filter (or exclusion) may list."""
MAX_BRANCHES: Final = 32
"""Most ``UNION ALL`` branches a page query is split into (one per combination of multi-valued filters)."""
_TRUE: Final = frozenset({"true", "1", "yes", "on"})
_FALSE: Final = frozenset({"false", "0", "no", "off"})
SEVERITIES: Final[tuple[str, ...]] = get_args(Severity)
_ACTION_RE: Final = re.compile(ACTION_PATTERN)
_AwareTime = Annotated[datetime, msgspec.Meta(tz=True)]
_ZONE_AS_SPACE: Final = re.compile(r"^(.*\d) (\d{2}(?::?\d{2})?)$")
_TEXT_LIMITS: Final = {
    "resource_id": 256,
    "session_id": 256,
    "request_id": 256,
}
_MANY_LIMITS: Final = {"user_id": 256, "action": 64, "resource_type": 64}
"""The repeatable text filters (and their ``exclude_`` forms), with their longest value."""
FILTER_PARAMS: Final = (
    "start_time",
    "end_time",
    "user_id",
    "action",
    "resource_type",
    "resource_id",
    "severity",
    "session_id",
    "request_id",
    "ip_address",
    "q",
    "exclude_action",
    "exclude_resource_type",
    "exclude_user_id",
    "include_system",
)


class ListQuery(msgspec.Struct, frozen=True, kw_only=True):
    filters: LogFilters
    limit: int = DEFAULT_LIMIT
    cursor: str | None = None


def _one(params: Mapping[str, Sequence[str]], name: str, errors: list[dict[str, Any]]) -> str | None:
    values = [v for v in params.get(name, ()) if v != ""]
    if len(values) > 1:
        errors.append({"field": name, "message": "may be given only once"})
        return None
    return values[0] if values else None


def _parse_time(value: str) -> datetime:
    # An unescaped "+" in a query string arrives as a space: "...T10:00:00 02:00" means "+02:00".
    fixed = _ZONE_AS_SPACE.sub(r"\1+\2", value.strip())
    ts = msgspec.json.decode(msgspec.json.encode(fixed), type=_AwareTime)
    return ts.astimezone(UTC)


def _time(params: Mapping[str, Sequence[str]], name: str, errors: list[dict[str, Any]]) -> datetime | None:
    value = _one(params, name, errors)
    if value is None:
        return None
    try:
        return _parse_time(value)
    except (msgspec.ValidationError, msgspec.DecodeError, ValueError, OverflowError):
        errors.append({"field": name, "message": "must be an RFC 3339 date-time with a time zone"})
        return None


def _many(
    params: Mapping[str, Sequence[str]], name: str, max_len: int, errors: list[dict[str, Any]]
) -> tuple[str, ...]:
    """A repeatable parameter's values, sorted and unique (empty values ignored)."""
    raw = params.get(name, ())
    if not raw:
        return ()
    values = {v for v in raw if v != ""}
    if len(raw) > MAX_VALUES:  # the times given (as documented: maxItems), not the distinct values
        errors.append({"field": name, "message": f"may be given at most {MAX_VALUES} times"})
        return ()
    for value in values:
        if len(value) > max_len:
            errors.append({"field": name, "message": f"must be at most {max_len} characters"})
            return ()
        if name.endswith("action") and not _ACTION_RE.match(value):
            errors.append({"field": name, "message": "must be an upper-case word like CREATE or VIEW"})
            return ()
    return tuple(sorted(values))


def _flag(params: Mapping[str, Sequence[str]], name: str, errors: list[dict[str, Any]]) -> bool:
    value = _one(params, name, errors)
    if value is None:
        return False
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text not in _FALSE:
        errors.append({"field": name, "message": "must be true or false"})
    return False


def parse_filters(params: Mapping[str, Sequence[str]], errors: list[dict[str, Any]]) -> LogFilters:
    """Validate the filter parameters; problems are appended to ``errors`` (field + message)."""
    start = _time(params, "start_time", errors)
    end = _time(params, "end_time", errors)
    if start is not None and end is not None and start > end:
        errors.append({"field": "start_time", "message": "must not be after end_time"})
    texts: dict[str, str | None] = {}
    for name, max_len in _TEXT_LIMITS.items():
        value = _one(params, name, errors)
        if value is not None and len(value) > max_len:
            errors.append({"field": name, "message": f"must be at most {max_len} characters"})
            value = None
        texts[name] = value
    many: dict[str, tuple[str, ...]] = {}
    for name, max_len in _MANY_LIMITS.items():
        many[name] = _many(params, name, max_len, errors)
        many[f"exclude_{name}"] = _many(params, f"exclude_{name}", max_len, errors)
    severities: set[str] = set()
    for raw in params.get("severity", ()):
        for value in (v.strip() for v in raw.split(",")):
            if not value:
                continue
            if value.upper() not in SEVERITIES:
                errors.append({"field": "severity", "message": f"must be one of {', '.join(SEVERITIES)}"})
                break
            severities.add(value.upper())
    ip = _one(params, "ip_address", errors)
    if ip is not None:
        try:
            ip = str(ipaddress.ip_address(ip.strip()))
        except ValueError:
            errors.append({"field": "ip_address", "message": "must be a valid IPv4 or IPv6 address"})
            ip = None
    q = _one(params, "q", errors)
    if q is not None:
        q = q.strip() or None
        if q is not None and len(q) > MAX_Q_LENGTH:
            errors.append({"field": "q", "message": f"must be at most {MAX_Q_LENGTH} characters"})
    return LogFilters(
        start_time=start,
        end_time=end,
        severity=tuple(s for s in SEVERITIES if s in severities),
        ip_address=ip,
        q=q,
        include_system=_flag(params, "include_system", errors),
        resource_id=texts["resource_id"],
        session_id=texts["session_id"],
        request_id=texts["request_id"],
        user_id=many["user_id"],
        action=many["action"],
        resource_type=many["resource_type"],
        exclude_user_id=many["exclude_user_id"],
        exclude_action=many["exclude_action"],
        exclude_resource_type=many["exclude_resource_type"],
    )


def parse_list_query(params: Mapping[str, Sequence[str]]) -> ListQuery:
    """Filters, ``limit`` and ``cursor`` of a list request, or a ``422`` naming every bad parameter."""
    errors: list[dict[str, Any]] = []
    filters = parse_filters(params, errors)
    limit = DEFAULT_LIMIT
    raw_limit = _one(params, "limit", errors)
    if raw_limit is not None:
        text = raw_limit.strip()
        if not text.isascii() or not text.lstrip("+-").isdigit() or not 1 <= int(text) <= MAX_LIMIT:
            errors.append({"field": "limit", "message": f"must be an integer from 1 to {MAX_LIMIT}"})
        else:
            limit = int(text)
    cursor = _one(params, "cursor", errors)
    if errors:
        fields = ", ".join(dict.fromkeys(str(e["field"]) for e in errors))
        raise ApiError(422, f"invalid query parameters: {fields}", errors=errors)
    return ListQuery(filters=filters, limit=limit, cursor=cursor)


def _branches(filters: LogFilters) -> list[tuple[str, tuple[str, ...]]]:
    """The multi-valued equality filters a page query splits into one ``UNION ALL`` branch per combination
    of values (``severity`` first, then ``resource_type``, ``action``, ``user_id``), while the combinations
    stay within ``MAX_BRANCHES``: each branch can then walk one ``(column..., "timestamp", id)`` index in
    keyset order. Filters left out are matched with ``= ANY`` inside every branch."""
    dims: list[tuple[str, tuple[str, ...]]] = []
    product = 1
    for column in ("severity", "resource_type", "action", "user_id"):
        values: tuple[str, ...] = getattr(filters, column)
        if len(values) > 1 and product * len(values) <= MAX_BRANCHES:
            dims.append((column, values))
            product *= len(values)
    return dims


def _side_of(filters: LogFilters, column: str, value: str) -> str:
    """In a page reading both sides of the service-event line, a branch of one ``resource_type`` reads one side:
    its condition (so that the branch walks that side's time index, migration 0019); otherwise nothing."""
    if column != "resource_type" or service_side(filters) is not None:
        return ""
    return f" AND {service_clause(is_service_resource_type(value))}"


def build_list_sql(
    tenant_id: uuid.UUID,
    filters: LogFilters,
    *,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
    search: SearchIndex | None = None,
) -> tuple[str, list[Any]]:
    """``SELECT`` of one page (``limit + 1`` rows, to know whether another page follows).

    Queries with ``q`` read the tenant-scoped views ``audit_logs_fts`` / ``audit_logs_fts_service`` (migrations
    0004, 0019: ``db.fts.search_source``) so that the GIN indexes are usable (the caller sets its search first:
    ``db.fts.bind_search``);
    everything else reads ``audit_logs`` under row-level security. ``search``: the tenant's blind index.
    Several values of a multi-valued filter become one ordered branch per value under a ``UNION ALL`` (see
    ``_branches``), and a page of both sides of the service-event line one branch per side, so that each branch
    can walk an index in keyset order.
    """
    bind = Binder()
    dims = _branches(filters)
    clauses = where_clauses(tenant_id, filters, bind, branched=frozenset(column for column, _ in dims), search=search)
    if after is not None:
        clauses.append(f'("timestamp", id) < ({bind(after[0])}::timestamptz, {bind(after[1])}::uuid)')
    if len(filters.severity) == 1:
        clauses.append(f"severity = {bind(filters.severity[0])}")
    elif filters.severity and not any(column == "severity" for column, _ in dims):
        clauses.append(f"severity = ANY({bind(list(filters.severity))}::text[])")
    side = service_side(filters)
    table = "audit_logs" if filters.q is None else search_source(side)
    where = " AND ".join(clauses)
    combos: list[str] = [""]
    for column, values in dims:
        pairs = [(bind(v), v) for v in values]
        combos = [f"{c} AND {column} = {p}{_side_of(filters, column, v)}" for c in combos for p, v in pairs]
    if filters.q is None and side is None and not any(column == "resource_type" for column, _ in dims):
        combos = [f"{c} AND {service_clause(part)}" for c in combos for part in (False, True)]
    lim = bind(limit + 1)
    if filters.q is None:
        branches = [f"SELECT {STORED_COLUMNS} FROM {table} WHERE {where}{c} {NEWEST_FIRST} LIMIT {lim}" for c in combos]
    else:
        # Every match of the term through its GIN index, and only then the other conditions, the order and the
        # limit: behind OFFSET 0 none of them reaches the matches' plan, so no plan (a prepared statement's
        # generic plan above all, whose estimates of a time window and of the term are fixed guesses) walks the
        # time order testing every row, or ANDs the GIN with a time range read from another index: with an
        # end_time such generic plans took 86-115 ms against 1.1 ms (a rare word, 1M events).
        branches = [
            f"SELECT {STORED_COLUMNS} FROM (SELECT * FROM {table} OFFSET 0) AS matches WHERE {where}{c}"
            f" {NEWEST_FIRST} LIMIT {lim}"
            for c in combos
        ]
    return page_of(branches, lim), bind.args


NEWEST_FIRST: Final = 'ORDER BY "timestamp" DESC, id DESC'
"""The order of every page (the keyset of its cursor)."""


def page_of(branches: list[str], limit: str) -> str:
    """The page's columns (``SELECT_COLUMNS``) of the newest ``limit`` rows of ``branches`` (statements that
    each select ``STORED_COLUMNS`` of ``audit_logs`` or its search view, newest first): the columns are computed
    only for the rows of the page, not for every row a branch sorts or merges (formatting is most of a sorted
    page's cost)."""
    if len(branches) == 1:
        # No second LIMIT: a generic plan estimates a LIMIT $n at a tenth of its input, which made a prepared page's
        # generic plan look cheaper than its custom plans, and a generic plan walks the time order for a rare
        # value too (tests/integration/test_filter_indexes.py::test_a_rare_value_after_common_ones_still_uses_the_gin).
        return f"SELECT {SELECT_COLUMNS} FROM ({branches[0]}) AS audit_logs {NEWEST_FIRST}"
    union = " UNION ALL ".join(f"({b})" for b in branches)
    return f"SELECT {SELECT_COLUMNS} FROM ({union}) AS audit_logs {NEWEST_FIRST} LIMIT {limit}"


def build_get_sql(tenant_id: uuid.UUID, event_id: uuid.UUID) -> tuple[str, list[Any]]:
    """``SELECT`` of one event of the tenant by id."""
    return f"SELECT {SELECT_COLUMNS} FROM audit_logs WHERE tenant_id = $1 AND id = $2", [tenant_id, event_id]
