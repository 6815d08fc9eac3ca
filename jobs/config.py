"""What the job queue and worker need to know, given by whoever starts them (the API or ``auditlog worker``).

``jobs`` does not read the API's settings: ``app.settings.Settings.jobs_config()`` builds this.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["JobsConfig"]


@dataclass(frozen=True, slots=True)
class JobsConfig:
    database_url: str
    """The API role's connection (the queue's tables live in its ``jobs`` schema; tasks run under RLS)."""
    master_key: str = field(repr=False)
    """Wraps the tenant data keys (the key-rotation task)."""
    redis_url: str | None = None
    """Redis for the queue instead of PostgreSQL."""
    pool_size: int = 4
    max_overflow: int = 4
    lake_url: str = ".auditlog/lake"
    """The Parquet lake: a folder or ``s3://bucket/prefix`` (``analytics.lake.LakeStore``)."""
    s3_endpoint_url: str | None = None
    lake_export_interval_seconds: int = 300
    """How often the lake export runs (rounded to whole minutes for the cron schedule)."""
