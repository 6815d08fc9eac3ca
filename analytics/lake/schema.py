"""The lake's one table shape (API.md "Analytics"): one row per event, the same fields as the API shows,
plus what the verifiable log needs to check the row offline (``PROOF_COLUMNS``).

``metadata``, ``before_state`` and ``after_state`` are JSON text and the only encrypted columns
(``SENSITIVE_COLUMNS``); every other column is readable by any Parquet reader without a key. There is no
``tenant_id`` column: the tenant is the ``tenant_id=<uuid>`` folder (Hive layout), as is the UTC ``date``.

``payload`` is the event's stored ciphertext (``db.leaf``'s field 16, AES-GCM under the tenant's data key,
so it needs no Parquet encryption) and ``leaf_hash`` the event's Merkle leaf hash (``db.leaf``). With them
``auditlog verify <tenant folder>`` recomputes every row's leaf from its clear columns and checks the lake
against a signed checkpoint without any key; ``leaf_hash`` lets it name the row that no longer hashes to
its leaf. Files written before these columns existed read them as nulls.
"""

from __future__ import annotations

from typing import Final

import pyarrow as pa

__all__ = ["COLUMNS", "LAKE_SCHEMA", "PLAIN_COLUMNS", "PROOF_COLUMNS", "SENSITIVE_COLUMNS", "TIMESTAMP"]

TIMESTAMP: Final = pa.timestamp("us", tz="UTC")
LAKE_SCHEMA: Final = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("seq", pa.int64(), nullable=False),
        pa.field("timestamp", TIMESTAMP, nullable=False),
        pa.field("received_at", TIMESTAMP, nullable=False),
        pa.field("action", pa.string(), nullable=False),
        pa.field("resource_type", pa.string(), nullable=False),
        pa.field("resource_id", pa.string()),
        pa.field("user_id", pa.string()),
        pa.field("session_id", pa.string()),
        pa.field("request_id", pa.string()),
        pa.field("severity", pa.string(), nullable=False),
        pa.field("ip_address", pa.string()),
        pa.field("user_agent", pa.string()),
        pa.field("message", pa.string()),
        pa.field("metadata", pa.string()),
        pa.field("before_state", pa.string()),
        pa.field("after_state", pa.string()),
        pa.field("payload", pa.binary()),
        pa.field("leaf_hash", pa.binary()),
    ]
)
COLUMNS: Final[tuple[str, ...]] = tuple(LAKE_SCHEMA.names)
SENSITIVE_COLUMNS: Final[tuple[str, ...]] = ("metadata", "before_state", "after_state")
"""Encrypted with the tenant's column key (Parquet modular encryption)."""
PLAIN_COLUMNS: Final[tuple[str, ...]] = tuple(c for c in COLUMNS if c not in SENSITIVE_COLUMNS)
PROOF_COLUMNS: Final[tuple[str, ...]] = ("payload", "leaf_hash")
"""What the offline verifier reads besides the event's clear columns; absent (null) in files of older writers."""
