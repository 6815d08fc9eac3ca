"""Which address is the client behind trusted reverse proxies (``app.web.proxies``)."""

from __future__ import annotations

import pytest

from app.settings import Settings
from app.web.proxies import client_behind_proxies, parse_networks

PROXIES = parse_networks("10.0.0.0/8, 127.0.0.1, 2001:db8::/32")


@pytest.mark.parametrize(
    ("peer", "forwarded", "client"),
    [
        # the peer is not a trusted proxy: its header is ignored, whatever it says
        ("203.0.113.9", ["198.51.100.1"], "203.0.113.9"),
        # trusted peer: the rightmost address that is not itself a trusted proxy
        ("10.1.2.3", ["198.51.100.1"], "198.51.100.1"),
        ("10.1.2.3", ["192.0.2.66, 198.51.100.1, 10.9.9.9"], "198.51.100.1"),
        ("127.0.0.1", ["192.0.2.66", "198.51.100.1"], "198.51.100.1"),  # several header lines
        # a spoofed entry left of the first untrusted hop is never believed
        ("10.1.2.3", ["6.6.6.6, 198.51.100.1"], "198.51.100.1"),
        # every hop trusted: the leftmost
        ("10.1.2.3", ["10.7.7.7, 10.8.8.8"], "10.7.7.7"),
        # ports and brackets as some proxies write them; IPv6 canonicalised
        ("10.1.2.3", ["198.51.100.1:5555"], "198.51.100.1"),
        ("10.1.2.3", ["[2001:DB9::1]:443"], "2001:db9::1"),
        ("2001:db8::5", ["198.51.100.1"], "198.51.100.1"),
        ("::ffff:10.1.2.3", ["198.51.100.1"], "198.51.100.1"),  # IPv4-mapped peer
        # garbage from a trusted proxy: believe none of it
        ("10.1.2.3", ["198.51.100.1, not-an-ip"], "10.1.2.3"),
        ("10.1.2.3", ["unknown"], "10.1.2.3"),
        # no header, or an unparsable peer
        ("10.1.2.3", [], "10.1.2.3"),
        ("testclient", ["198.51.100.1"], "testclient"),
    ],
)
def test_client_behind_proxies(peer: str, forwarded: list[str], client: str) -> None:
    assert client_behind_proxies(peer, forwarded, PROXIES) == client


def test_no_trusted_proxies_believes_no_header() -> None:
    assert client_behind_proxies("10.1.2.3", ["198.51.100.1"], ()) == "10.1.2.3"


def test_parse_networks() -> None:
    assert [str(n) for n in parse_networks(" 10.0.0.0/8 ,, ::1 ")] == ["10.0.0.0/8", "::1/128"]
    assert parse_networks("") == ()
    with pytest.raises(ValueError, match="not-a-net"):
        parse_networks("10.0.0.0/8, not-a-net")


def test_settings_refuse_a_bad_trusted_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUDIT_TRUSTED_PROXIES", "10.0.0.0/33")
    with pytest.raises(ValueError, match="AUDIT_TRUSTED_PROXIES"):
        Settings(_env_file=None)  # type: ignore[call-arg]
