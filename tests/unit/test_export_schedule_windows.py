"""Scheduled exports' pure parts: window arithmetic, retry delays, idempotency keys, what a destination shows,
and the two-value signature of an HTTP delivery."""

from __future__ import annotations

import gzip
import io
import uuid
from datetime import UTC, datetime, timedelta, timezone

import msgspec
import pytest

from app.export_schedules.destinations import _scrub, _signature, display, secrets_of
from app.export_schedules.runner import MAX_RETRY_DELAY, idempotency_key, retry_delay_of
from app.export_schedules.schemas import Destination, HttpDestination, S3Destination, ScheduleFilters
from app.export_schedules.windows import align, last_closed_window, window_end, window_name
from app.outbound.signing import verify

H = timedelta(hours=1)


def test_windows_align_to_the_hour_and_the_utc_day() -> None:
    t = datetime(2026, 3, 9, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=-5)))  # 04:59:59 UTC next day
    assert align(t, "hour") == datetime(2026, 3, 10, 4, tzinfo=UTC)
    assert align(t, "day") == datetime(2026, 3, 10, tzinfo=UTC)
    day = datetime(2026, 3, 10, tzinfo=UTC)
    assert window_end(day, "day") == day + timedelta(days=1)
    assert window_end(day + 5 * H, "day") == day + 6 * H  # a cursor off midnight goes hourly up to it
    assert window_end(day + 5 * H, "hour") == day + 6 * H
    assert window_name(day + 5 * H) == "2026-03-10T05:00:00Z"


def test_the_last_closed_window_ends_at_least_the_lag_ago() -> None:
    lag = timedelta(seconds=60)
    now = datetime(2026, 3, 10, 12, 0, 30, tzinfo=UTC)
    assert last_closed_window(now, "hour", lag) == (
        datetime(2026, 3, 10, 10, tzinfo=UTC),
        datetime(2026, 3, 10, 11, tzinfo=UTC),
    )
    later = now + timedelta(seconds=30)
    assert last_closed_window(later, "hour", lag) == (
        datetime(2026, 3, 10, 11, tzinfo=UTC),
        datetime(2026, 3, 10, 12, tzinfo=UTC),
    )
    assert last_closed_window(later, "day", lag) == (
        datetime(2026, 3, 9, tzinfo=UTC),
        datetime(2026, 3, 10, tzinfo=UTC),
    )


def test_retry_delays_double_with_jitter_up_to_an_hour() -> None:
    for attempt, low in ((1, 30), (2, 60), (3, 120), (4, 240)):
        delay = retry_delay_of(attempt, 30)
        assert low <= delay <= low * 1.25
    assert retry_delay_of(20, 30) <= MAX_RETRY_DELAY * 1.25


def test_the_idempotency_key_names_the_schedule_and_the_window() -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    start = datetime(2026, 3, 10, 5, tzinfo=UTC)
    assert idempotency_key(a, start) == idempotency_key(a, start)
    assert idempotency_key(a, start) != idempotency_key(a, start + H)
    assert idempotency_key(a, start) != idempotency_key(b, start)
    uuid.UUID(idempotency_key(a, start))


def test_a_destination_shows_no_credential() -> None:
    s3 = S3Destination(url="s3://bucket/p", access_key_id="AKIAXYZ", secret_access_key="sekret", region="eu-west-1")
    shown = msgspec.to_builtins(display(s3))
    assert shown == {"type": "s3", "url": "s3://bucket/p", "region": "eu-west-1"}
    http = HttpDestination(url="https://user:pass@siem.example:8443/in?token=abcd1234&x=1#frag",
                           headers={"Authorization": "Bearer zzzz9999"})  # fmt: skip
    shown = msgspec.to_builtins(display(http))
    assert shown == {
        "type": "http",
        "url": "https://siem.example:8443/in?token=***&x=***",
        "header_names": ["Authorization"],
    }
    text = f"failed talking to {http.url} with Bearer zzzz9999 as user:pass"
    scrubbed = _scrub(text, secrets_of(http))
    assert "zzzz9999" not in scrubbed and "pass" not in scrubbed and "abcd1234" not in scrubbed


def test_destination_bodies_are_a_tagged_union() -> None:
    dest = msgspec.json.decode(b'{"type": "http", "url": "https://siem.example/in"}', type=Destination)
    assert isinstance(dest, HttpDestination)
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(b'{"type": "s3", "url": "s3://bucket/x"}', type=Destination)  # credentials required
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(b'{"action": "lower"}', type=ScheduleFilters)
    assert msgspec.json.decode(b'{"severity": ["ERROR"], "user_id": "u1"}', type=ScheduleFilters).user_id == "u1"


def test_the_signature_verifies_over_the_gzip_bytes_and_over_the_content() -> None:
    content = b'{"id": "1"}\n{"id": "2"}\n' * 1000
    packed = gzip.compress(content)
    header = _signature("whsec_test", io.BytesIO(packed))
    assert header.count("v1=") == 2
    assert verify("whsec_test", packed, header)
    assert verify("whsec_test", content, header)
    assert not verify("whsec_test", content + b"x", header)
    assert not verify("whsec_other", content, header)
