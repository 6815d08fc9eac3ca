"""Per-tenant, per-caller rate limits (API.md "Rate limits"), as an ASGI middleware after authentication.

The key is ``(tenant id, caller id)`` from the principal the auth middleware put in ``scope["user"]``
(anonymous requests: the client address), so one tenant's traffic never eats another's allowance. Two
budgets per minute: ``/api/v1/logs...`` and everything else; probes, docs and the console's files are
exempt. The algorithm is GCRA (a token bucket kept as one timestamp per key): smooth, exact, O(1) time and
memory. The store is in process memory by default; with ``AUDIT_REDIS_URL`` it is Redis
(``app.web.ratelimit_redis``), one atomic script per request, so every process shares one budget. Every
answer carries ``RateLimit-*`` headers; a refusal is a 429 problem with ``Retry-After``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import msgspec
from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware

from app.auth.principal import Principal

if TYPE_CHECKING:
    from litestar.types import ASGIApp, HTTPResponseBodyEvent, HTTPResponseStartEvent, Message, Receive, Scope, Send

    from app.settings import Settings

__all__ = ["Decision", "MemoryStore", "RateLimitMiddleware", "RateLimiter", "build_rate_limiter"]

PERIOD_SECONDS = 60.0
LOG_PREFIX = "/api/v1/logs"
EXEMPT_PREFIXES = ("/healthz", "/readyz", "/docs", "/schema", "/console")


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset: int
    """Seconds until the full allowance is back."""
    retry_after: int
    """Seconds until the next request would be allowed (0 when allowed)."""


def gcra(tat: float, now: float, limit: int, period: float) -> tuple[Decision, float | None]:
    """One GCRA step: the decision and the new theoretical arrival time (None: refused, unchanged)."""
    interval = period / limit
    new_tat = max(tat, now) + interval
    allow_at = new_tat - period
    if allow_at > now:
        return Decision(False, limit, 0, math.ceil(max(tat, now) - now), max(1, math.ceil(allow_at - now))), None
    remaining = int((period - (new_tat - now)) / interval + 1e-9)
    return Decision(True, limit, remaining, math.ceil(new_tat - now), 0), new_tat


class Store(Protocol):
    async def hit(self, key: str, limit: int, period: float) -> Decision: ...

    async def stop(self) -> None: ...


class MemoryStore:
    """GCRA state of this process: one float per active key, swept every few thousand hits."""

    SWEEP_EVERY = 4096

    def __init__(self) -> None:
        self._tat: dict[str, float] = {}
        self._hits = 0

    async def hit(self, key: str, limit: int, period: float) -> Decision:
        now = time.monotonic()
        decision, new_tat = gcra(self._tat.get(key, now), now, limit, period)
        if new_tat is not None:
            self._tat[key] = new_tat
        self._hits += 1
        if self._hits % self.SWEEP_EVERY == 0:
            self._tat = {k: v for k, v in self._tat.items() if v > now}
        return decision

    async def stop(self) -> None:
        self._tat.clear()


class RateLimiter:
    """The two budgets of API.md and the store that counts them (kept in ``runtime.services``)."""

    def __init__(self, store: Store, *, log_routes: int, other_routes: int) -> None:
        self.store = store
        self.log_routes = log_routes
        self.other_routes = other_routes

    async def check(self, scope: Scope) -> Decision:
        path: str = scope["path"]
        logs = path.startswith(LOG_PREFIX)
        user = scope.get("user")
        if isinstance(user, Principal):
            caller = f"{user.tenant_id.hex}:{user.subject_id.hex}"
        else:
            client = scope.get("client")
            caller = f"ip:{client[0] if client else '-'}"
        if logs:
            return await self.store.hit(f"l:{caller}", self.log_routes, PERIOD_SECONDS)
        return await self.store.hit(f"o:{caller}", self.other_routes, PERIOD_SECONDS)

    async def stop(self) -> None:
        await self.store.stop()


def build_rate_limiter(settings: Settings) -> RateLimiter:
    store: Store
    if settings.redis_url:
        from app.web.ratelimit_redis import RedisStore

        store = RedisStore(settings.redis_url)
    else:
        store = MemoryStore()
    return RateLimiter(store, log_routes=settings.rate_limit_log_routes, other_routes=settings.rate_limit_other_routes)


def _headers(d: Decision) -> list[tuple[bytes, bytes]]:
    return [
        (b"ratelimit-limit", str(d.limit).encode()),
        (b"ratelimit-remaining", str(d.remaining).encode()),
        (b"ratelimit-reset", str(d.reset).encode()),
        (b"ratelimit-policy", f"{d.limit};w={int(PERIOD_SECONDS)}".encode()),
    ]


async def _send_429(scope: Scope, send: Send, d: Decision) -> None:
    body: dict[str, object] = {
        "type": "about:blank",
        "title": "Too Many Requests",
        "status": 429,
        "detail": f"rate limit exceeded: {d.limit} requests per minute; retry in {d.retry_after} s",
        "instance": scope["path"],
    }
    rid = scope.get("state", {}).get("request_id")
    if rid:
        body["request_id"] = rid
    payload = msgspec.json.encode(body)
    headers: list[tuple[bytes, bytes]] = [
        (b"content-type", b"application/problem+json"),
        (b"content-length", str(len(payload)).encode()),
        (b"retry-after", str(d.retry_after).encode()),
        *_headers(d),
    ]
    start: HTTPResponseStartEvent = {"type": "http.response.start", "status": 429, "headers": headers}
    await send(start)
    end: HTTPResponseBodyEvent = {"type": "http.response.body", "body": payload, "more_body": False}
    await send(end)


class RateLimitMiddleware(ASGIMiddleware):
    """Must come after ``AuthMiddleware`` in the middleware list: it keys on the principal."""

    scopes = (ScopeType.HTTP,)

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        limiter: RateLimiter | None = scope["litestar_app"].state.runtime.services.get("ratelimit")
        if limiter is None or scope["path"].startswith(EXEMPT_PREFIXES):
            await next_app(scope, receive, send)
            return
        decision = await limiter.check(scope)
        if not decision.allowed:
            await _send_429(scope, send, decision)
            return
        extra = _headers(decision)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await next_app(scope, receive, send_with_headers)
