"""X-Forwarded-For / X-Forwarded-Proto are believed only from `[web] trusted_proxies` (web/proxies.py).

A process on this machine talks to the review app from 127.0.0.1; if it could name its own address in a
header, it could fail logins forever under ever new addresses and never meet the per-client limit. These
tests show it cannot: with no trusted proxy (the default) the throttled address is the peer's whatever
the headers say, through the app (TestClient) and through a real `clinreason serve` (uvicorn must not
believe the headers either); with a trusted proxy, its clients are told apart and still cannot escape
by writing addresses into the header themselves."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from clinreason.config import ConfigError, ProjectConfig, Settings, WebConfig, load_project_config
from clinreason.store.tables import login_attempts
from clinreason.web.proxies import TrustedProxyHeaders, client_address, forwarded_scheme, parse_trusted

PROXY = parse_trusted(["127.0.0.1", "10.0.0.0/8"])


@pytest.mark.parametrize("peer,header,expected", [
    ("127.0.0.1", [], "127.0.0.1"),
    ("127.0.0.1", ["203.0.113.5"], "203.0.113.5"),  # a trusted proxy's client
    ("127.0.0.1", ["198.51.100.1, 203.0.113.5"], "203.0.113.5"),  # what the client wrote itself is not believed
    ("127.0.0.1", ["203.0.113.5, 10.1.2.3"], "203.0.113.5"),  # through two trusted proxies
    ("127.0.0.1", ["198.51.100.1", "203.0.113.5"], "203.0.113.5"),  # two header lines are one list
    ("127.0.0.1", ["10.1.2.3, 10.4.5.6"], "10.1.2.3"),  # every hop trusted: the left-most
    ("127.0.0.1", ["not-an-ip, 10.1.2.3"], "10.1.2.3"),  # garbage stops the walk at the last trusted hop
    ("127.0.0.1", ["[2001:db8::1]:4711"], "2001:db8::1"),
    ("127.0.0.1", ["203.0.113.5:8080"], "203.0.113.5"),
    ("192.0.2.9", ["203.0.113.5"], "192.0.2.9"),  # not a trusted peer: the header is ignored
    ("::ffff:127.0.0.1", ["203.0.113.5"], "203.0.113.5"),  # an IPv4-mapped peer is the same peer
    (None, ["203.0.113.5"], "unknown"),
])
def test_the_client_is_the_first_untrusted_hop(peer, header, expected):
    assert client_address(peer, header, PROXY) == expected


def test_nothing_is_believed_without_trusted_proxies():
    assert client_address("127.0.0.1", ["203.0.113.5"], ()) == "127.0.0.1"
    assert forwarded_scheme("127.0.0.1", ["https"], (), "http") == "http"
    assert forwarded_scheme("127.0.0.1", ["http, https"], PROXY, "http") == "https"
    assert forwarded_scheme("127.0.0.1", ["gopher"], PROXY, "http") == "http"
    assert forwarded_scheme("192.0.2.9", ["https"], PROXY, "http") == "http"


def test_the_setting_is_checked(tmp_path):
    assert WebConfig().trusted_proxies == [] and ProjectConfig().web.trusted_proxies == []
    bad = tmp_path / "clinreason.toml"
    bad.write_text('[web]\ntrusted_proxies = ["127.0.0.1", "proxy.local"]\n')
    with pytest.raises(ConfigError, match=r"web\.trusted_proxies.*'proxy\.local' is not an IP address or network"):
        load_project_config(bad)
    with pytest.raises(ValueError, match="not an IP address"):
        parse_trusted(["300.1.1.1"])


def _app(engine, db_url, tmp_path, trusted: list[str]):
    from clinreason.web import create_app
    from clinreason.web.auth import AuthConfig

    settings = Settings(db_url=db_url, project="default", config_path=Path(tmp_path / "clinreason.toml"),
                        project_config=ProjectConfig())
    app = create_app(settings, engine=engine, auth_config=AuthConfig(secret_key="k" * 40, max_failures_per_user=100,
                                                                      max_failures_per_client=3))
    # what web/app.py create_app is to do with settings.project_config.web.trusted_proxies
    app.add_middleware(TrustedProxyHeaders, trusted_proxies=trusted)
    return app


def _fail_login(client, n: int, forwarded_for: str | None = None) -> int:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    return client.post("/api/login", json={"username": f"nobody{n}", "password": "wrong-password"},
                       headers=headers).status_code


def test_a_local_process_cannot_change_its_throttled_address(engine, project, db_url, tmp_path):
    from fastapi.testclient import TestClient

    with TestClient(_app(engine, db_url, tmp_path, []), client=("127.0.0.1", 50000)) as client:
        assert [_fail_login(client, n, f"203.0.113.{n}") for n in range(3)] == [401, 401, 401]
        assert _fail_login(client, 3, "198.51.100.77") == 429  # a new forwarded address changes nothing
        assert _fail_login(client, 4) == 429
    with engine.connect() as conn:
        clients = set(conn.execute(select(login_attempts.c.client)).scalars())
    assert clients == {"127.0.0.1"}


def test_behind_a_trusted_proxy_its_clients_are_told_apart(engine, project, db_url, tmp_path):
    from fastapi.testclient import TestClient

    with TestClient(_app(engine, db_url, tmp_path, ["127.0.0.1"]), client=("127.0.0.1", 50000)) as client:
        assert [_fail_login(client, n, "203.0.113.5") for n in range(3)] == [401, 401, 401]
        assert _fail_login(client, 3, "203.0.113.5") == 429
        # the throttled client prepends an address of its choosing: the proxy appended the real one
        assert _fail_login(client, 4, "198.51.100.1, 203.0.113.5") == 429
        assert _fail_login(client, 5, "203.0.113.6") == 401  # another client of the proxy is not throttled
    with engine.connect() as conn:
        clients = set(conn.execute(select(login_attempts.c.client)).scalars())
    assert clients == {"203.0.113.5", "203.0.113.6"}


def test_the_forwarded_scheme_is_believed_from_a_trusted_proxy_only():
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    async def where(request):
        return PlainTextResponse(f"{request.client.host} {request.url.scheme}")

    for trusted, expected in (([], "127.0.0.1 http"), (["127.0.0.1"], "203.0.113.5 https")):
        app = TrustedProxyHeaders(Starlette(routes=[Route("/", where)]), trusted_proxies=trusted)
        with TestClient(app, client=("127.0.0.1", 1234)) as client:
            answer = client.get("/", headers={"X-Forwarded-For": "203.0.113.5", "X-Forwarded-Proto": "https"})
        assert answer.text == expected


def test_clinreason_serve_does_not_believe_the_header_either(tmp_path):
    """The real server (uvicorn, as `clinreason serve` runs it): 30 failed logins from this machine, each
    claiming another address in X-Forwarded-For, and the next one is refused as from the same client."""
    from clinreason.testing.helpers import cli, cli_env, free_port, serve_process, wait_until_serving

    env = cli_env(tmp_path / "web.db", None)
    assert cli(["init"], env, tmp_path).returncode == 0
    port = free_port()
    proc = serve_process(env, tmp_path, port=port, extra=["--no-worker"], log=tmp_path / "serve.log")
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_serving(f"{base}/login", proc)
        with httpx.Client(base_url=base, timeout=30) as http:
            codes = [http.post("/api/login", json={"username": f"u{n}", "password": "wrong-password"},
                               headers={"X-Forwarded-For": f"203.0.113.{n}"}).status_code for n in range(31)]
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    assert codes[:30] == [401] * 30 and codes[30] == 429
