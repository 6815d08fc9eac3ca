"""The DuckDB engine: the one module that opens DuckDB, and the sandbox every analytics query runs in.

Each use gets its own in-memory connection (``AnalyticsEngine.session``) that

- cannot touch the file system or the network (``enable_external_access=false``: ``read_csv``,
  ``read_parquet``, ``'file.parquet'``, ``COPY ... TO``, ``ATTACH``, ``INSTALL``/``LOAD``, ``glob`` are all
  refused), does not look up Python variables by name (``python_enable_replacements=false``), never
  auto-installs or auto-loads extensions;
- has a memory cap and a thread cap, and its configuration locked (``SET``/``PRAGMA``/``RESET`` of any
  option is refused), so SQL cannot lift them;
- sees exactly one relation of data, ``events``: the tenant's lake files listed at the snapshot plus the
  hot tail above the lake watermark (``analytics.tail``), as Arrow record batches. DuckDB never reads a
  file: the lake is decrypted by pyarrow and handed over as Arrow data. Another tenant's data is not in
  the connection at all.

Queries run in worker threads, never on the event loop; a timer calls ``connection.interrupt()`` when a
query (or a whole stream) runs past its time limit, and the caller gets :class:`QueryTimeout`.

``events`` can be scanned any number of times in one query (self-joins): every scan starts a fresh stream
over the lake files and a fresh cursor over the tail, all inside the caller's one PostgreSQL snapshot, so
each scan sees the same rows. The tail's batches are fetched on the event loop (asyncpg) on behalf of
DuckDB's threads, one fetch at a time per connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeVar

import asyncpg
import duckdb
import pyarrow as pa

from analytics.lake_seam import LakeSnapshot, lake_batches
from analytics.schema import project
from analytics.tail import TailQuery, tail_batches

if TYPE_CHECKING:
    from db.crypto import TenantKeyring
    from db.event_filters import LogFilters

__all__ = ["AnalyticsEngine", "EngineLimits", "EngineSession", "QueryTimeout", "TenantEvents"]

T = TypeVar("T")
_FETCH_TIMEOUT: Final = 300.0


@dataclass(frozen=True, slots=True)
class EngineLimits:
    memory_limit_mb: int = 512
    """DuckDB's memory cap per connection (queries beyond it fail instead of growing the process)."""
    threads: int = 2
    """DuckDB worker threads per connection."""
    time_limit_s: float = 30.0
    """Default time limit of one query; a stream's limit is given by its caller."""


class QueryTimeout(Exception):
    """A query ran past its time limit and was interrupted."""


def _config(limits: EngineLimits) -> dict[str, Any]:
    return {
        "enable_external_access": False,
        "python_enable_replacements": False,
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
        "allow_community_extensions": False,
        "allow_unsigned_extensions": False,
        "threads": limits.threads,
        "memory_limit": f"{limits.memory_limit_mb}MB",
        "lock_configuration": True,
    }


class TenantEvents:
    """One tenant's ``events`` as an Arrow stream source that DuckDB may scan repeatedly (each call of
    ``__arrow_c_stream__`` is a new scan: lake batches first, then the hot tail, in ``seq`` order)."""

    def __init__(
        self,
        *,
        loop: asyncio.AbstractEventLoop,
        pg: asyncpg.Connection,
        tenant_id: uuid.UUID,
        keyring: TenantKeyring | None,
        lake: LakeSnapshot,
        filters: LogFilters,
        columns: tuple[str, ...] | None,
    ) -> None:
        self.loop = loop
        self.pg = pg
        self.keyring = keyring
        self.lake = lake
        self.filters = filters
        self.columns = columns
        self.schema = project(columns)
        self.tail = TailQuery(tenant_id, filters, lake.watermark, columns, keyring)
        self._lock = asyncio.Lock()  # asyncpg runs one operation at a time per connection

    def __arrow_c_stream__(self, requested_schema: Any = None) -> Any:
        reader = pa.RecordBatchReader.from_batches(self.schema, self._batches())
        return reader.__arrow_c_stream__(requested_schema)

    def _batches(self) -> Iterator[pa.RecordBatch]:
        yield from lake_batches(self.lake, self.keyring, self.filters, self.columns)
        yield from self._tail_batches()

    def _tail_batches(self) -> Iterator[pa.RecordBatch]:
        if threading.get_ident() == getattr(self.loop, "_thread_id", None):
            raise RuntimeError("events must be scanned off the event loop")
        stream = tail_batches(self.pg, self.tail, self.keyring)

        async def next_batch() -> pa.RecordBatch | None:
            async with self._lock:
                try:
                    return await anext(stream)
                except StopAsyncIteration:
                    return None

        async def close() -> None:
            async with self._lock:
                await stream.aclose()

        try:
            while True:
                batch = asyncio.run_coroutine_threadsafe(next_batch(), self.loop).result(_FETCH_TIMEOUT)
                if batch is None:
                    return
                yield batch
        finally:
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(close(), self.loop)


class EngineSession:
    """A sandboxed DuckDB connection holding one tenant's ``events``; see the module docstring."""

    def __init__(self, con: duckdb.DuckDBPyConnection, limits: EngineLimits) -> None:
        self.con = con
        self.limits = limits
        self._timed_out = False

    def register(self, name: str, source: Any) -> None:
        """Expose an Arrow source (table, stream object) as a view; only the engine's own callers do this."""
        self.con.register(name, source)

    @contextlib.contextmanager
    def _deadline(self, seconds: float | None) -> Iterator[None]:
        timer: threading.Timer | None = None
        if seconds is not None:
            timer = threading.Timer(seconds, self._interrupt)
            timer.daemon = True
            timer.start()
        try:
            yield
        except duckdb.InterruptException:
            if self._timed_out:
                raise QueryTimeout(f"query ran past its time limit of {seconds:g} s") from None
            raise
        finally:
            if timer is not None:
                timer.cancel()

    def _interrupt(self) -> None:
        self._timed_out = True
        self.con.interrupt()

    async def _in_thread(self, fn: Callable[[], T]) -> T:
        return await asyncio.to_thread(fn)

    async def query(self, sql: str, params: list[Any] | None = None, *, time_limit: float | None = None) -> pa.Table:
        """Run ``sql`` to completion (results that fit in memory: aggregates, small row sets)."""
        limit = self.limits.time_limit_s if time_limit is None else time_limit
        with self._deadline(limit):
            return await self._in_thread(lambda: _table(self.con.sql(sql, params=params or None)))

    async def stream(
        self, sql: str, params: list[Any] | None = None, *, batch_rows: int = 65_536, time_limit: float | None = None
    ) -> AsyncIterator[pa.RecordBatch]:
        """Run ``sql`` and yield its result batch by batch (flat memory: nothing is materialised); the first batch
        is empty and carries the result's schema."""
        limit = self.limits.time_limit_s if time_limit is None else time_limit
        with self._deadline(limit):
            reader = await self._in_thread(lambda: _reader(self.con.sql(sql, params=params or None), batch_rows))
            yield pa.RecordBatch.from_pylist([], schema=reader.schema)  # the schema, even for an empty result
            try:
                while True:
                    batch = await self._in_thread(lambda: _next(reader))
                    if batch is None:
                        return
                    yield batch
            finally:
                if not self._timed_out:
                    self.con.interrupt()  # a stream left early (client gone): stop the query


def _table(relation: duckdb.DuckDBPyRelation | None) -> pa.Table:
    return relation.to_arrow_table() if relation is not None else pa.table({})


def _reader(relation: duckdb.DuckDBPyRelation | None, batch_rows: int) -> pa.RecordBatchReader:
    if relation is None:
        return pa.RecordBatchReader.from_batches(pa.schema([]), [])
    return relation.to_arrow_reader(batch_rows)


def _next(reader: pa.RecordBatchReader) -> pa.RecordBatch | None:
    try:
        return reader.read_next_batch()
    except StopIteration:
        return None


class AnalyticsEngine:
    """Opens sandboxed sessions; one per process (``Runtime.services["analytics"]`` or a job's context)."""

    def __init__(self, limits: EngineLimits | None = None) -> None:
        self.limits = limits or EngineLimits()

    def connect(self) -> duckdb.DuckDBPyConnection:
        """A fresh sandboxed in-memory connection with nothing registered."""
        return duckdb.connect(":memory:", config=_config(self.limits))

    @contextlib.asynccontextmanager
    async def session(
        self,
        pg: asyncpg.Connection,
        tenant_id: uuid.UUID,
        *,
        keyring: TenantKeyring | None,
        lake: LakeSnapshot,
        filters: LogFilters,
        columns: tuple[str, ...] | None = None,
    ) -> AsyncIterator[EngineSession]:
        """A session whose ``events`` are ``tenant_id``'s lake (``lake``) plus tail (read through ``pg``, which the
        caller holds in one snapshot bound to the tenant: ``analytics.tail.snapshot``), filtered by
        ``filters`` and projected to ``columns``."""
        events = TenantEvents(
            loop=asyncio.get_running_loop(),
            pg=pg,
            tenant_id=tenant_id,
            keyring=keyring,
            lake=lake,
            filters=filters,
            columns=columns,
        )
        con = await asyncio.to_thread(self.connect)
        try:
            con.register("events", events)
            yield EngineSession(con, self.limits)
        finally:
            con.interrupt()
            await asyncio.to_thread(con.close)
