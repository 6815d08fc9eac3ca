"""Failed authentications per source address: past a budget, the address is refused before any check.

Why it exists: authentication runs before the per-caller rate limiter (which keys on the principal), so
invalid tokens, unknown API keys and wrong passwords were never limited, and each unknown key cost a query.
Every failed authentication (a bad bearer token or API key in the auth middleware, a failed login on
``/auth/token``) is counted against the client address with GCRA, ``limit`` per minute; while an address is
over budget, requests carrying credentials and login attempts answer ``429`` with ``Retry-After`` without
touching the database or a password hash. Successful requests are not counted. The state is in process
memory (one float per address that failed recently, swept as it goes), so with several processes each
enforces its own budget.
"""

from __future__ import annotations

import math
import time

__all__ = ["FailedAuthLimiter"]

PERIOD_SECONDS = 60.0
_SWEEP_EVERY = 4096


class FailedAuthLimiter:
    def __init__(self, limit_per_minute: int) -> None:
        self.limit = max(1, limit_per_minute)
        self._interval = PERIOD_SECONDS / self.limit
        self._tat: dict[str, float] = {}
        self._records = 0

    def retry_after(self, source: str) -> int:
        """Seconds until ``source`` may try again; 0 when it is within its budget."""
        tat = self._tat.get(source)
        if tat is None:
            return 0
        excess = tat - time.monotonic() - PERIOD_SECONDS
        return max(1, math.ceil(excess)) if excess > 0 else 0

    def record(self, source: str) -> None:
        """Count one failed authentication of ``source``."""
        now = time.monotonic()
        self._tat[source] = max(self._tat.get(source, now), now) + self._interval
        self._records += 1
        if self._records % _SWEEP_EVERY == 0:
            self._tat = {k: v for k, v in self._tat.items() if v > now}
