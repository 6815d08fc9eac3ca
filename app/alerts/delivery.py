"""Sending one alert firing to its webhook: a SAQ job, retried with exponential backoff, every attempt recorded.

The body was built and stored (encrypted) when the rule fired, so every attempt sends the same bytes with
the same ``X-Auditlog-Delivery`` id (receivers can deduplicate) and a fresh ``X-Auditlog-Signature``. The
destination is checked against the address rules before every attempt, redirects are not followed, and an
attempt that gets no 2xx within ``TIMEOUT`` seconds fails: it is recorded (status or error, duration) and the
next attempt is enqueued as its own job, ``retry_delay * 2**(n-1)`` seconds later (times 1-1.25 of jitter,
at most ``MAX_DELAY``), so the delays really double (SAQ's own backoff draws each delay anywhere below the
doubled value); after ``ATTEMPTS`` attempts the firing is marked ``failed``. Each attempt's job key names the
firing and the attempt, so a worker crash between the record and the enqueue cannot schedule it twice.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from typing import Any

import httpx
from sqlalchemy import text

from app.alerts.rules import SECRET_FIELD
from app.outbound.signing import HEADER, sign
from app.outbound.url_guard import UnsafeURL, check_url

__all__ = ["ATTEMPTS", "BODY_FIELD", "deliver_alert", "enqueue_delivery", "retry_delay_of"]

BODY_FIELD = "alert_body"
log = logging.getLogger(__name__)

TIMEOUT = 10.0
ATTEMPTS = 8
"""With the default 2 s first delay, the eighth attempt comes about 4 minutes after the first."""
MAX_DELAY = 300.0


def retry_delay_of(attempt: int, base: float) -> float:
    """Seconds to wait after failed attempt ``attempt`` (1-based): doubling, with up to 25 % jitter, capped."""
    return min(MAX_DELAY, base * 2 ** (attempt - 1)) * random.uniform(1.0, 1.25)  # noqa: S311 - jitter


async def enqueue_delivery(queue: Any, tenant_id: uuid.UUID, firing_id: uuid.UUID, attempt: int, delay: float) -> None:
    await queue.enqueue(
        "deliver_alert",
        key=f"alert-firing-{firing_id}-{attempt}",
        scheduled=int(time.time() + delay) if delay > 0 else 0,
        timeout=60,
        tenant_id=str(tenant_id),
        firing_id=str(firing_id),
    )


async def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int | None, str | None]:
    async with httpx.AsyncClient(timeout=TIMEOUT, follow_redirects=False) as client:
        try:
            response = await client.post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return None, f"{type(exc).__name__}: {exc}"[:500]
    if 200 <= response.status_code < 300:
        return response.status_code, None
    return response.status_code, f"HTTP {response.status_code}"


async def deliver_alert(ctx: dict[str, Any], *, tenant_id: str, firing_id: str) -> str:
    """SAQ task: one delivery attempt of firing ``firing_id`` of ``tenant_id``."""
    tid, fid = uuid.UUID(tenant_id), uuid.UUID(firing_id)
    allow_private = bool(ctx.get("allow_private_urls", False))
    async with ctx["db"].tenant(tid) as session:
        row = (
            await session.execute(
                text(
                    "SELECT f.alert_id, f.body, f.status, r.webhook_url, r.secret,"
                    " (SELECT count(*) FROM alert_deliveries d WHERE d.tenant_id = f.tenant_id"
                    "  AND d.firing_id = f.id) AS attempts"
                    " FROM alert_firings f JOIN alert_rules r ON r.tenant_id = f.tenant_id AND r.id = f.alert_id"
                    " WHERE f.tenant_id = :t AND f.id = :f"
                ),
                {"t": tid, "f": fid},
            )
        ).first()
        if row is None or row.status != "pending":
            return "gone" if row is None else str(row.status)
        keyring = await ctx["keyrings"].get(session, tid)
        secret = keyring.decrypt(bytes(row.secret), event_id=row.alert_id, field=SECRET_FIELD).decode()
        body = keyring.decrypt(bytes(row.body), event_id=fid, field=BODY_FIELD)
    started = time.monotonic()
    status: int | None
    error: str | None
    try:
        await check_url(row.webhook_url, allow_private=allow_private)
    except UnsafeURL as exc:
        status, error = None, f"refused: {exc}"
    else:
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "auditlog-alerts/1",
            "X-Auditlog-Delivery": str(fid),
            HEADER: sign(secret, body),
        }
        status, error = await _post(row.webhook_url, body, headers)
    duration_ms = int((time.monotonic() - started) * 1000)
    outcome = "succeeded" if error is None else "failed"
    attempt = int(row.attempts) + 1
    last_attempt = attempt >= ATTEMPTS
    async with ctx["db"].tenant(tid) as session:
        await session.execute(
            text(
                "INSERT INTO alert_deliveries (tenant_id, id, alert_id, firing_id, attempt, status, http_status,"
                " error, duration_ms) VALUES (:t, :id, :a, :f, :n, :s, :h, :e, :d)"
            ),
            {
                "t": tid,
                "id": uuid.uuid4(),
                "a": row.alert_id,
                "f": fid,
                "n": attempt,
                "s": outcome,
                "h": status,
                "e": error,
                "d": duration_ms,
            },
        )
        if error is None or last_attempt:
            await session.execute(
                text("UPDATE alert_firings SET status = :s WHERE tenant_id = :t AND id = :f"),
                {"s": "delivered" if error is None else "failed", "t": tid, "f": fid},
            )
    if error is not None and not last_attempt:
        delay = retry_delay_of(attempt, float(ctx.get("alert_retry_delay", 2.0)))
        await enqueue_delivery(ctx["worker"].queue, tid, fid, attempt + 1, delay)
        log.info("alert delivery %s attempt %d failed (%s); next in %.1f s", fid, attempt, error, delay)
    return outcome
