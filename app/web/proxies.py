"""The real client address behind trusted reverse proxies (``AUDIT_TRUSTED_PROXIES``).

Behind a load balancer every request comes from the balancer's address; the client's is in
``X-Forwarded-For``, which anyone can also send. So the header is believed only from the proxies the
operator lists, and only as far as the chain is made of trusted hops: reading it from the right, each
address that is itself a trusted proxy is skipped, and the first one that is not is the client (the
leftmost when every hop is trusted). A malformed entry ends the walk and the request keeps the address it
was received from. The result replaces ``scope["client"]`` before anything else runs, so rate limits,
login lock-outs and the ``ip_address`` of read-audit events all see the client, not the proxy. With no
trusted proxies configured, the middleware is not installed at all.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import TYPE_CHECKING

from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware

if TYPE_CHECKING:
    from litestar.types import ASGIApp, Receive, Scope, Send

__all__ = ["ForwardedClientMiddleware", "Network", "client_behind_proxies", "parse_networks"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(value: str) -> tuple[Network, ...]:
    """``"10.0.0.0/8, 127.0.0.1"`` → networks; raises ``ValueError`` naming the entry that is not one."""
    networks = []
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"not an IP address or network: {item!r}") from None
    return tuple(networks)


def _trusted(address: ipaddress.IPv4Address | ipaddress.IPv6Address, networks: Sequence[Network]) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in networks)


def _address(entry: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """An address as proxies write it: bare, ``[v6]`` or ``[v6]:port``, or ``v4:port``."""
    if entry.startswith("["):
        entry = entry[1:].split("]", 1)[0]
    elif entry.count(":") == 1:
        entry = entry.split(":", 1)[0]
    return ipaddress.ip_address(entry)


def client_behind_proxies(peer: str, forwarded_for: Sequence[str], networks: Sequence[Network]) -> str:
    """The client address for a request received from ``peer`` with these ``X-Forwarded-For`` values."""
    try:
        hop = ipaddress.ip_address(peer)
    except ValueError:
        return peer
    if not forwarded_for or not _trusted(hop, networks):
        return peer
    chain = [entry.strip() for value in forwarded_for for entry in value.split(",")]
    client = peer
    for entry in reversed(chain):
        try:
            hop = _address(entry)
        except ValueError:
            return peer  # a trusted proxy passed on something that is not an address: believe none of it
        client = str(hop)
        if not _trusted(hop, networks):
            return client
    return client


class ForwardedClientMiddleware(ASGIMiddleware):
    """Rewrites ``scope["client"]`` from ``X-Forwarded-For`` when the peer is a trusted proxy."""

    scopes = (ScopeType.HTTP, ScopeType.WEBSOCKET)

    def __init__(self, networks: Sequence[Network]) -> None:
        self.networks = tuple(networks)

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        client = scope.get("client")
        if client:
            values = [v.decode("latin-1") for k, v in scope["headers"] if k == b"x-forwarded-for"]
            if values:
                host = client_behind_proxies(client[0], values, self.networks)
                if host != client[0]:
                    scope["client"] = (host, 0)
        await next_app(scope, receive, send)
