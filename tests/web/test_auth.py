"""Accounts and sessions as a user meets them: signing in, tokens, cookies, CSRF, throttling, expiry."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update

from clinreason.store.common import now
from clinreason.store.tables import users, web_sessions
from web.factories import PASSWORD, browser_login, csrf_of


def test_api_login_gives_a_working_bearer_token_and_logout_revokes_it(client, seed):
    seed.user("alice")
    r = client.post("/api/login", json={"username": "alice", "password": PASSWORD})
    assert r.status_code == 200 and r.json()["token"].startswith("cr_")
    auth = {"Authorization": f"Bearer {r.json()['token']}"}
    assert client.get("/api/me", headers=auth).json() == {"username": "alice", "role": "reviewer", "specialties": [],
                                                          "project": "default", "language": None}
    assert client.post("/api/logout", headers=auth).status_code == 204
    assert client.get("/api/me", headers=auth).status_code == 401


def test_wrong_password_or_unknown_user_is_401_with_the_same_message(client, seed):
    seed.user("alice")
    wrong = client.post("/api/login", json={"username": "alice", "password": "nope-nope"})
    ghost = client.post("/api/login", json={"username": "ghost", "password": "nope-nope"})
    assert wrong.status_code == ghost.status_code == 401
    assert wrong.json() == ghost.json() == {"detail": "wrong user name or password"}


def test_login_body_missing_a_field_is_422_naming_it(client):
    r = client.post("/api/login", json={"username": "alice"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "password"]


def test_passwords_are_stored_as_argon2id_and_weak_hashes_are_upgraded_at_login(client, seed, engine):
    seed.user("alice")
    with engine.connect() as conn:
        before = conn.execute(select(users.c.password_hash).where(users.c.username == "alice")).scalar_one()
    assert before.startswith("$argon2id$") and "m=1024" in before
    assert client.post("/api/login", json={"username": "alice", "password": PASSWORD}).status_code == 200
    with engine.connect() as conn:
        after = conn.execute(select(users.c.password_hash).where(users.c.username == "alice")).scalar_one()
    assert after.startswith("$argon2id$") and "m=1024" not in after and PASSWORD not in after


def test_too_many_failures_throttle_even_the_right_password(client, seed):
    seed.user("alice")
    for _ in range(5):
        assert client.post("/api/login", json={"username": "alice", "password": "wrong-guess"}).status_code == 401
    r = client.post("/api/login", json={"username": "alice", "password": PASSWORD})
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
    page = client.get("/login")
    r = client.post("/login", data={"username": "alice", "password": PASSWORD, "csrf_token": csrf_of(page.text)})
    assert r.status_code == 429 and "too many failed sign-ins" in r.text


def test_browser_session_cookie_is_signed_httponly_samesite_and_rotated_at_login(client, seed, engine):
    seed.user("alice")
    first = browser_login(client, "alice")
    assert first.status_code == 303 and first.headers["location"] == "/review"
    cookie = first.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" not in cookie
    old_value = client.cookies.get("clinreason_session")
    second = browser_login(client, "alice")  # signing in again while holding a session
    assert second.status_code == 303 and client.cookies.get("clinreason_session") != old_value
    with engine.connect() as conn:
        assert conn.execute(select(web_sessions)).all().__len__() == 1, "the old session must be gone (no fixation)"
    client.cookies.clear()
    client.cookies.set("clinreason_session", old_value)
    assert client.get("/review", follow_redirects=False).status_code == 303


def test_forged_or_tampered_cookie_is_refused(client, seed):
    seed.user("alice")
    browser_login(client, "alice")
    value = client.cookies.get("clinreason_session")
    client.cookies.clear()
    client.cookies.set("clinreason_session", value[:-2] + ("AA" if not value.endswith("AA") else "BB"))
    r = client.get("/review", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login")


def test_cookie_is_secure_over_https(web_app, seed):
    from fastapi.testclient import TestClient

    seed.user("alice")
    with TestClient(web_app, base_url="https://review.example") as c:
        assert "Secure" in browser_login(c, "alice").headers["set-cookie"]


def test_state_changing_form_without_the_csrf_token_is_refused(client, seed):
    seed.user("alice")
    seed.item()
    browser_login(client, "alice")
    assert client.post("/review/next", data={}).status_code == 403
    assert client.post("/review/next", data={"csrf_token": "forged"}).status_code == 403
    token = csrf_of(client.get("/review").text)
    assert client.post("/review/next", data={"csrf_token": token}, follow_redirects=False).status_code == 303
    # htmx requests send it as a header
    r = client.get("/api/queue/next")
    aid = r.json()["assignment_id"]
    assert client.put(f"/api/assignments/{aid}/draft", json={"scores": {"correctness": 3}}).status_code == 403
    assert client.put(f"/api/assignments/{aid}/draft", json={"scores": {"correctness": 3}},
                      headers={"X-CSRF-Token": token}).status_code == 204


def test_bearer_requests_need_no_csrf_token(client, seed):
    alice = seed.user("alice")
    seed.item()
    aid = client.get("/api/queue/next", headers=alice["auth"]).json()["assignment_id"]
    assert client.put(f"/api/assignments/{aid}/draft", json={"scores": {}}, headers=alice["auth"]).status_code == 204


def test_login_form_needs_its_own_csrf_cookie(client, seed):
    seed.user("alice")
    r = client.post("/login", data={"username": "alice", "password": PASSWORD, "csrf_token": "made-up"})
    assert r.status_code == 403 and "clinreason_session" not in r.headers.get("set-cookie", "")


def test_idle_and_expired_sessions_end(client, seed, engine):
    seed.user("alice")
    browser_login(client, "alice")
    assert client.get("/review").status_code == 200
    with engine.begin() as conn:
        conn.execute(update(web_sessions).values(last_seen_at=now() - timedelta(hours=3)))
    r = client.get("/review", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login?next=/review"
    browser_login(client, "alice")
    with engine.begin() as conn:
        conn.execute(update(web_sessions).values(expires_at=now() - timedelta(seconds=1)))
    assert client.get("/api/me").status_code == 401


def test_deactivated_user_is_locked_out_at_once(client, seed, engine):
    alice = seed.user("alice")
    assert client.get("/api/me", headers=alice["auth"]).status_code == 200
    with engine.begin() as conn:
        conn.execute(update(users).where(users.c.username == "alice").values(active=False))
    assert client.get("/api/me", headers=alice["auth"]).status_code == 401
    assert client.post("/api/login", json={"username": "alice", "password": PASSWORD}).status_code == 401


def test_login_redirect_never_leaves_the_site(client, seed):
    seed.user("alice")
    page = client.get("/login?next=//evil.example/x")
    assert 'value="//evil.example' not in page.text
    r = client.post("/login", data={"username": "alice", "password": PASSWORD, "csrf_token": csrf_of(page.text),
                                    "next": "//evil.example/x"}, follow_redirects=False)
    assert r.headers["location"] == "/review"


def test_pages_send_a_strict_content_security_policy(client, seed):
    r = client.get("/login")
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert r.headers["x-frame-options"] == "DENY"
