"""The HTTP protocol `clinreason serve` gives uvicorn: uvicorn's own, with TCP_NODELAY set on every connection.

With `--workers N` uvicorn binds the listening socket itself as `socket.socket(AF_INET)`, whose protocol number
is 0, and asyncio only turns Nagle's algorithm off on sockets whose protocol number is IPPROTO_TCP. So on the
second request of a kept-alive connection a response written in two parts (headers, then body) waited for the
client's delayed ACK of the first: about 40 ms on each submission in bench_scale's open loop, where the server
had spent 7 ms on it. One worker (uvicorn's own `create_server`) had it set already; now both do."""

from __future__ import annotations

import socket
from typing import Any

from uvicorn.protocols.http.auto import AutoHTTPProtocol


def no_delay(transport: Any) -> None:
    """Turn Nagle's algorithm off on the transport's TCP socket (anything else is left as it is)."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6) and sock.type == socket.SOCK_STREAM:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:  # a connection already gone: nothing to tune
            pass


class NoDelayHTTPProtocol(AutoHTTPProtocol):  # type: ignore[misc, valid-type]
    def connection_made(self, transport: Any) -> None:
        no_delay(transport)
        super().connection_made(transport)


#: what `serve` passes as uvicorn's `http` (an import string: each worker process imports it)
HTTP_PROTOCOL = "clinreason.web.protocol:NoDelayHTTPProtocol"
