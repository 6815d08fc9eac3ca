"""The shared rate-limit store: GCRA in one Redis Lua script, so all API processes share one budget.

The script reads the key's theoretical arrival time, decides and writes it back atomically, using the
Redis server's clock (so processes with skewed clocks still agree); the key expires once the bucket is
full again. If Redis is unreachable, this process falls back to its own in-memory budget for a few
seconds before trying again (and logs a warning): an outage of the limiter must not become an outage,
or a slow-down, of the API.
"""

from __future__ import annotations

import logging
import time

import redis.asyncio as redis

from app.web.ratelimit import Decision, MemoryStore

__all__ = ["RedisStore"]

log = logging.getLogger(__name__)

KEY_PREFIX = "auditlog:rl:"
RETRY_AFTER_OUTAGE_SECONDS = 5.0

# KEYS[1] the bucket; ARGV[1] period (ms), ARGV[2] limit. Returns {allowed, remaining, reset_ms, retry_ms}.
GCRA_LUA = """
local period = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = period / limit
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - period
if allow_at > now then
  return {0, 0, math.ceil(tat - now), math.ceil(allow_at - now)}
end
redis.call('SET', KEYS[1], string.format('%.3f', new_tat), 'PX', math.ceil(new_tat - now))
return {1, math.floor((period - (new_tat - now)) / interval + 1e-9), math.ceil(new_tat - now), 0}
"""


class RedisStore:
    def __init__(self, url: str) -> None:
        self._client = redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
        self._script = self._client.register_script(GCRA_LUA)
        self._fallback = MemoryStore()
        self._down_until = 0.0

    async def hit(self, key: str, limit: int, period: float) -> Decision:
        if self._down_until and time.monotonic() < self._down_until:
            return await self._fallback.hit(key, limit, period)
        try:
            allowed, remaining, reset_ms, retry_ms = await self._script(
                keys=[KEY_PREFIX + key], args=[int(period * 1000), limit]
            )
        except (redis.RedisError, OSError) as exc:
            log.warning("rate limiter: redis unavailable, using this process's budget for a while: %s", exc)
            self._down_until = time.monotonic() + RETRY_AFTER_OUTAGE_SECONDS
            return await self._fallback.hit(key, limit, period)
        self._down_until = 0.0
        return Decision(
            bool(allowed),
            limit,
            int(remaining),
            -(-int(reset_ms) // 1000),
            max(1, -(-int(retry_ms) // 1000)) if not allowed else 0,
        )

    async def stop(self) -> None:
        await self._client.aclose()
        await self._fallback.stop()
