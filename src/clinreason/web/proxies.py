"""Which client a request came from, and over which scheme, when the review app sits behind reverse proxies.

`X-Forwarded-For` and `X-Forwarded-Proto` are headers anyone can send. They are believed only when the
peer that opened the connection is one of `[web] trusted_proxies` (addresses or CIDR networks; default:
none), and then only as far as the chain of trusted proxies goes: X-Forwarded-For is read from the right
(each proxy appends the peer it saw), skipping trusted hops, and the first address that is not a trusted
proxy is the client. With no trusted proxies the peer itself is the client, whatever the headers say —
so a process on this machine cannot pick the address the login throttle counts its failures under.

`client_address` and `forwarded_scheme` are pure functions of (peer, headers, trusted networks); the ASGI
middleware `TrustedProxyHeaders` applies them to every request (scope["client"], scope["scheme"]), so
`request.client.host` (auth.client_address) and `request.url.scheme` (the Secure cookie flag) are right
everywhere. uvicorn must then be run with `proxy_headers=False` (cli/web.py), or its own middleware
would believe the headers from 127.0.0.1 before this one sees them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from typing import Any

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_trusted(entries: Iterable[str]) -> tuple[Network, ...]:
    """`[web] trusted_proxies` as networks (a bare address is a /32 or /128). ValueError names a bad entry."""
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ValueError(f"trusted proxy '{entry}' is not an IP address or network (e.g. 127.0.0.1, 10.0.0.0/8)") \
                from None
    return tuple(networks)


def _address(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An address from a forwarded value: bare, IPv4 with a port, or [IPv6] with a port; None if none."""
    value = value.strip().strip('"')
    if value.startswith("["):
        value = value[1:value.find("]")] if "]" in value else value
    elif value.count(":") == 1:
        value = value.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped or address


def is_trusted(host: str | None, trusted: Sequence[Network]) -> bool:
    address = _address(host) if host else None
    return address is not None and any(address in network for network in trusted)


def _hops(forwarded_for: Iterable[str]) -> list[str]:
    """Every X-Forwarded-For value, in order (several header lines are one list)."""
    return [part.strip() for line in forwarded_for for part in line.split(",") if part.strip()]


def client_address(peer: str | None, forwarded_for: Iterable[str], trusted: Sequence[Network]) -> str:
    """The client's address: the peer, unless the peer is a trusted proxy; then the right-most
    X-Forwarded-For entry that is not a trusted proxy (all trusted: the left-most). An entry that is not
    an address stops the walk at the last trusted hop: a proxy only ever appends the address it saw."""
    fallback = peer or "unknown"
    if not trusted or not is_trusted(peer, trusted):
        return fallback
    hops = _hops(forwarded_for)
    current = fallback
    for hop in reversed(hops):
        address = _address(hop)
        if address is None:
            return current
        current = str(address)
        if not any(address in network for network in trusted):
            return current
    return current


def forwarded_scheme(peer: str | None, forwarded_proto: Iterable[str], trusted: Sequence[Network],
                     scheme: str) -> str:
    """`http` or `https` as the nearest trusted proxy reports it (the right-most value); `scheme` (the
    connection's own) when the peer is not trusted or the header says something else."""
    if not trusted or not is_trusted(peer, trusted):
        return scheme
    values = _hops(forwarded_proto)
    if not values:
        return scheme
    value = values[-1].lower()
    return value if value in ("http", "https") else scheme


class TrustedProxyHeaders:
    """Pure ASGI middleware: the request's client and scheme as `client_address` / `forwarded_scheme` say.

        app.add_middleware(TrustedProxyHeaders, trusted_proxies=settings.project_config.web.trusted_proxies)
    """

    def __init__(self, app: Any, trusted_proxies: Iterable[str] = ()):
        self.app = app
        self.trusted = parse_trusted(trusted_proxies)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket") and self.trusted:
            peer = scope.get("client")
            host = peer[0] if peer else None
            if is_trusted(host, self.trusted):
                headers = [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in scope.get("headers", [])]
                forwarded_for = [v for k, v in headers if k == "x-forwarded-for"]
                proto = [v for k, v in headers if k == "x-forwarded-proto"]
                scope = dict(scope)
                client = client_address(host, forwarded_for, self.trusted)
                if client != host:
                    scope["client"] = (client, 0)
                scheme = forwarded_scheme(host, proto, self.trusted, scope.get("scheme", "http"))
                scope["scheme"] = scheme if scope["type"] == "http" else scheme.replace("http", "ws")
        await self.app(scope, receive, send)
