"""What the API process learned about how common a search is, so that the next page of it skips a wasted walk.

A ``q`` page (``app.logs.search_page``) first walks up to ``WALK_ROWS`` of the newest events; when the term is
rare that walk finds (nearly) nothing and the page is read through the GIN index after it, so the walk is pure
cost: more than half of a rare-word page's PostgreSQL time. A search is rarely asked once: a user pages through
it, a console refreshes it, an integration polls it. Once a walk has shown a search (its tenant and exact filter
set, ``q`` included, whatever the cursor) to be rare, its next pages go straight to the GIN index for
``TTL_SECONDS``. A term that became common since then costs one slower page (the GIN path reads every match);
the page is the same either way, since every path applies every filter and the keyset position.
"""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from typing import Final

__all__ = ["MAX_ENTRIES", "TTL_SECONDS", "RareSearches"]

TTL_SECONDS: Final = 60.0
MAX_ENTRIES: Final = 10_000


class RareSearches:
    """Searches known to be rare, per tenant and filter set, for ``ttl`` seconds (at most ``size``, oldest out)."""

    def __init__(self, *, ttl: float = TTL_SECONDS, size: int = MAX_ENTRIES) -> None:
        self._ttl = ttl
        self._size = size
        self._until: OrderedDict[tuple[uuid.UUID, bytes], float] = OrderedDict()

    def remember(self, tenant_id: uuid.UUID, fingerprint: bytes) -> None:
        key = (tenant_id, fingerprint)
        self._until[key] = time.monotonic() + self._ttl
        self._until.move_to_end(key)
        while len(self._until) > self._size:
            self._until.popitem(last=False)

    def is_rare(self, tenant_id: uuid.UUID, fingerprint: bytes) -> bool:
        key = (tenant_id, fingerprint)
        until = self._until.get(key)
        if until is None:
            return False
        if until < time.monotonic():
            del self._until[key]
            return False
        return True
