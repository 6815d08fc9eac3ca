"""``canonical_ip`` (ingest's address check) answers exactly as ``ipaddress`` does, fast path or not."""

from __future__ import annotations

import ipaddress
import random

import pytest

from app.logs.prepare import canonical_ip


def _reference(value: str) -> str | None:
    if "%" in value:
        return None
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return f"::ffff:{ip.ipv4_mapped}"
    return str(ip)


@pytest.mark.parametrize(
    "value",
    ["1.2.3.4", "0.0.0.0", "255.255.255.255", "01.2.3.4", "1.2.3.04", "256.1.1.1", "1.2.3", "1.2.3.4.5", " 1.2.3.4",
     "1.2.3.4\n", "\u0661.2.3.4", "::1", "::ffff:1.2.3.4", "::FFFF:102:304", "fe80::1%eth0", "2001:DB8::1", ""],
)  # fmt: skip
def test_known_cases(value: str) -> None:
    assert canonical_ip(value) == _reference(value)


def test_random_dotted_quads() -> None:
    rng = random.Random(7)
    for _ in range(50_000):
        parts = [str(rng.choice([rng.randint(0, 300), rng.randint(0, 9)])) for _ in range(rng.choice([3, 4, 4, 5]))]
        if rng.random() < 0.1:
            parts[rng.randrange(len(parts))] = "0" + parts[0]
        value = ".".join(parts)
        assert canonical_ip(value) == _reference(value), value
