"""Where the service may send requests: no loopback, link-local, private or metadata addresses by default.

A webhook URL is an instruction to make the server connect somewhere; without this rule a tenant Admin could
make it read cloud metadata (``169.254.169.254``), an internal admin port, or the database. Every address the
host name resolves to must be globally routable (``ipaddress``'s ``is_global``, which also refuses the shared
``100.64.0.0/10`` range some clouds use for metadata, documentation and reserved ranges) and not multicast;
IPv4-mapped IPv6 addresses are judged by their IPv4 address. The check runs when the URL is saved (422) and
again right before each request (a name may be re-pointed after it was accepted). Redirects are never
followed by the senders. ``AUDIT_ALLOW_PRIVATE_URLS=true`` lifts the address rule (for on-premises
receivers), never the scheme rule.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

__all__ = ["UnsafeURL", "check_address", "check_url", "check_url_syntax"]

ALLOWED_SCHEMES = ("http", "https")


class UnsafeURL(ValueError):
    """The URL may not be used as a destination; the message says why (safe to show to the caller)."""


def check_url_syntax(url: str) -> tuple[str, int]:
    """The host and port of an absolute http(s) URL, or ``UnsafeURL``."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeURL(f"not a valid URL: {exc}") from None
    if parts.scheme not in ALLOWED_SCHEMES:
        raise UnsafeURL("must be an http:// or https:// URL")
    if not parts.hostname:
        raise UnsafeURL("must name a host")
    if len(url) > 2048:
        raise UnsafeURL("must be at most 2048 characters")
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


def check_address(address: str) -> None:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_multicast or not ip.is_global:
        raise UnsafeURL(
            f"resolves to {ip}, a loopback, link-local, private, metadata or reserved address "
            "(refused unless AUDIT_ALLOW_PRIVATE_URLS=true)"
        )


async def check_url(url: str, *, allow_private: bool) -> None:
    """Refuse ``url`` unless it is http(s) and (unless ``allow_private``) every address of its host is public."""
    host, port = check_url_syntax(url)
    if allow_private:
        return
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise UnsafeURL(f"host {host!r} does not resolve: {exc.strerror or exc}") from None
    if not infos:
        raise UnsafeURL(f"host {host!r} does not resolve")
    for info in infos:
        check_address(str(info[4][0]))
