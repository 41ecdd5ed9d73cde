"""Adjudication over the JSON API and the item page: final decisions, roles, races, bad bodies."""

from __future__ import annotations

import threading

from sqlalchemy import select

from clinreason.store.tables import decisions, items
from web import factories


def test_accept_write_and_exclude(client, seed, engine):
    judge = seed.user("judge", role="adjudicator")
    a, a_rat = seed.item(state="escalated", question="Q-accept")
    r = client.post(f"/api/items/{a}/adjudication", json={"action": "accept", "rationale_id": a_rat},
                    headers=judge["auth"])
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "accepted" and r.json()["decision"]["decided_by"] == "judge"
    b, _ = seed.item(state="escalated", question="Q-write")
    r = client.post(f"/api/items/{b}/adjudication",
                    json={"action": "write", "text": "1. The decisive finding.\n2. B-D fail it.\nFinal answer: A"},
                    headers=judge["auth"])
    assert r.status_code == 200 and r.json()["decision"]["rationale_id"] != a_rat
    c, _ = seed.item(state="escalated", question="Q-exclude")
    r = client.post(f"/api/items/{c}/adjudication", json={"action": "exclude"}, headers=judge["auth"])
    assert r.status_code == 422 and "reason" in r.text
    r = client.post(f"/api/items/{c}/adjudication", json={"action": "exclude", "reason": "wrong gold answer"},
                    headers=judge["auth"])
    assert r.json()["state"] == "excluded"
    with engine.connect() as conn:
        kinds = dict(conn.execute(select(decisions.c.item_id, decisions.c.kind)).all())
    assert kinds == {a: "adjudication", b: "adjudication", c: "excluded"}


def test_bad_requests_are_named(client, seed):
    judge = seed.user("judge", role="adjudicator")
    item, _ = seed.item(state="escalated")
    other, other_rat = seed.item(state="escalated", question="another")
    r = client.post(f"/api/items/{item}/adjudication", json={"action": "accept", "rationale_id": other_rat},
                    headers=judge["auth"])
    assert r.status_code == 422 and "rationale_id" in r.text
    r = client.post(f"/api/items/{item}/adjudication", json={"action": "shrug"}, headers=judge["auth"])
    assert r.status_code == 422 and "action" in r.text
    assert client.post("/api/items/nope/adjudication", json={"action": "exclude", "reason": "x"},
                       headers=judge["auth"]).status_code == 404
    fresh, _ = seed.item(state="in_review", question="not escalated")
    r = client.post(f"/api/items/{fresh}/adjudication", json={"action": "exclude", "reason": "x"},
                    headers=judge["auth"])
    assert r.status_code == 409 and "not escalated" in r.text


def test_two_adjudicators_at_once_one_wins_the_other_is_told(client, seed, engine):
    one, two = seed.user("one", role="adjudicator"), seed.user("two", role="adjudicator")
    item, rat = seed.item(state="escalated")
    results = {}
    barrier = threading.Barrier(2)

    def decide(who, body):
        barrier.wait()
        results[who["username"]] = client.post(f"/api/items/{item}/adjudication", json=body, headers=who["auth"])

    threads = [threading.Thread(target=decide, args=(one, {"action": "accept", "rationale_id": rat})),
               threading.Thread(target=decide, args=(two, {"action": "exclude", "reason": "flawed"}))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    codes = sorted(r.status_code for r in results.values())
    assert codes == [200, 409]
    loser = next(r for r in results.values() if r.status_code == 409)
    winner = next(name for name, r in results.items() if r.status_code == 200)
    assert f"already decided by {winner}" in loser.json()["detail"]
    with engine.connect() as conn:
        assert conn.execute(select(items.c.state).where(items.c.id == item)).scalar_one() in ("accepted", "excluded")
        assert len(conn.execute(select(decisions).where(decisions.c.item_id == item)).all()) == 1


def test_item_page_offers_the_forms_to_adjudicators_only(client, seed):
    judge = seed.user("judge", role="adjudicator")
    alice = seed.user("alice")
    item, _ = seed.item(state="escalated")
    page = client.get(f"/items/{item}", headers=judge["auth"]).text
    assert 'id="adjudication"' in page and "Exclude the item" in page
    assert 'id="adjudication"' not in client.get(f"/items/{item}", headers=alice["auth"]).text
    r = client.post(f"/items/{item}/adjudicate", data={"action": "exclude", "reason": "x"}, headers=alice["auth"])
    assert r.status_code == 403


def test_the_form_needs_its_csrf_token(client, seed):
    seed.user("judge", role="adjudicator")
    item, _ = seed.item(state="escalated")
    factories.browser_login(client, "judge")
    r = client.post(f"/items/{item}/adjudicate", data={"action": "exclude", "reason": "x"})
    assert r.status_code == 403
    csrf = factories.csrf_of(client.get(f"/items/{item}").text)
    r = client.post(f"/items/{item}/adjudicate", data={"action": "exclude", "reason": "x", "csrf_token": csrf},
                    follow_redirects=False)
    assert r.status_code == 303
