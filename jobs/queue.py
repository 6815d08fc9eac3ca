"""The SAQ queue: PostgreSQL-backed by default (no Redis needed), Redis when ``AUDIT_REDIS_URL`` is set.

The PostgreSQL queue keeps its tables in the ``jobs`` schema, the only place the API role may create
tables.
"""

from __future__ import annotations

from urllib.parse import quote

from saq import Queue

from db.urls import plain_dsn
from jobs.config import JobsConfig

__all__ = ["QUEUE_NAME", "make_queue"]

QUEUE_NAME = "auditlog"


def make_queue(config: JobsConfig) -> Queue:
    if config.redis_url:
        return Queue.from_url(config.redis_url, name=QUEUE_NAME)
    dsn = plain_dsn(config.database_url)
    sep = "&" if "?" in dsn else "?"
    dsn = f"{dsn}{sep}options={quote('-c search_path=jobs')}&application_name=auditlog-jobs"
    return Queue.from_url(dsn, name=QUEUE_NAME, min_size=1, max_size=4)
