"""The lake export's read of PostgreSQL: a tenant's events ``seq`` in ``(lo, hi]`` as one lake record batch,
built column by column, so that no Python code runs per row except for what needs the row's key.

PostgreSQL folds each column of the range into one value (``BATCH_SQL``), in ``seq`` order:

- fixed-width values as their binary forms end to end (``int8send``, ``timestamptz_send``: microseconds since
  2000-01-01, ``uuid_send``), which become Arrow arrays by one byte swap;
- text as its UTF-8 bytes joined by ``0xFF`` with ``0xFE`` standing for NULL (neither byte ever occurs in
  UTF-8), which Arrow splits;
- the payload ciphertexts as an array of ``bytea``.

Each payload is then opened with the tenant's keyring (AES-GCM bound to the event id, which comes from the
``uuid_send`` buffer) and its JSON split into ``metadata``, ``before_state`` and ``after_state`` (a loop over the
rows that have one: the only per-row work). Leaf hashes (``db.leaf``) come from the tenant's level-0 Merkle tiles
when its tree holds the range (the integrator already hashed those leaves; the export never goes past the
tree's size when there is one), else they are computed here.

A range of ``n`` rows must hold exactly ``n = hi - lo`` events (seqs are dense and all committed); anything
else is an error, as is a payload that does not authenticate (the lake never holds a row it cannot vouch for).
One range's column values must stay under PostgreSQL's 1 GB per value: with events of at most 64 KiB, ranges of
up to 8,192 rows always do.
"""

from __future__ import annotations

import array
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

import msgspec
import pyarrow as pa
import pyarrow.compute as pc

from analytics.lake.schema import LAKE_SCHEMA
from db.leaf import flat_leaf_hasher, packed_ip

if TYPE_CHECKING:
    from db.crypto import TenantKeyring

__all__ = ["BATCH_SQL", "MAX_BATCH_ROWS", "columns_to_batch", "tile_range"]

MAX_BATCH_ROWS: Final = 8192
TEXT_COLUMNS: Final = (
    "action", "resource_type", "resource_id", "user_id", "session_id", "request_id", "severity", "ip_address",
    "user_agent", "message",
)  # fmt: skip
_TEXT_SQL: Final = {"ip_address": "host(ip_address)"}
_TILE_WIDTH: Final = 256
_HASH: Final = 32


def _text(column: str) -> str:
    return (
        f"string_agg(coalesce(textsend({_TEXT_SQL.get(column, column)}), '\\xfe'::bytea), '\\xff'::bytea ORDER BY seq)"
    )


BATCH_SQL: Final = f"""
SELECT count(*), string_agg(textsend(id::text), ''::bytea ORDER BY seq),
       string_agg(uuid_send(id), ''::bytea ORDER BY seq),
       string_agg(int8send(seq), ''::bytea ORDER BY seq),
       string_agg(timestamptz_send("timestamp"), ''::bytea ORDER BY seq),
       string_agg(timestamptz_send(received_at), ''::bytea ORDER BY seq),
       {", ".join(_text(c) for c in TEXT_COLUMNS)},
       array_agg(payload ORDER BY seq),
       (SELECT string_agg(hashes, ''::bytea ORDER BY idx) FROM merkle_tiles
        WHERE tenant_id = $1 AND level = 0 AND idx BETWEEN $4 AND $5)
FROM audit_logs WHERE tenant_id = $1 AND seq > $2 AND seq <= $3
"""
"""Parameters: tenant, ``lo``, ``hi`` and the level-0 tiles holding leaves ``lo .. hi - 1`` (:func:`tile_range`)."""

_PG_EPOCH_US: Final = 946_684_800_000_000
"""2000-01-01T00:00:00Z (PostgreSQL's epoch) in microseconds since 1970."""
_SWAP: Final = sys.byteorder == "little"
_NULL_TEXT: Final = pa.scalar(b"\xfe", pa.binary())
_NULL_JSON: Final = msgspec.Raw(b"null")


class _RawPayload(msgspec.Struct):
    metadata: msgspec.Raw = _NULL_JSON
    before_state: msgspec.Raw = _NULL_JSON
    after_state: msgspec.Raw = _NULL_JSON


_decode_payload = msgspec.json.Decoder(_RawPayload).decode


def tile_range(lo: int, hi: int) -> tuple[int, int]:
    """The level-0 tiles holding the leaves of seqs ``lo + 1 .. hi`` (leaf index = seq - 1)."""
    return lo // _TILE_WIDTH, (hi - 1) // _TILE_WIDTH


def _check(name: str, got: int, n: int) -> None:
    if got != n:
        raise RuntimeError(f"lake export: column {name} holds {got} values for {n} rows")


def _big_endian_int64(data: bytes, n: int, name: str) -> pa.Array:
    values = array.array("q")
    values.frombytes(data)
    if _SWAP:
        values.byteswap()
    _check(name, len(values), n)
    return pa.Array.from_buffers(pa.int64(), n, [None, pa.py_buffer(values)])


def _fixed(data: bytes, width: int, n: int, name: str) -> pa.Array:
    _check(name, len(data) // width if len(data) % width == 0 else -1, n)
    return pa.Array.from_buffers(pa.binary(width), n, [None, pa.py_buffer(data)])


def _texts(data: bytes, n: int, name: str) -> pa.Array:
    one = pa.Array.from_buffers(
        pa.binary(), 1, [None, pa.array([0, len(data)], pa.int32()).buffers()[1], pa.py_buffer(data)]
    )
    values = pc.split_pattern(one, pattern=b"\xff").values
    _check(name, len(values), n)
    nulls = pc.equal(values, _NULL_TEXT)
    if nulls.true_count:
        values = pc.if_else(nulls, pa.scalar(None, pa.binary()), values)
    return values.cast(pa.string())  # validates the UTF-8


def _json_column(lengths: list[int], parts: list[Any], n: int) -> pa.Array:
    """A string column from each row's length (-1: null) and the non-null values in order."""
    sizes = pa.array(lengths, pa.int64())
    valid = pc.greater_equal(sizes, 0)
    offsets = pc.cumulative_sum(pc.max_element_wise(sizes, 0))
    offsets = pa.concat_arrays([pa.array([0], pa.int64()), offsets])
    nulls = n - valid.true_count
    column = pa.Array.from_buffers(
        pa.large_binary(),
        n,
        [valid.buffers()[1] if nulls else None, offsets.buffers()[1], pa.py_buffer(b"".join(parts))],
        null_count=nulls,
    )
    return column.cast(pa.string())  # validates the UTF-8


def _open_payloads(
    blobs: Sequence[bytes | None], ids: bytes, keyring: TenantKeyring, n: int
) -> tuple[pa.Array, pa.Array, pa.Array]:
    """Decrypt each payload and split its JSON into the three sensitive columns."""
    open_blob = keyring.raw_opener("payload")
    decode, null = _decode_payload, _NULL_JSON
    lengths: tuple[list[int], list[int], list[int]] = ([-1] * n, [-1] * n, [-1] * n)
    parts: tuple[list[Any], list[Any], list[Any]] = ([], [], [])
    meta_len, before_len, after_len = lengths
    meta, before, after = parts
    for i, blob in enumerate(blobs):
        if blob is None:
            continue
        payload = decode(open_blob(blob, ids[16 * i : 16 * i + 16]))
        value = payload.metadata
        if value != null:
            meta.append(value)
            meta_len[i] = len(value)
        value = payload.before_state
        if value != null:
            before.append(value)
            before_len[i] = len(value)
        value = payload.after_state
        if value != null:
            after.append(value)
            after_len[i] = len(value)
    m, b, a = (_json_column(lengths[k], parts[k], n) for k in range(3))
    return m, b, a


def _leaf_hashes(
    tiles: bytes | None, lo: int, hi: int, columns: dict[str, pa.Array], keyring: TenantKeyring
) -> pa.Array:
    """The leaf hashes of seqs ``lo + 1 .. hi``: from the tiles when they hold them all, else computed."""
    n = hi - lo
    if tiles is not None:
        start = (lo - tile_range(lo, hi)[0] * _TILE_WIDTH) * _HASH
        if len(tiles) >= start + n * _HASH:
            return pa.Array.from_buffers(pa.binary(_HASH), n, [None, pa.py_buffer(tiles[start : start + n * _HASH])])
    leaf = flat_leaf_hasher(keyring.tenant_id)
    micros = [columns[c].cast(pa.int64()).to_pylist() for c in ("timestamp", "received_at")]
    plain = [columns[c].to_pylist() for c in ("seq", "id", *TEXT_COLUMNS, "payload")]
    seq, ids, action, rtype, rid, user, session, request, severity, ip, agent, message, payload = plain
    hashes = [
        leaf((seq[i], ids[i], micros[0][i], micros[1][i], action[i], rtype[i], rid[i], user[i], session[i],
              request[i], severity[i], None if ip[i] is None else packed_ip(ip[i]), agent[i], message[i], payload[i]))
        for i in range(n)
    ]  # fmt: skip
    return pa.array(hashes, pa.binary(_HASH))


def columns_to_batch(row: Sequence[Any], lo: int, hi: int, keyring: TenantKeyring) -> pa.RecordBatch:
    """The row of ``BATCH_SQL`` for ``(lo, hi]`` → one lake record batch (``LAKE_SCHEMA``)."""
    n = hi - lo
    _check("count", int(row[0]), n)
    columns: dict[str, pa.Array] = {"id": _fixed(row[1], 36, n, "id").cast(pa.string())}  # the UUID's text
    ids: bytes = row[2]
    _check("id", len(ids), 16 * n)
    columns["seq"] = _big_endian_int64(row[3], n, "seq")
    first = columns["seq"][0].as_py() if n else lo + 1
    if n and (first != lo + 1 or columns["seq"][n - 1].as_py() != hi):
        raise RuntimeError(f"lake export: seqs {first}..{columns['seq'][n - 1].as_py()} for the range ({lo}, {hi}]")
    for i, name in ((4, "timestamp"), (5, "received_at")):
        since_2000 = _big_endian_int64(row[i], n, name)
        columns[name] = pc.add(since_2000, _PG_EPOCH_US).cast(LAKE_SCHEMA.field(name).type)
    for i, name in enumerate(TEXT_COLUMNS):
        columns[name] = _texts(row[6 + i], n, name)
    blobs: list[bytes | None] = row[6 + len(TEXT_COLUMNS)]
    _check("payload", len(blobs), n)
    columns["metadata"], columns["before_state"], columns["after_state"] = _open_payloads(blobs, ids, keyring, n)
    columns["payload"] = pa.array(blobs, pa.binary())
    columns["leaf_hash"] = _leaf_hashes(row[7 + len(TEXT_COLUMNS)], lo, hi, columns, keyring).cast(pa.binary())
    return pa.RecordBatch.from_arrays([columns[name] for name in LAKE_SCHEMA.names], schema=LAKE_SCHEMA)
