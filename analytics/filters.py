"""The ``GET /logs`` filter set (``app.logs.query.LogFilters``, parsed there once) applied to both halves of
a tenant's ``events``: a PostgreSQL predicate for the hot tail and an Arrow expression for lake batches.

Both halves apply the same filters before DuckDB sees a row, so every query over ``events`` (stats,
exports) answers for exactly the rows ``GET /logs`` would list with those filters, in one place.

Service events (``app.audit_trail.service_events``: read records and ``auditlog.*`` administration) are
left out unless ``include_system`` is set or a ``resource_type`` filter names one (API.md).

``q`` on the hot tail is PostgreSQL's full-text search (exactly ``GET /logs``); on lake rows it is matched
by the same rules over the message and the metadata text: each word or ``"quoted phrase"`` must appear as
whole words, case-insensitively; ``or`` between terms makes either suffice; ``-word`` excludes. Unlike
PostgreSQL's ``simple`` configuration this also matches metadata *keys*.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any, Final

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from db.event_filters import READ_AUDIT, READ_AUDIT_PII, LogFilters, filter_predicate, is_service_resource_type

__all__ = ["excludes_service_events", "filter_columns", "lake_dates", "lake_expression", "tail_predicate"]

_EXACT: Final = ("user_id", "action", "resource_type", "resource_id", "session_id", "request_id", "ip_address")
_UTC_US: Final = pa.timestamp("us", tz="UTC")


def values(filters: LogFilters, name: str) -> tuple[str, ...]:
    """A filter's values whether the field holds one value or several (repeatable filters)."""
    value = getattr(filters, name, None)
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(str(v) for v in value)


def excludes_service_events(filters: LogFilters) -> bool:
    """True unless the filters ask for service events (``include_system``, or a resource_type naming one)."""
    if getattr(filters, "include_system", False):
        return False
    return not any(is_service_resource_type(rt) for rt in values(filters, "resource_type"))


def filter_columns(filters: LogFilters) -> set[str]:
    """The event columns the filters read (a source must read them even when the query projects fewer)."""
    cols = {"resource_type"} if excludes_service_events(filters) else set()
    if filters.start_time is not None or filters.end_time is not None:
        cols.add("timestamp")
    if filters.received_from is not None or filters.received_before is not None:
        cols.add("received_at")
    if filters.seq_after is not None or filters.seq_through is not None:
        cols.add("seq")
    for name in _EXACT:
        if values(filters, name) or values(filters, f"exclude_{name}"):
            cols.add(name)
    if filters.severity:
        cols.add("severity")
    if filters.q is not None:
        cols.update(("message", "metadata"))
    return cols


def tail_predicate(tenant_id: uuid.UUID, filters: LogFilters, bind: Callable[[Any], str]) -> str:
    """The hot tail's ``WHERE`` (``GET /logs``'s own predicate, plus the service-event rule)."""
    return filter_predicate(tenant_id, filters, bind)  # the service-event rule is part of it


def lake_dates(filters: LogFilters) -> tuple[date | None, date | None]:
    """The UTC dates a lake file may cover to hold matching rows (``date=`` partitions), a day of slack each
    side in case a writer dated a file by another clock than the event's ``timestamp``."""
    lo = (filters.start_time - timedelta(days=1)).date() if filters.start_time is not None else None
    hi = (filters.end_time + timedelta(days=1)).date() if filters.end_time is not None else None
    return lo, hi


def _ts(value: datetime) -> pa.Scalar:
    return pa.scalar(value, type=_UTC_US)


def lake_expression(filters: LogFilters) -> ds.Expression | None:
    """The filters as an Arrow expression over lake batches (``None``: keep every row)."""
    parts: list[ds.Expression] = []
    if filters.start_time is not None:
        parts.append(pc.field("timestamp") >= _ts(filters.start_time))
    if filters.end_time is not None:
        parts.append(pc.field("timestamp") <= _ts(filters.end_time))
    if filters.received_from is not None:
        parts.append(pc.field("received_at") >= _ts(filters.received_from))
    if filters.received_before is not None:
        parts.append(pc.field("received_at") < _ts(filters.received_before))
    if filters.seq_after is not None:
        parts.append(pc.field("seq") > pa.scalar(filters.seq_after, pa.int64()))
    if filters.seq_through is not None:
        parts.append(pc.field("seq") <= pa.scalar(filters.seq_through, pa.int64()))
    for name in _EXACT:
        wanted = values(filters, name)
        if wanted:
            parts.append(pc.field(name).isin(list(wanted)))
        unwanted = values(filters, f"exclude_{name}")
        if unwanted:
            parts.append(~pc.field(name).isin(list(unwanted)) | pc.field(name).is_null())
    if filters.severity:
        parts.append(pc.field("severity").isin(list(filters.severity)))
    if excludes_service_events(filters):
        service = pc.field("resource_type").isin([READ_AUDIT, READ_AUDIT_PII]) | pc.starts_with(
            pc.field("resource_type"), "auditlog.", ignore_case=True
        )
        parts.append(~service)
    if filters.q is not None:
        parts.append(_q_expression(filters.q))
    if not parts:
        return None
    out = parts[0]
    for part in parts[1:]:
        out = out & part
    return out


_TERM: Final = re.compile(r'(-?)"([^"]*)"|(\S+)')


def _matches(words: list[str]) -> ds.Expression:
    pattern = r"\b" + r"\W+".join(re.escape(w) for w in words) + r"\b"
    hit: ds.Expression | None = None
    for column in ("message", "metadata"):
        found = pc.match_substring_regex(pc.field(column), pattern, ignore_case=True)
        found = pc.if_else(pc.field(column).is_null(), False, found)
        hit = found if hit is None else hit | found
    assert hit is not None
    return hit


def _q_expression(q: str) -> ds.Expression:
    """``websearch_to_tsquery``'s rules (see the module docstring) as an Arrow expression."""
    groups: list[list[ds.Expression]] = [[]]
    pending_or = False
    for m in _TERM.finditer(q):
        negated, phrase, bare = m.group(1) == "-", m.group(2), m.group(3)
        if bare is not None and bare.lower() == "or":
            pending_or = True
            continue
        if bare is not None and bare.startswith("-") and len(bare) > 1:
            negated, bare = True, bare[1:]
        words = re.findall(r"\w+", phrase if phrase is not None else bare or "")
        if not words:
            continue
        term = _matches(words)
        term = ~term if negated else term
        if pending_or and groups[-1]:
            groups[-1][-1] = groups[-1][-1] | term
        else:
            groups[-1].append(term)
        pending_or = False
    terms = groups[-1]
    if not terms:
        return pc.scalar(True)
    out = terms[0]
    for term in terms[1:]:
        out = out & term
    return out
