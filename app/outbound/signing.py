"""``X-Auditlog-Signature``: how a receiver knows a request came from us, unaltered and recently.

``t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`` (API.md, alerts). The timestamp is
inside the MAC, so a receiver that refuses signatures older than a few minutes is safe from replays; several
``v1=`` values may appear while a secret is being rotated. ``verify`` is what a receiver runs (and our tests).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

__all__ = ["HEADER", "new_secret", "sign", "verify"]

HEADER = "X-Auditlog-Signature"


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def sign(secret: str, body: bytes, *, timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify(secret: str, body: bytes, header: str, *, tolerance_seconds: int = 300, now: float | None = None) -> bool:
    """True when ``header`` carries a valid ``v1`` MAC of ``body`` made within ``tolerance_seconds``."""
    fields = [part.partition("=") for part in header.split(",")]
    stamps = [v for k, _, v in fields if k.strip() == "t"]
    macs = [v.strip() for k, _, v in fields if k.strip() == "v1"]
    if len(stamps) != 1 or not stamps[0].strip().isdigit() or not macs:
        return False
    t = int(stamps[0])
    if abs((time.time() if now is None else now) - t) > tolerance_seconds:
        return False
    expected = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected, mac) for mac in macs)
