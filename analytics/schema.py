"""The columns of a tenant's ``events`` (the lake's file layout, API.md "Analytics"), as one Arrow schema.

The lake files (E1's ``analytics.lake``) and the hot tail read from PostgreSQL (``analytics.tail``) both
produce record batches of exactly this schema (or a projection of it), so DuckDB sees one relation.
``metadata``, ``before_state`` and ``after_state`` are the event's JSON text, decrypted.
"""

from __future__ import annotations

from typing import Final

import pyarrow as pa

__all__ = ["EVENT_COLUMNS", "EVENT_SCHEMA", "SENSITIVE_COLUMNS", "project"]

_UTC_US: Final = pa.timestamp("us", tz="UTC")

EVENT_SCHEMA: Final = pa.schema(
    [
        ("id", pa.string()),
        ("seq", pa.int64()),
        ("timestamp", _UTC_US),
        ("received_at", _UTC_US),
        ("action", pa.string()),
        ("resource_type", pa.string()),
        ("resource_id", pa.string()),
        ("user_id", pa.string()),
        ("session_id", pa.string()),
        ("request_id", pa.string()),
        ("severity", pa.string()),
        ("ip_address", pa.string()),
        ("user_agent", pa.string()),
        ("message", pa.string()),
        ("metadata", pa.string()),
        ("before_state", pa.string()),
        ("after_state", pa.string()),
    ]
)
EVENT_COLUMNS: Final[tuple[str, ...]] = tuple(EVENT_SCHEMA.names)
SENSITIVE_COLUMNS: Final = ("metadata", "before_state", "after_state")


def project(columns: tuple[str, ...] | None) -> pa.Schema:
    """The schema of ``columns`` (in the event's column order); ``None``: every column."""
    if columns is None:
        return EVENT_SCHEMA
    unknown = set(columns) - set(EVENT_COLUMNS)
    if unknown:
        raise ValueError(f"unknown event columns: {sorted(unknown)}")
    return pa.schema([EVENT_SCHEMA.field(name) for name in EVENT_COLUMNS if name in columns])
