"""``RareSearches`` remembers a rare search per tenant and filter set, for a while, and holds a bounded number."""

from __future__ import annotations

import time
import uuid

from app.logs.term_rarity import RareSearches


def test_remembered_per_tenant_until_it_expires() -> None:
    rare = RareSearches(ttl=0.05)
    tenant, other = uuid.uuid4(), uuid.uuid4()
    rare.remember(tenant, b"q=orchid")
    assert rare.is_rare(tenant, b"q=orchid")
    assert not rare.is_rare(other, b"q=orchid")
    assert not rare.is_rare(tenant, b"q=petal")
    time.sleep(0.06)
    assert not rare.is_rare(tenant, b"q=orchid")


def test_holds_at_most_its_size_dropping_the_oldest() -> None:
    rare = RareSearches(size=2)
    tenant = uuid.uuid4()
    for word in (b"a", b"b", b"c"):
        rare.remember(tenant, word)
    assert [rare.is_rare(tenant, w) for w in (b"a", b"b", b"c")] == [False, True, True]
