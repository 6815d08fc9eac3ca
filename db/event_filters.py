"""The event filter set and the SQL it stands for: one definition shared by every reader of events.

``GET /logs`` (``app.logs.query`` parses the query string into a :class:`LogFilters`), the live stream, the
alert evaluator and the analytics hot tail all restrict ``audit_logs`` with :func:`filter_predicate` /
:func:`where_clauses`, so a filter means the same everywhere. It lives below ``app`` and ``analytics`` so that
both can use it without depending on each other. SQL is built only from fixed fragments with ``$n`` bound
parameters (asyncpg style), always with an explicit ``tenant_id``. ``q`` needs the tenant's blind index
(``db.blind_index.search_index(keyring)``), which turns it into the ``tsquery`` the ``search`` column answers.

The service's own events (read records ``audit_log``/``audit_log_pii`` and ``auditlog.*`` administration)
are left out unless ``include_system`` is set or a ``resource_type`` filter names one (API.md, "Reading is
audited, and so is administration").
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Final

import msgspec

from db.blind_index import SearchIndex

__all__ = [
    "COLUMN_COUNT",
    "MULTI_VALUED",
    "READ_AUDIT",
    "READ_AUDIT_PII",
    "SELECT_COLUMNS",
    "SERVICE_EVENTS_SQL",
    "STORED_COLUMNS",
    "Binder",
    "LogFilters",
    "filter_predicate",
    "is_service_resource_type",
    "service_clause",
    "service_side",
    "where_clauses",
]

READ_AUDIT: Final = "audit_log"
"""The resource type of read records (``VIEW``/``EXPORT``/``QUERY``), written by ``app.read_audit``."""
READ_AUDIT_PII: Final = "audit_log_pii"
"""The resource type of the record of an unmasking read (``GET /logs/{id}/pii``)."""
SERVICE_EVENTS_SQL: Final = (
    f"(resource_type IN ('{READ_AUDIT}', '{READ_AUDIT_PII}') OR lower(resource_type) LIKE 'auditlog.%')"
)
"""True for the service's own events: exactly :func:`is_service_resource_type`."""
MULTI_VALUED: Final = ("user_id", "action", "resource_type")
_NULLABLE: Final = frozenset({"user_id"})


def is_service_resource_type(resource_type: str) -> bool:
    """True for the types only the service writes (``audit_log``, ``audit_log_pii``, anything ``auditlog.*``)."""
    return resource_type in (READ_AUDIT, READ_AUDIT_PII) or resource_type.lower().startswith("auditlog.")


def _rfc3339(column: str) -> str:
    """``column`` (timestamptz) as the API writes times: UTC, ``Z``, microseconds only when not zero (exactly
    msgspec's form, so an event reads the same from every route). Formatting in PostgreSQL spares the API
    process building a ``datetime`` per value, the costliest part of decoding a page."""
    return (
        f"to_char({column} AT TIME ZONE 'UTC', CASE WHEN date_trunc('second', {column}) = {column} "
        """THEN 'YYYY-MM-DD"T"HH24:MI:SS"Z"' ELSE 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"' END)"""
    )


# The columns of an event as the read routes select them: in the order of the API event's fields
# (``app.logs.rows`` unpacks rows positionally), ``payload`` last, times already as RFC 3339 text (aliases that
# do not shadow the columns, so ``ORDER BY "timestamp"`` still means the column). No ``tenant_id``: every
# statement selects one tenant's rows, so the caller already knows it.
_COLUMNS: Final = (
    ("id", "id"),
    ("action", "action"),
    ("resource_type", "resource_type"),
    ("resource_id", "resource_id"),
    ("user_id", "user_id"),
    ("session_id", "session_id"),
    ("request_id", "request_id"),
    ("severity", "severity"),
    ("timestamp_text", _rfc3339('"timestamp"')),
    ("ip_address", "host(ip_address)"),
    ("user_agent", "user_agent"),
    ("message", "message"),
    ("received_at_text", _rfc3339("received_at")),
    ("payload", "payload"),
)
SELECT_COLUMNS: Final = ", ".join(expr if expr == name else f"{expr} AS {name}" for name, expr in _COLUMNS)
STORED_COLUMNS: Final = (
    'id, action, resource_type, resource_id, user_id, session_id, request_id, severity, "timestamp", ip_address,'
    " user_agent, message, received_at, payload"
)
"""The stored columns ``SELECT_COLUMNS`` is computed from: what a subquery hands up when only the page's own
rows are turned into the page's columns (``app.logs.query.page_of``)."""

COLUMN_COUNT: Final = len(_COLUMNS)
"""How many columns ``SELECT_COLUMNS`` yields (statements may select more after them)."""


class LogFilters(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A validated filter set. Times are UTC, multi-valued filters sorted and unique, the IP canonical."""

    start_time: datetime | None = None
    end_time: datetime | None = None
    user_id: tuple[str, ...] = ()
    action: tuple[str, ...] = ()
    resource_type: tuple[str, ...] = ()
    resource_id: str | None = None
    severity: tuple[str, ...] = ()
    session_id: str | None = None
    request_id: str | None = None
    ip_address: str | None = None
    q: str | None = None
    exclude_user_id: tuple[str, ...] = ()
    exclude_action: tuple[str, ...] = ()
    exclude_resource_type: tuple[str, ...] = ()
    include_system: bool = False
    """Also the service's own events (read records, ``auditlog.*``); see :func:`service_side`."""
    received_from: datetime | None = None
    """Only events received at or after this time (``received_at >=``). Not a ``GET /logs`` parameter: set by
    the scheduled exports for their window (``app.export_schedules``)."""
    received_before: datetime | None = None
    """Only events received before this time (``received_at <``, the window's open end)."""
    seq_after: int | None = None
    """Only events at log positions above this one (``seq >``): a bound the caller knows holds for every wanted
    event, so a source can skip the rest (the hot tail's ``seq`` index, lake files by their ``seq`` range)."""
    seq_through: int | None = None
    """Only events at log positions up to this one (``seq <=``)."""

    def fingerprint(self) -> bytes:
        """Canonical bytes of the filter set (what a cursor is bound to). A single ``user_id``, ``action`` or
        ``resource_type`` is encoded as the plain value it was before these became repeatable, so cursors
        issued by an older process for the same filters stay valid."""
        if not (len(self.user_id) == 1 or len(self.action) == 1 or len(self.resource_type) == 1):
            return msgspec.json.encode(self, order="sorted")
        out: dict[str, Any] = msgspec.to_builtins(self)
        for name in MULTI_VALUED:
            values = out.get(name)
            if values is not None and len(values) == 1:
                out[name] = values[0]
        return msgspec.json.encode(out, order="sorted")

    def describe(self) -> dict[str, Any]:
        """The filters that were given, as JSON-ready values (for read auditing)."""
        out: dict[str, Any] = msgspec.to_builtins(self)
        return out


def service_side(filters: LogFilters) -> bool | None:
    """Which side of the service-event line the filter set reads: only the tenant's own events (``False``), only
    the service's (``True``, a ``resource_type`` filter naming only service types), or both (``None``:
    ``include_system`` without a ``resource_type`` filter, or one naming both kinds).

    Each side has its own time-ordered index (migration 0019), so a time-ordered reader of both sides reads
    one branch per side (:func:`service_clause`) and merges them."""
    if filters.resource_type:
        sides = {is_service_resource_type(rt) for rt in filters.resource_type}
        return sides.pop() if len(sides) == 1 else None
    return None if filters.include_system else False


def service_clause(service: bool) -> str:
    """The condition of one side: the predicate of ``ix_audit_logs_service_time`` or of ``ix_audit_logs_time``
    (the same expression, so that the planner can use the index)."""
    return SERVICE_EVENTS_SQL if service else f"NOT {SERVICE_EVENTS_SQL}"


class Binder:
    """Collects bound parameters and hands out their ``$n`` placeholders."""

    def __init__(self) -> None:
        self.args: list[Any] = []

    def __call__(self, value: Any) -> str:
        self.args.append(value)
        return f"${len(self.args)}"


def where_clauses(
    tenant_id: uuid.UUID,
    filters: LogFilters,
    bind: Binder | Any,
    *,
    branched: frozenset[str] = frozenset(),
    search: SearchIndex | None = None,
) -> list[str]:
    """Every restriction except ``severity`` and the multi-valued filters named in ``branched`` (the caller
    handles those: one value, or one ``UNION ALL`` branch per value). ``search``: the tenant's blind index,
    needed when ``q`` is given; a ``q`` without a word matches nothing (as ``websearch_to_tsquery``'s)."""
    clauses = [f"tenant_id = {bind(tenant_id)}"]
    if filters.start_time is not None:
        clauses.append(f'"timestamp" >= {bind(filters.start_time)}')
    if filters.end_time is not None:
        clauses.append(f'"timestamp" <= {bind(filters.end_time)}')
    if filters.received_from is not None:
        clauses.append(f"received_at >= {bind(filters.received_from)}")
    if filters.received_before is not None:
        clauses.append(f"received_at < {bind(filters.received_before)}")
    if filters.seq_after is not None:
        clauses.append(f"seq > {bind(filters.seq_after)}")
    if filters.seq_through is not None:
        clauses.append(f"seq <= {bind(filters.seq_through)}")
    for column in MULTI_VALUED:
        values: tuple[str, ...] = getattr(filters, column)
        if column in branched or not values:
            continue
        if len(values) == 1:
            clauses.append(f"{column} = {bind(values[0])}")
        else:
            clauses.append(f"{column} = ANY({bind(list(values))}::text[])")
    for column in ("resource_id", "session_id", "request_id"):
        value = getattr(filters, column)
        if value is not None:
            clauses.append(f"{column} = {bind(value)}")
    if filters.ip_address is not None:
        clauses.append(f"ip_address = {bind(filters.ip_address)}::inet")
    for column in MULTI_VALUED:
        excluded: tuple[str, ...] = getattr(filters, f"exclude_{column}")
        if excluded:
            clause = f"{column} <> ALL({bind(list(excluded))}::text[])"
            clauses.append(f"({column} IS NULL OR {clause})" if column in _NULLABLE else clause)
    side = service_side(filters)
    if side is not None:  # said even where resource_type implies it: it is what lets a partial index serve
        clauses.append(service_clause(side))
    if filters.q is not None:
        if search is None:
            raise ValueError("q needs the tenant's search index (db.blind_index.search_index)")
        query = search.tsquery_sql(filters.q, bind)
        # A scalar subquery: the tsquery is built once per statement (an InitPlan), not once per row as a
        # generic plan of a prepared statement would (phraseto_tsquery of a $n is not folded there).
        clauses.append("false" if query is None else f"search @@ (SELECT {query})")
    return clauses


def filter_predicate(tenant_id: uuid.UUID, filters: LogFilters, bind: Any, *, search: SearchIndex | None = None) -> str:
    """The whole ``WHERE`` predicate of a filter set, severities and the service-event rule included, for
    statements other than the page query (the live stream flags new rows with it); ``bind`` hands out ``$n``
    placeholders; ``search`` is the tenant's blind index (needed for ``q``)."""
    clauses = where_clauses(tenant_id, filters, bind, search=search)
    if filters.severity:
        clauses.append(f"severity = ANY({bind(list(filters.severity))}::text[])")
    return " AND ".join(clauses)
