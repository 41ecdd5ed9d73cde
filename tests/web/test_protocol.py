"""`clinreason serve` turns Nagle's algorithm off on every connection (web/protocol.py). uvicorn's worker
processes accept on a socket whose protocol number is 0, where asyncio leaves Nagle on; a response written in two
parts then waited about 40 ms for the client's delayed ACK on every request after a connection's first."""

from __future__ import annotations

import asyncio
import socket

import pytest
from uvicorn.config import Config
from uvicorn.server import ServerState

from clinreason.web.protocol import HTTP_PROTOCOL, NoDelayHTTPProtocol


class _Transport:
    def __init__(self, sock: socket.socket):
        self.sock = sock

    def get_extra_info(self, name, default=None):
        return {"socket": self.sock, "sockname": self.sock.getsockname(), "peername": self.sock.getpeername(),
                "sslcontext": None}.get(name, default)

    def is_closing(self):
        return False

    def close(self):
        pass


@pytest.fixture
def accepted():
    """A connection accepted on a listener bound the way uvicorn's workers bind theirs."""
    listener = socket.socket(family=socket.AF_INET)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    client = socket.create_connection(listener.getsockname())
    conn, _ = listener.accept()
    yield conn
    for s in (conn, client, listener):
        s.close()


def _nodelay(sock: socket.socket) -> int:
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


def test_a_worker_connection_gets_tcp_nodelay_from_the_protocol_serve_uses(accepted):
    assert accepted.proto == 0 and _nodelay(accepted) == 0  # what asyncio would have left as it is
    config = Config(app=lambda scope, receive, send: None, http=HTTP_PROTOCOL)
    config.load()
    assert config.http_protocol_class is NoDelayHTTPProtocol
    loop = asyncio.new_event_loop()  # the protocol's own loop (no test leaves one current)
    try:
        protocol = config.http_protocol_class(config=config, server_state=ServerState(), app_state={}, _loop=loop)
        protocol.connection_made(_Transport(accepted))
        assert _nodelay(accepted) != 0
        protocol.connection_lost(None)
    finally:
        loop.close()


def test_serve_passes_the_protocol_to_uvicorn(monkeypatch, tmp_path):
    import uvicorn
    from typer.testing import CliRunner

    from clinreason.cli import app

    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda *a, **kw: seen.update(kw))
    monkeypatch.chdir(tmp_path)  # `init` writes clinreason.toml into the working folder: not the checkout's
    for name in ("CLINREASON_DB", "CLINREASON_PROJECT", "CLINREASON_CONFIG"):
        # `serve --workers 2` sets them for its workers: recorded here (set, then removed) so that they are
        # removed again after this test, not left to the tests that follow
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    db = tmp_path / "c.db"
    assert CliRunner().invoke(app, ["init", "--db", str(db)]).exit_code == 0
    for workers in ("1", "2"):
        result = CliRunner().invoke(app, ["serve", "--db", str(db), "--no-worker", "--workers", workers])
        assert result.exit_code == 0, result.output
        assert seen["http"] == HTTP_PROTOCOL
