"""Bodies of the export-job routes (API.md "Analytics": ``POST /api/v1/exports``, ``GET /api/v1/exports/{id}``)."""

from __future__ import annotations

import uuid
from typing import Any, Literal

import msgspec

__all__ = ["ExportCreate", "ExportCreated", "ExportJobOut", "JobStatus"]

JobStatus = Literal["queued", "running", "done", "failed"]


class ExportCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    format: Literal["csv", "json", "ndjson", "parquet"]
    filters: dict[str, Any] = msgspec.field(default_factory=dict)
    """The ``GET /logs`` query fields (a repeatable one as a list), e.g. ``{"severity": ["ERROR"]}``."""


class ExportCreated(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    status: JobStatus


class ExportJobOut(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    status: JobStatus
    format: str
    rows: int | None
    bytes: int | None
    download_url: str | None
    """When done: this API's download route (local lake) or a presigned URL valid 15 minutes (S3 lake)."""
