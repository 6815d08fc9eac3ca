"""Streaming the listed lake files of one tenant as Arrow record batches, in flat memory.

Files are read one after another and row group by row group, so memory stays at about one row group whatever
the lake's size. Each row group is its own ``iter_batches`` call: pyarrow pre-buffers (``pre_buffer``, one
coalesced read per row group, which S3 wants) into a cache that lives as long as the reader, so one reader
over a whole file held every row group's compressed column chunks until the file's end — memory that grew
with the file (a day file of a 900k-row lake: 158 MB of Arrow memory at its peak against 95 MB row group by
row group). The sensitive columns are decrypted only when asked for, with the
tenant's keyring; without a keyring asking for them is an error, and the other columns need no key.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

from analytics.lake.keys import lake_decryption_properties
from analytics.lake.schema import COLUMNS, LAKE_SCHEMA, PROOF_COLUMNS, SENSITIVE_COLUMNS

if TYPE_CHECKING:
    from analytics.lake.manifest import LakeFile
    from analytics.lake.store import LakeStore
    from db.crypto import TenantKeyring

__all__ = ["BATCH_ROWS", "open_lake_batches"]

BATCH_ROWS = 65_536


def open_lake_batches(
    store: LakeStore,
    files: Iterable[LakeFile],
    keyring: TenantKeyring | None,
    columns: Sequence[str] | None = None,
    *,
    batch_rows: int = BATCH_ROWS,
) -> Iterator[pa.RecordBatch]:
    """Yield the record batches of ``files`` (in the given order) with ``columns`` (default: all)."""
    wanted = list(columns) if columns is not None else list(COLUMNS)
    unknown = [c for c in wanted if c not in COLUMNS]
    if unknown:
        raise ValueError(f"not lake columns: {', '.join(unknown)}")
    sensitive = any(c in SENSITIVE_COLUMNS for c in wanted)
    if sensitive and keyring is None:
        raise ValueError("the sensitive columns (metadata, before_state, after_state) need the tenant's keyring")
    decryption = lake_decryption_properties(keyring) if keyring is not None and sensitive else None
    for lake_file in files:
        if keyring is not None and lake_file.tenant_id != keyring.tenant_id:
            raise ValueError("a lake file of another tenant was passed with this keyring")
        with store.open_input(lake_file.path) as source:
            parquet = pq.ParquetFile(source, decryption_properties=decryption)
            absent = [c for c in wanted if c in PROOF_COLUMNS and c not in parquet.schema_arrow.names]
            if not absent:
                yield from _row_groups(parquet, wanted, batch_rows)
                continue
            # a file of an older writer: its proof columns read as nulls
            present = [c for c in wanted if c not in absent]
            for batch in _row_groups(parquet, present, batch_rows):
                fields = [batch.schema.field(c) if c in present else LAKE_SCHEMA.field(c) for c in wanted]
                arrays = [batch.column(c) if c in present else pa.nulls(batch.num_rows, f.type) for c, f in
                          zip(wanted, fields, strict=True)]  # fmt: skip
                yield pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields))


def _row_groups(parquet: pq.ParquetFile, columns: list[str], batch_rows: int) -> Iterator[pa.RecordBatch]:
    """The file's batches, one reader per row group (its pre-buffered bytes freed before the next one)."""
    for index in range(parquet.num_row_groups):
        yield from parquet.iter_batches(batch_size=batch_rows, row_groups=[index], columns=columns, use_threads=False)
