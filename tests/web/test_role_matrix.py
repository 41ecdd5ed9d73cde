"""Who may do what: anonymous -> 401 everywhere, wrong role -> 403, another reviewer's pending review -> 403,
another project's ids -> 404, malformed bodies -> 422 naming the field."""

from __future__ import annotations

import re

import pytest
from fastapi.routing import APIRoute

from web.factories import SCORES

PUBLIC = {("POST", "/api/login"), ("GET", "/login"), ("POST", "/login")}


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x1", path)


def _routes(app):
    """Every route of the app's routers (from the modules, as newer FastAPI wraps included routers)."""
    from clinreason.web.app import route_modules

    for module in route_modules():
        for route in module.router.routes:
            assert isinstance(route, APIRoute)
            for method in sorted(route.methods - {"HEAD"}):
                yield method, route.path


def test_anonymous_gets_401_from_every_api_endpoint_and_the_login_page_from_every_page(client, web_app):
    checked = 0
    for method, path in _routes(web_app):
        if (method, path) in PUBLIC:
            continue
        r = client.request(method, _concrete(path), follow_redirects=False)
        if path.startswith("/api/"):
            assert r.status_code == 401, f"{method} {path} answered {r.status_code} without a session"
            assert r.headers["www-authenticate"] == "Bearer"
        else:
            assert r.status_code == 303 and r.headers["location"].startswith("/login"), f"{method} {path}"
        checked += 1
    assert checked >= 30


def test_a_bad_token_is_401_not_403(client):
    assert client.get("/api/status", headers={"Authorization": "Bearer cr_not-a-token"}).status_code == 401


ADMIN_API = [("GET", "/api/admin/users", None), ("POST", "/api/admin/users", {"username": "x", "password": "12345678",
                                                                            "role": "reviewer"}),
             ("PATCH", "/api/admin/users/alice", {"active": False}), ("GET", "/api/admin/projects", None),
             ("GET", "/api/admin/rubric", None), ("PUT", "/api/admin/rubric", {"body": {}}),
             ("POST", "/api/admin/import", None), ("GET", "/api/adjudication", None),
             ("POST", "/api/items/x1/adjudication", {"action": "exclude", "reason": "r"}),
             ("GET", "/api/admin/calibration", None), ("POST", "/api/admin/calibration", {"item_id": "x", "expect": "good"}),
             ("DELETE", "/api/admin/calibration/x1", None)]
ADMIN_PAGES = ["/admin", "/admin/users", "/admin/projects", "/admin/rubric", "/admin/import", "/adjudicate"]


def test_reviewer_is_403_on_admin_and_adjudication(client, seed):
    alice = seed.user("alice")
    for method, path, body in ADMIN_API:
        r = client.request(method, path, json=body, headers=alice["auth"])
        assert r.status_code == 403, f"{method} {path} -> {r.status_code}"
        assert "role" in r.json()["detail"]
    for path in ADMIN_PAGES:
        r = client.get(path, headers=alice["auth"])
        assert r.status_code == 403 and "Not allowed" in r.text, path


@pytest.mark.parametrize("role", ["admin", "adjudicator"])
def test_only_reviewers_take_items_from_the_queue(client, seed, role):
    boss = seed.user("boss", role=role)
    seed.item()
    assert client.get("/api/queue/next", headers=boss["auth"]).status_code == 403
    assert client.get("/review", headers=boss["auth"]).status_code == 403


def test_adjudicators_see_escalations_but_not_admin(client, seed):
    judge = seed.user("judge", role="adjudicator")
    seed.item(state="escalated")
    assert client.get("/api/adjudication", headers=judge["auth"]).json()["items"][0]["id"]
    assert client.get("/api/admin/users", headers=judge["auth"]).status_code == 403


def test_admin_can_use_every_admin_endpoint(client, seed):
    root = seed.user("root", role="admin")
    seed.user("alice")
    assert client.get("/api/admin/users", headers=root["auth"]).status_code == 200
    r = client.post("/api/admin/users", json={"username": "carol", "password": "long-enough-pw", "role": "reviewer",
                                              "specialties": ["cardiology"]}, headers=root["auth"])
    assert r.status_code == 201 and r.json()["specialties"] == ["cardiology"]
    assert client.patch("/api/admin/users/alice", json={"active": False}, headers=root["auth"]).json()["active"] is False
    assert client.get("/api/admin/projects", headers=root["auth"]).json()["current"] == "default"
    for path in ADMIN_PAGES:
        assert client.get(path, headers=root["auth"]).status_code == 200, path


def test_reviewer_is_403_on_another_reviewers_pending_review(client, seed):
    alice, bob = seed.user("alice"), seed.user("bob")
    seed.item()
    aid = client.get("/api/queue/next", headers=alice["auth"]).json()["assignment_id"]
    assert client.get(f"/api/assignments/{aid}", headers=bob["auth"]).status_code == 403
    assert client.put(f"/api/assignments/{aid}/draft", json={}, headers=bob["auth"]).status_code == 403
    assert client.post(f"/api/assignments/{aid}/review", json={"verdict": "accept", "scores": SCORES},
                       headers=bob["auth"]).status_code == 403
    assert client.post(f"/api/assignments/{aid}/release", headers=bob["auth"]).status_code == 403
    # and alice's assignment is untouched by the attempts
    assert client.post(f"/api/assignments/{aid}/review", json={"verdict": "accept", "scores": SCORES},
                       headers=alice["auth"]).status_code == 201


def test_ids_of_another_project_are_404(client, seed, engine):
    from web import factories

    alice = seed.user("alice")
    other = seed.other_project("cardio-bank")
    with engine.begin() as conn:
        foreign_item, _ = factories.make_item(conn, project_id=other["id"])
        mallory = factories.make_user(conn, username="mallory")
        foreign_token = factories.make_token(conn, user_id=mallory["id"], project_id=other["id"])
    foreign_aid = client.get("/api/queue/next", headers={"Authorization": f"Bearer {foreign_token}"}).json()["assignment_id"]
    assert client.get(f"/api/items/{foreign_item}", headers=alice["auth"]).status_code == 404
    assert client.get(f"/items/{foreign_item}", headers=alice["auth"]).status_code == 404
    assert client.get(f"/api/assignments/{foreign_aid}", headers=alice["auth"]).status_code == 404
    assert client.post(f"/api/assignments/{foreign_aid}/review", json={"verdict": "accept", "scores": SCORES},
                       headers=alice["auth"]).status_code == 404
    assert client.get("/api/queue/next", headers=alice["auth"]).status_code == 204  # nothing of 'default' to do


@pytest.mark.parametrize("body, field", [
    ({"verdict": "maybe", "scores": SCORES}, ["body", "verdict"]),
    ({"scores": SCORES}, ["body", "verdict"]),
    ({"verdict": "accept"}, ["body", "scores"]),
    ({"verdict": "accept", "scores": {**SCORES, "correctness": 7}}, ["body", "scores", "correctness"]),
    ({"verdict": "accept", "scores": {k: v for k, v in SCORES.items() if k != "reasoning"}}, ["body", "scores", "reasoning"]),
    ({"verdict": "accept", "scores": {**SCORES, "clinical_value": "4"}}, ["body", "scores", "clinical_value"]),
    ({"verdict": "accept", "scores": {**SCORES, "elegance": 3}}, ["body", "scores", "elegance"]),
    ({"verdict": "accept", "scores": SCORES, "comments": {"vibes": "x"}}, ["body", "comments", "vibes"]),
    ({"verdict": "edit", "scores": SCORES}, ["body", "edited_text"]),
    ({"verdict": "accept", "scores": SCORES, "edited_text": "A different text"}, ["body", "edited_text"]),
    ({"verdict": "accept", "scores": SCORES, "seconds_spent": -3}, ["body", "seconds_spent"]),
    ({"verdict": "accept", "scores": SCORES, "extra": 1}, ["body", "extra"]),
])
def test_malformed_review_is_422_naming_the_field_and_stores_nothing(client, seed, body, field):
    alice = seed.user("alice")
    item_id, _ = seed.item()
    aid = client.get("/api/queue/next", headers=alice["auth"]).json()["assignment_id"]
    r = client.post(f"/api/assignments/{aid}/review", json=body, headers=alice["auth"])
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == field
    assert client.get(f"/api/items/{item_id}", headers=alice["auth"]).json()["reviews"] == []
