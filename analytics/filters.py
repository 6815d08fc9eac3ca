"""The ``GET /logs`` filter set (``app.logs.query.LogFilters``, parsed there once) applied to both halves of
a tenant's ``events``: a PostgreSQL predicate for the hot tail and an Arrow expression for lake batches.

Both halves apply the same filters before DuckDB sees a row, so every query over ``events`` (stats,
exports) answers for exactly the rows ``GET /logs`` would list with those filters, in one place.

Service events (``app.audit_trail.service_events``: read records and ``auditlog.*`` administration) are
left out unless ``include_system`` is set or a ``resource_type`` filter names one (API.md).

``q`` on the hot tail is the blind-index search of ``GET /logs`` (``db.blind_index``); on lake rows (decrypted)
it is the same query (``parse_q``: the same terms, ``or`` groups and exclusions) over the same words: a term
matches when the message holds its words as a phrase, or the metadata *values* hold each of its words (keys
are stripped from the JSON text first), whole words, case-insensitively.
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

from db.blind_index import SearchIndex, Term, parse_q
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


def tail_predicate(
    tenant_id: uuid.UUID, filters: LogFilters, bind: Callable[[Any], str], search: SearchIndex | None = None
) -> str:
    """The hot tail's ``WHERE`` (``GET /logs``'s own predicate, plus the service-event rule); ``search`` is the
    tenant's blind index, needed for ``q``."""
    return filter_predicate(tenant_id, filters, bind, search=search)  # the service-event rule is part of it


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


_EDGE_LEFT: Final = r"(?:^|[^\pL\pN_])"
_EDGE_RIGHT: Final = r"(?:$|[^\pL\pN_])"
_BETWEEN: Final = r"[^\pL\pN_]+"
r"""Word edges and the gap between two words of a phrase: Python's ``\w`` (what ``db.blind_index`` indexes) in
RE2 terms, so non-ASCII words match as they do in PostgreSQL."""
_JSON_VALUES: Final = r'"(?:[^"\\]|\\.)*"\s*:|("(?:[^"\\]|\\.)*")|(-?[0-9][0-9.eE+-]*)|[^"]'
r"""One JSON token at a time, leftmost first: a key with its colon, a string, a number, anything else. Replaced
by ``\1 \2 ``, only strings and numbers are left: the metadata *values* the blind index holds (not keys,
``true``, ``false`` or ``null``)."""


def _found(column: ds.Expression, pattern: str) -> ds.Expression:
    hit = pc.match_substring_regex(column, pattern, ignore_case=True)
    return pc.if_else(pc.is_null(column), False, hit)


def _term(term: Term, values: ds.Expression) -> ds.Expression:
    """The message holds the term's words as a phrase, or the metadata values hold each of them."""
    phrase = _BETWEEN.join(re.escape(w) for w in term.words)
    hit = _found(pc.field("message"), _EDGE_LEFT + phrase + _EDGE_RIGHT)
    in_values: ds.Expression | None = None
    for word in dict.fromkeys(term.words):
        found = _found(values, _EDGE_LEFT + re.escape(word) + _EDGE_RIGHT)
        in_values = found if in_values is None else in_values & found
    assert in_values is not None
    hit = hit | in_values
    return ~hit if term.negated else hit


def _q_expression(q: str) -> ds.Expression:
    """``q`` (``db.blind_index.parse_q``: OR-groups of AND-ed terms) as an Arrow expression."""
    groups = parse_q(q)
    if not groups:
        return pc.scalar(False)  # no word: nothing matches, as in PostgreSQL
    values = pc.replace_substring_regex(pc.field("metadata"), _JSON_VALUES, r"\1 \2 ")
    out: ds.Expression | None = None
    for group in groups:
        conj = _term(group[0], values)
        for term in group[1:]:
            conj = conj & _term(term, values)
        out = conj if out is None else out | conj
    assert out is not None
    return out
