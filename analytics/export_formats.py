"""The export formats: the DuckDB projection of ``events`` for each, and the encoder that turns its result
batches into bytes, so a whole export is one streaming pass with flat memory.

Rows look exactly as ``GET /api/v1/logs/{id}`` shows them (the same fields in the same order, times in the
API's RFC 3339 form, masked values, decrypted JSON): ``json`` is one JSON array, ``ndjson`` one event per
line, ``csv`` one row per event under a header row with the JSON parts as JSON text, ``parquet`` typed
columns (times as UTC timestamps, the JSON parts as JSON text), zstd.
"""

from __future__ import annotations

import uuid
from typing import Final, Literal, get_args

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

__all__ = ["FORMATS", "MEDIA_TYPES", "Encoder", "ExportFormat", "projection"]

ExportFormat = Literal["csv", "json", "ndjson", "parquet"]
FORMATS: Final[tuple[str, ...]] = get_args(ExportFormat)
MEDIA_TYPES: Final = {
    "csv": "text/csv; charset=utf-8",
    "json": "application/json",
    "ndjson": "application/x-ndjson",
    "parquet": "application/vnd.apache.parquet",
}

_TEXT: Final = ("action", "resource_type", "resource_id", "user_id", "session_id", "request_id", "severity")
_JSON: Final = ("before_state", "after_state", "metadata")


def _rfc3339(column: str) -> str:
    """The API's time text (msgspec's form): UTC, ``Z``, six fractional digits only when not zero."""
    ts = f'"{column}"::TIMESTAMP'
    return (
        f"CASE WHEN epoch_us(\"{column}\") % 1000000 = 0 THEN strftime({ts}, '%Y-%m-%dT%H:%M:%SZ') "
        f"ELSE strftime({ts}, '%Y-%m-%dT%H:%M:%S.%fZ') END"
    )


def _fields(fmt: str, tenant_id: uuid.UUID) -> list[tuple[str, str]]:
    """``(name, expression)`` for each field of the API event, in its order."""
    as_time = fmt != "parquet"
    out = [("id", "id"), ("tenant_id", f"'{uuid.UUID(str(tenant_id))}'")]
    out += [(c, c) for c in _TEXT]
    out.append(("timestamp", _rfc3339("timestamp") if as_time else '"timestamp"'))
    out += [("ip_address", "ip_address"), ("user_agent", "user_agent"), ("message", "message")]
    out += [(c, f"json({c})" if fmt in ("json", "ndjson") else c) for c in _JSON]
    out.append(("received_at", _rfc3339("received_at") if as_time else "received_at"))
    return out


def projection(fmt: str, tenant_id: uuid.UUID) -> str:
    """The ``SELECT`` over ``events`` producing the format's rows (one text column for the JSON formats)."""
    fields = _fields(fmt, tenant_id)
    if fmt in ("json", "ndjson"):
        struct = ", ".join(f'"{name}" := {expr}' for name, expr in fields)
        line = f"to_json(struct_pack({struct}))"
        text = f"',\n' || {line}" if fmt == "json" else f"{line} || chr(10)"
        return f"SELECT {text} AS line FROM events"
    return "SELECT " + ", ".join(f'{expr} AS "{name}"' for name, expr in fields) + " FROM events"


def _joined(column: pa.Array | pa.ChunkedArray) -> bytes:
    """The concatenated UTF-8 bytes of a string column (no per-row Python work)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    lists = pa.ListArray.from_arrays(pa.array([0, len(column)], pa.int32()), column.cast(pa.binary()))
    scalar = pc.binary_join(lists, b"")[0]
    return scalar.as_buffer().to_pybytes() if scalar.is_valid else b""


class _Sink:
    """A write-only file for ``ParquetWriter`` whose bytes are taken out after each write (nothing kept)."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.position = 0
        self.closed = False

    def write(self, data: bytes) -> int:
        chunk = bytes(data)
        self.parts.append(chunk)
        self.position += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self.position

    def flush(self) -> None:
        return None

    def close(self) -> None:
        self.closed = True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def take(self) -> bytes:
        out, self.parts = b"".join(self.parts), []
        return out


class Encoder:
    """Bytes of one export: ``start()``, then ``batch(b)`` for each result batch, then ``finish()``.

    Parquet row groups hold ``row_group_rows`` rows (the last one fewer) whatever the size of the batches DuckDB
    hands over (it passes on its source's batches, 16,384 lake rows or fewer): batches wait until there are
    enough, at most one row group's worth."""

    def __init__(self, fmt: str, *, row_group_rows: int = 65_536) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown export format {fmt!r}")
        self.fmt = fmt
        self.rows = 0
        self.row_group_rows = row_group_rows
        self._first = True
        self._sink = _Sink()
        self._parquet: pq.ParquetWriter | None = None
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0

    def start(self) -> bytes:
        return b"[" if self.fmt == "json" else b""

    def batch(self, batch: pa.RecordBatch) -> bytes:
        if batch.num_rows == 0:
            return b""
        self.rows += batch.num_rows
        if self.fmt in ("json", "ndjson"):
            data = _joined(batch.column(0))
            if self.fmt == "json" and self._first:
                data = data[1:]  # the first row needs no comma before it
            self._first = False
            return data
        if self.fmt == "csv":
            sink = pa.BufferOutputStream()
            pacsv.write_csv(batch, sink, pacsv.WriteOptions(include_header=self._first))
            self._first = False
            return sink.getvalue().to_pybytes()
        self._pending.append(batch)
        self._pending_rows += batch.num_rows
        if self._pending_rows < self.row_group_rows:
            return b""
        return self._row_group(batch.schema)

    def _row_group(self, schema: pa.Schema) -> bytes:
        """The pending batches written as one row group; its bytes."""
        if self._parquet is None:
            self._parquet = pq.ParquetWriter(self._sink, schema, compression="zstd")
        if self._pending:
            table = pa.Table.from_batches(self._pending, schema=schema)
            self._pending, self._pending_rows = [], 0
            self._parquet.write_table(table, row_group_size=max(table.num_rows, 1))
        return self._sink.take()

    def finish(self, schema: pa.Schema | None = None) -> bytes:
        if self.fmt == "json":
            return b"\n]\n" if not self._first else b"]\n"
        if self.fmt == "csv" and self._first and schema is not None:
            sink = pa.BufferOutputStream()
            pacsv.write_csv(schema.empty_table(), sink)  # an empty export still has its header row
            return sink.getvalue().to_pybytes()
        if self.fmt == "parquet":
            if self._pending:
                head = self._row_group(self._pending[0].schema)
            else:
                head = b""
                if self._parquet is None and schema is not None:
                    self._parquet = pq.ParquetWriter(self._sink, schema, compression="zstd")
            if self._parquet is not None:
                self._parquet.close()
            return head + self._sink.take()
        return b""
