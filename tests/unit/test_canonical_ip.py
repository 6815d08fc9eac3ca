"""``canonical_ip`` (ingest's address check) answers exactly as ``ipaddress`` does (``parsed_ip``), fast path or
not; and ``parsed_ip`` is what ``ipaddress`` says."""

from __future__ import annotations

import random

import pytest

from app.logs.prepare import canonical_ip, parsed_ip


@pytest.mark.parametrize(
    "value",
    ["1.2.3.4", "0.0.0.0", "255.255.255.255", "01.2.3.4", "1.2.3.04", "256.1.1.1", "1.2.3", "1.2.3.4.5", " 1.2.3.4",
     "1.2.3.4\n", "\u0661.2.3.4", "::1", "::ffff:1.2.3.4", "::FFFF:102:304", "fe80::1%eth0", "2001:DB8::1", ""],
)  # fmt: skip
def test_known_cases(value: str) -> None:
    assert canonical_ip(value) == parsed_ip(value)


def test_random_dotted_quads() -> None:
    rng = random.Random(7)
    for _ in range(50_000):
        parts = [str(rng.choice([rng.randint(0, 300), rng.randint(0, 9)])) for _ in range(rng.choice([3, 4, 4, 5]))]
        if rng.random() < 0.1:
            parts[rng.randrange(len(parts))] = "0" + parts[0]
        value = ".".join(parts)
        assert canonical_ip(value) == parsed_ip(value), value


def test_parsed_ip_is_ipaddress() -> None:
    assert parsed_ip("::FFFF:102:304") == "::ffff:1.2.3.4"
    assert parsed_ip("2001:DB8::1") == "2001:db8::1"
    assert parsed_ip("01.2.3.4") is None and parsed_ip("fe80::1%eth0") is None
    assert parsed_ip("1.2.3.4") == "1.2.3.4"
