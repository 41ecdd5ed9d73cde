"""Sessions and cookies against an attacker, beyond what tests/web/test_auth.py already pins (login rotates
the cookie and deletes the old session, tampered cookies are refused, Secure over https, CSRF, the
per-account throttle, idle expiry): a session planted before sign-in never becomes the victim's, sign-out
ends the session on the server (a replayed cookie is dead), every flag of every cookie, the session id is
not stored in clear, bearer tokens are taken from the Authorization header only — never from a query
string or a cookie — and sign-in is throttled per account across clients and per client across accounts."""

from __future__ import annotations

import hashlib
from http.cookies import SimpleCookie

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from web.factories import PASSWORD, browser_login, csrf_of

from clinreason.store.tables import web_sessions

COOKIE = "clinreason_session"


def _set_cookies(response) -> dict[str, dict[str, str]]:
    """Every Set-Cookie of a response: name -> its attributes (lower-case keys, 'value' for the value)."""
    found: dict[str, dict[str, str]] = {}
    for header in response.headers.get_list("set-cookie"):
        jar = SimpleCookie()
        jar.load(header)
        for name, morsel in jar.items():
            attrs = {k: v for k, v in morsel.items() if v}
            attrs["value"] = morsel.value
            attrs["flags"] = header.lower()
            found[name] = attrs
    return found


def _who(client: TestClient, cookie: str | None) -> int | str:
    """The user name a cookie signs in as (via /api/me), or the status code when it signs in nobody."""
    client.cookies.clear()
    if cookie is not None:
        client.cookies.set(COOKIE, cookie)
    r = client.get("/api/me")
    return r.json()["username"] if r.status_code == 200 else r.status_code


def _sessions(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(web_sessions)).scalar_one()


def test_a_session_planted_before_sign_in_never_signs_in_as_the_victim(client, seed, engine):
    seed.user("alice")
    seed.user("mallory")
    # Mallory signs in and plants her own, valid session cookie in Alice's browser ...
    browser_login(client, "mallory")
    planted = client.cookies.get(COOKIE)
    assert _who(client, planted) == "mallory"
    # ... Alice then signs in with that browser
    client.cookies.clear()
    client.cookies.set(COOKIE, planted)
    r = browser_login(client, "alice")
    assert r.status_code == 303
    issued = _set_cookies(r)[COOKIE]["value"]
    assert issued != planted, "the session id was not rotated at sign-in"
    assert _who(client, issued) == "alice"
    assert _who(client, planted) == 401, "the planted cookie must not reach Alice's (or any) session"
    # a cookie for a made-up id (signed or not) is never adopted as the new session either
    client.cookies.clear()
    client.cookies.set(COOKIE, "attacker-chosen-session-id")
    r = browser_login(client, "alice")
    assert _set_cookies(r)[COOKIE]["value"] not in ("attacker-chosen-session-id",)
    assert _who(client, "attacker-chosen-session-id") == 401


def test_sign_out_ends_the_session_on_the_server(client, seed, engine):
    seed.user("alice")
    browser_login(client, "alice")
    cookie = client.cookies.get(COOKIE)
    token = csrf_of(client.get("/review").text)
    sessions_before = _sessions(engine)
    r = client.post("/logout", data={"csrf_token": token}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"
    cleared = _set_cookies(r)[COOKIE]
    assert cleared["value"] in ("", '""') and ("max-age=0" in cleared["flags"] or "expires=" in cleared["flags"])
    assert _sessions(engine) == sessions_before - 1
    # the browser forgot the cookie; an attacker who copied it replays it: dead, on pages and on the API
    assert _who(client, cookie) == 401
    client.cookies.set(COOKIE, cookie)
    r = client.get("/review", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login")


def test_api_sign_out_with_the_session_cookie_ends_it_too(client, seed, engine):
    seed.user("alice")
    browser_login(client, "alice")
    cookie = client.cookies.get(COOKIE)
    token = csrf_of(client.get("/review").text)
    assert client.post("/api/logout").status_code == 403  # no CSRF token: a forged sign-out is refused
    assert client.post("/api/logout", headers={"X-CSRF-Token": token}).status_code == 204
    assert _who(client, cookie) == 401


def test_sign_out_is_not_possible_cross_site(client, seed, engine):
    seed.user("alice")
    browser_login(client, "alice")
    cookie = client.cookies.get(COOKIE)
    assert client.post("/logout", data={}, follow_redirects=False).status_code == 403
    assert _who(client, cookie) == "alice"


@pytest.mark.parametrize("base_url,secure", [("http://review.example", False), ("https://review.example", True)])
def test_every_cookie_carries_its_flags(web_app, seed, base_url, secure):
    seed.user("alice")
    with TestClient(web_app, base_url=base_url) as c:
        page = c.get("/login")
        login_csrf = _set_cookies(page)["clinreason_login_csrf"]
        r = c.post("/login", data={"username": "alice", "password": PASSWORD, "csrf_token": csrf_of(page.text),
                                   "next": ""}, follow_redirects=False)
        session = _set_cookies(r)[COOKIE]
    for cookie, same_site, path in ((login_csrf, "strict", "/login"), (session, "lax", "/")):
        assert "httponly" in cookie and cookie.get("samesite", "").lower() == same_site, cookie
        assert cookie["path"] == path
        assert ("secure" in cookie) is secure, cookie
        assert "domain" not in cookie, "a Domain attribute would widen the cookie to sub-domains"
        assert 0 < int(cookie["max-age"]) <= 12 * 3600
    assert session["value"].count(".") == 2  # signed (itsdangerous), not a bare id


def test_the_session_id_is_not_stored_in_clear(client, seed, engine):
    from clinreason.web import auth

    seed.user("alice")
    browser_login(client, "alice")
    session_id = auth.unsign_session(client.app.state.web.auth, client.cookies.get(COOKIE))
    with engine.connect() as conn:
        rows = conn.execute(select(web_sessions)).mappings().all()
    assert len(rows) == 1
    assert rows[0]["id_hash"] == hashlib.sha256(session_id.encode()).hexdigest()
    assert session_id not in repr(dict(rows[0])), "a database reader must not be able to replay sessions"


@pytest.mark.parametrize("name", ["token", "access_token", "bearer", "auth", "authorization", "api_key"])
def test_bearer_tokens_are_not_taken_from_the_query_string_or_a_cookie(client, seed, name):
    alice = seed.user("alice")
    assert client.get("/api/me", headers=alice["auth"]).status_code == 200
    assert client.get(f"/api/me?{name}={alice['token']}").status_code == 401
    assert client.get(f"/api/me?{name}=Bearer%20{alice['token']}").status_code == 401
    r = client.get(f"/review?{name}={alice['token']}", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login")
    client.cookies.set(name, alice["token"])
    client.cookies.set(COOKIE, alice["token"])  # a token is not a session either
    assert client.get("/api/me").status_code == 401


def test_sign_in_is_throttled_per_account_whatever_the_client(web_app, seed):
    """An attacker rotating client addresses (or X-Forwarded-For) still gets five guesses per account."""
    seed.user("alice")
    for i in range(5):
        with TestClient(web_app, client=(f"198.51.100.{i}", 40000 + i)) as c:
            r = c.post("/api/login", json={"username": "alice", "password": "wrong-guess"},
                       headers={"X-Forwarded-For": f"203.0.113.{i}"})
            assert r.status_code == 401
    with TestClient(web_app, client=("192.0.2.77", 40100)) as c:
        r = c.post("/api/login", json={"username": "alice", "password": PASSWORD})
        assert r.status_code == 429 and int(r.headers["retry-after"]) > 0


def test_sign_in_is_throttled_per_client_across_accounts(web_app, seed):
    """Password spraying (one guess at many accounts) from one address stops at the per-client limit, and
    claiming another address in X-Forwarded-For does not reset it; another client is not affected."""
    limit = web_app.state.web.auth.max_failures_per_client
    seed.user("alice")
    with TestClient(web_app, client=("198.51.100.9", 41000)) as c:
        for i in range(limit):
            r = c.post("/api/login", json={"username": f"user{i}", "password": "Spring2025!"},
                       headers={"X-Forwarded-For": f"203.0.113.{i % 250}"})
            assert r.status_code == 401, (i, r.status_code)
        r = c.post("/api/login", json={"username": "alice", "password": PASSWORD})
        assert r.status_code == 429
        page = c.get("/login")
        r = c.post("/login", data={"username": "alice", "password": PASSWORD, "csrf_token": csrf_of(page.text)})
        assert r.status_code == 429
    with TestClient(web_app, client=("192.0.2.10", 41001)) as other:
        assert other.post("/api/login", json={"username": "alice", "password": PASSWORD}).status_code == 200


def test_a_failed_sign_in_while_holding_a_session_keeps_nobody_signed_in_as_someone_else(client, seed, engine):
    seed.user("alice")
    seed.user("bob")
    browser_login(client, "alice")
    held = client.cookies.get(COOKIE)
    r = browser_login(client, "bob", password="wrong-password")
    assert r.status_code == 401 and COOKIE not in _set_cookies(r)
    assert _who(client, held) == "alice"  # a wrong password neither ends nor hands over the session
