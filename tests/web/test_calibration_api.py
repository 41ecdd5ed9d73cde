"""Calibration items over HTTP: admins mark and list them; a reviewer is served one exactly like any
other version (same payload, state shown as in review, no telltale events) and never learns which it was;
the results reach the admin's listing and the dashboard's reviewer table."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from clinreason.store.tables import projects
from web.factories import SCORES

pytestmark = pytest.mark.real_consensus_lookup


def _rate(seed, rate):
    config = dict(seed.project["config"])
    config["review"] = {**config.get("review", {}), "calibration_rate": rate}
    with seed.engine.begin() as conn:
        conn.execute(update(projects).where(projects.c.id == seed.project["id"]).values(config=config))


def _mark(client, admin, item_id, **body):
    return client.post("/api/admin/calibration", json={"item_id": item_id, **body}, headers=admin["auth"])


def test_admin_marks_a_probe_and_a_reviewer_cannot_tell_it_from_ordinary_work(client, seed):
    root, alice = seed.user("root", role="admin"), seed.user("alice")
    probe, _ = seed.item()
    plain, _ = seed.item()
    r = _mark(client, root, probe, expect="bad", note="dose swapped")
    assert r.status_code == 201 and r.json()["version"] == 1
    _rate(seed, 1.0)
    got = client.get("/api/queue/next", headers=alice["auth"]).json()
    assert got["item"]["id"] == probe and got["item"]["state"] == "in_review"
    seen_by_reviewer = client.get(f"/api/items/{probe}", headers=alice["auth"]).json()
    assert seen_by_reviewer["state"] == "in_review"
    assert not any("calibration" in str(e) for e in seen_by_reviewer["events"])
    assert client.get(f"/api/items/{probe}", headers=root["auth"]).json()["state"] == "calibration"
    # same shape as an ordinary lease
    _rate(seed, 0.0)
    bob = seed.user("bob")
    ordinary = client.get("/api/queue/next", headers=bob["auth"]).json()
    assert ordinary["item"]["id"] == plain and ordinary.keys() == got.keys()
    assert ordinary["item"].keys() == got["item"].keys()
    # alice passes the seeded error: her miss shows to the admin, and only to the admin
    r = client.post(f"/api/assignments/{got['assignment_id']}/review", json={"verdict": "accept", "scores": SCORES},
                    headers=alice["auth"])
    assert r.status_code == 201
    listing = client.get("/api/admin/calibration", headers=root["auth"]).json()
    assert listing["items"][0]["item_id"] == probe and listing["items"][0]["reviews"] == 1
    assert listing["reviewers"]["alice"] == {"reviews": 1, "correct": 0, "missed": [probe]}
    assert client.get("/api/admin/calibration", headers=alice["auth"]).status_code == 403
    html = client.get("/dashboard", headers=root["auth"]).text
    assert "estimated reliability" in html and "0 of 1" in html


def test_marking_errors_name_the_problem(client, seed):
    root = seed.user("root", role="admin")
    item_id, _ = seed.item()
    done, _ = seed.item(state="accepted")
    assert _mark(client, root, "nope", expect="good").status_code == 404
    r = _mark(client, root, done, expect="good")
    assert r.status_code == 409 and "final" in r.json()["detail"]
    r = _mark(client, root, item_id, expect="good", version=7)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"][-1] == "version"
    assert "has no version 7 (it has 1 to 1)" in r.json()["detail"][0]["msg"]
    zh = client.post("/api/admin/calibration", json={"item_id": done, "expect": "good"},
                     headers={**root["auth"], "Accept-Language": "zh-CN"})
    assert zh.status_code == 409 and "最终状态" in zh.json()["detail"] and "final" not in zh.json()["detail"]
    zh = client.post("/api/admin/calibration", json={"item_id": item_id, "expect": "good", "version": 7},
                     headers={**root["auth"], "Accept-Language": "zh-CN"})
    assert "没有第 7 版" in zh.json()["detail"][0]["msg"]
    assert _mark(client, root, item_id, expect="perhaps").status_code == 422
    assert _mark(client, root, item_id, expect="bad", seeded_text="Step 1: wrong drug.\nFinal answer: B") \
        .status_code == 201
    assert client.delete(f"/api/admin/calibration/{item_id}", headers=root["auth"]).json()["state"] == "in_review"
    assert client.delete(f"/api/admin/calibration/{item_id}", headers=root["auth"]).status_code == 404


def test_the_item_page_lets_an_admin_mark_and_withdraw_and_shows_reviewers_nothing(client, seed):
    root, alice = seed.user("root", role="admin"), seed.user("alice")
    item_id, _ = seed.item()
    assert "Use as a calibration item" in client.get(f"/items/{item_id}", headers=root["auth"]).text
    assert "calibration" not in client.get(f"/items/{item_id}", headers=alice["auth"]).text
    r = client.post(f"/items/{item_id}/calibration", data={"version": "1", "expect": "bogus"}, headers=root["auth"])
    assert r.status_code == 422 and "expect" in r.text
    r = client.post(f"/items/{item_id}/calibration", data={"version": "1", "expect": "good", "note": "textbook"},
                    headers=root["auth"], follow_redirects=False)
    assert r.status_code == 303
    assert client.get(f"/api/items/{item_id}", headers=root["auth"]).json()["state"] == "calibration"
    page = client.get(f"/items/{item_id}", headers=alice["auth"]).text
    assert "calibration" not in page.lower() and "in_review" in page
    assert client.post(f"/items/{item_id}/calibration/withdraw", headers=alice["auth"]).status_code == 403
    r = client.post(f"/items/{item_id}/calibration/withdraw", headers=root["auth"], follow_redirects=False)
    assert r.status_code == 303
    assert client.get(f"/api/items/{item_id}", headers=root["auth"]).json()["state"] == "in_review"


def test_a_malformed_adjudication_form_is_422_not_500(client, seed):
    judge = seed.user("judge", role="adjudicator")
    item_id, _ = seed.item(state="escalated")
    r = client.post(f"/items/{item_id}/adjudicate", data={"action": "obliterate"}, headers=judge["auth"])
    assert r.status_code == 422 and "action" in r.text
