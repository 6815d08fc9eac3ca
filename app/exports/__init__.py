"""Exports of a tenant's events: ``GET /api/v1/logs/export`` (streamed) and export jobs (``/api/v1/exports``)."""
