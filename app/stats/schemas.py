"""The body of ``GET /api/v1/logs/stats`` (API.md; ``start_time``, ``end_time`` and ``interval`` are extensions
that say which window and buckets were counted; ``by_user`` and ``series_by_severity`` are extensions given only
with ``breakdown=true``)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

__all__ = ["Interval", "SeriesPoint", "StatsOut"]

Interval = Literal["hour", "day"]


class SeriesPoint(msgspec.Struct, kw_only=True):
    bucket: datetime
    """Start of the hour or UTC day."""
    count: int


class StatsOut(msgspec.Struct, kw_only=True, omit_defaults=True):
    total: int
    by_action: dict[str, int]
    by_severity: dict[str, int]
    by_resource_type: dict[str, int]
    series: list[SeriesPoint]
    """Every bucket of the window in time order, empty ones with count 0."""
    start_time: datetime
    end_time: datetime
    interval: Interval
    by_user: dict[str, int] | msgspec.UnsetType = msgspec.UNSET
    """With ``breakdown=true``: the users with the most events (at most ``TOP_USERS``), largest first; events
    without a ``user_id`` are not counted here."""
    series_by_severity: dict[str, list[int]] | msgspec.UnsetType = msgspec.UNSET
    """With ``breakdown=true``: for each severity in the window, its count in each bucket of ``series`` (same
    order); a severity with no events is left out."""
