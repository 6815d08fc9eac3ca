"""The encrypted Parquet lake: each tenant's committed events as zstd Parquet under ``AUDIT_LAKE_URL``.

Layout: ``tenant_id=<uuid>/date=<YYYY-MM-DD>/<file>.parquet`` (``schema``). The manifest in PostgreSQL
(``manifest``) is the source of truth: readers read only listed files. Public API:

- :class:`LakeStore` - file access (local folder or S3), built from the lake URL;
- :func:`live_files` - a tenant's watermark and live files, in one snapshot;
- :func:`open_lake_batches` - stream those files as Arrow record batches (sensitive columns decrypted only
  with the tenant's keyring);
- :func:`export_tenant`, :func:`compact_tenant`, :func:`collect_garbage` - the writers (``jobs.lake``).
"""

from analytics.lake.compaction import COMPACTION_STEPS, CompactionResult, collect_garbage, compact_tenant
from analytics.lake.keys import LakeKeyError, lake_decryption_properties
from analytics.lake.manifest import LakeFile, live_files, tenant_prefix
from analytics.lake.reader import open_lake_batches
from analytics.lake.schema import COLUMNS, LAKE_SCHEMA, PLAIN_COLUMNS, SENSITIVE_COLUMNS
from analytics.lake.store import LakeStore
from analytics.lake.writer import EXPORT_STEPS, ExportResult, export_tenant

__all__ = [
    "COLUMNS",
    "COMPACTION_STEPS",
    "EXPORT_STEPS",
    "LAKE_SCHEMA",
    "PLAIN_COLUMNS",
    "SENSITIVE_COLUMNS",
    "CompactionResult",
    "ExportResult",
    "LakeFile",
    "LakeKeyError",
    "LakeStore",
    "collect_garbage",
    "compact_tenant",
    "export_tenant",
    "lake_decryption_properties",
    "live_files",
    "open_lake_batches",
    "tenant_prefix",
]
