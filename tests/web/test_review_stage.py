"""The queue and the review as reviewers experience them: overlap, no repeats, no self-review of an edit,
specialty first, leases that expire, drafts that survive, immutable reviews, edits as new versions."""

from __future__ import annotations

import importlib.machinery
import importlib.util
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from clinreason.stages import review as stage
from clinreason.store import reviews as review_store
from clinreason.store.common import now
from clinreason.store.decisions import item_events
from clinreason.store.projects import latest_rubric
from clinreason.store.tables import events, rationales, reviews
from web.factories import SCORES


def _next(client, user):
    r = client.get("/api/queue/next", headers=user["auth"])
    assert r.status_code in (200, 204), r.text
    return r.json() if r.status_code == 200 else None


def _review(client, user, aid, verdict="accept", **extra):
    return client.post(f"/api/assignments/{aid}/review", json={"verdict": verdict, "scores": SCORES, **extra},
                       headers=user["auth"])


def test_queue_payload_has_the_contract_fields(client, seed):
    alice = seed.user("alice")
    item_id, rid = seed.item(specialty="cardiology")
    got = _next(client, alice)
    assert {"assignment_id", "item", "rationale", "checks"} <= got.keys()
    assert {"id", "question", "options", "answer"} <= got["item"].keys()
    assert {"id", "version", "text", "final_answer"} <= got["rationale"].keys()
    assert got["item"]["id"] == item_id and got["rationale"]["id"] == rid and got["rationale"]["version"] == 1
    assert got["item"]["options"] == {"A": "Aspirin", "B": "Beta blocker", "C": "Clopidogrel"}
    assert got["item"]["answer"] == ["A"]
    assert [c["name"] for c in got["checks"]] == ["answer_matches_gold", "judge:correctness"]


def test_overlap_k_reviewers_per_version_and_never_the_same_reviewer_twice(client, seed):
    alice, bob, carol = seed.user("alice"), seed.user("bob"), seed.user("carol")
    seed.item()
    a = _next(client, alice)
    assert _next(client, alice)["assignment_id"] == a["assignment_id"], "a held lease is handed back, not a new one"
    b = _next(client, bob)
    assert _next(client, carol) is None, "k=2 leases are out: nothing for a third reviewer"
    assert _review(client, alice, a["assignment_id"]).status_code == 201
    assert _next(client, alice) is None, "alice already reviewed the only version"
    assert _review(client, bob, b["assignment_id"]).status_code == 201
    assert _next(client, carol) is None


def test_overlap_comes_from_the_project_config(client, seed):
    seed.set_overlap(3)
    users = [seed.user(n) for n in ("alice", "bob", "carol", "dave")]
    seed.item()
    assert [bool(_next(client, u)) for u in users] == [True, True, True, False]


def test_specialty_match_is_offered_first(client, seed):
    neuro = seed.user("nora", specialties=["Neurology"])
    seed.item(specialty="Cardiology")
    seed.item(specialty=None)
    wanted, _ = seed.item(specialty="neurology")
    assert _next(client, neuro)["item"]["id"] == wanted


def test_only_items_in_review_are_offered(client, seed):
    alice = seed.user("alice")
    for state in ("imported", "screening", "accepted", "escalated", "regenerating"):
        seed.item(state=state)
    assert _next(client, alice) is None


def test_edit_makes_a_new_version_for_someone_else(client, seed, engine):
    alice, bob = seed.user("alice"), seed.user("bob")
    item_id, rid = seed.item()
    a = _next(client, alice)
    r = _review(client, alice, a["assignment_id"], verdict="edit",
                edited_text="Step 1: ACS is likely.\nStep 2: give aspirin first.\n\nFinal answer: C",
                comments={"reasoning": "second step was missing", "general": "tightened"})
    assert r.status_code == 201
    out = r.json()
    assert out["rationale_id"] == rid and out["new_version"] == 2
    with engine.connect() as conn:
        v2 = conn.execute(select(rationales).where(rationales.c.id == out["new_rationale_id"])).mappings().one()
        evs = item_events(conn, item_id=item_id)
    assert (v2["version"], v2["parent_version"], v2["origin"], v2["author"]) == (2, 1, "edited", "user:alice")
    assert v2["steps"] == ["Step 1: ACS is likely.", "Step 2: give aspirin first.", "Final answer: C"]
    assert v2["final_answer"] == ["C"]
    transition = [e for e in evs if e.kind == "item.transition"]
    assert transition[-1].before == transition[-1].after == {"state": "in_review"}
    assert _next(client, alice) is None, "the editor is never assigned the version they wrote"
    got = _next(client, bob)
    assert got["rationale"]["version"] == 2 and got["parent"]["version"] == 1
    assert got["rationale"]["author"] == "user:another-expert", "blind: bob does not learn who edited"


def test_edit_without_a_final_answer_line_keeps_the_reviewed_answer(client, seed, engine):
    alice = seed.user("alice")
    seed.item()
    a = _next(client, alice)
    out = _review(client, alice, a["assignment_id"], verdict="edit", edited_text="Aspirin first, always.").json()
    with engine.connect() as conn:
        final = conn.execute(select(rationales.c.final_answer).where(rationales.c.id == out["new_rationale_id"])).scalar()
    assert final == ["A"]


def test_reviews_are_immutable(client, seed, engine):
    alice = seed.user("alice")
    seed.item()
    aid = _next(client, alice)["assignment_id"]
    assert _review(client, alice, aid).status_code == 201
    again = _review(client, alice, aid, verdict="regenerate")
    assert again.status_code == 409 and "cannot be changed" in again.json()["detail"]
    assert client.put(f"/api/assignments/{aid}/draft", json={}, headers=alice["auth"]).status_code == 409
    with engine.connect() as conn:
        assert conn.execute(select(reviews.c.verdict)).scalars().all() == ["accept"]


def test_draft_autosave_survives_a_closed_tab_and_feeds_seconds_spent(client, seed, engine):
    alice = seed.user("alice")
    seed.item()
    aid = _next(client, alice)["assignment_id"]
    draft = {"verdict": None, "scores": {"correctness": 4}, "comments": {"reasoning": "half-written"},
             "edited_text": None, "seconds_spent": 95}
    assert client.put(f"/api/assignments/{aid}/draft", json=draft, headers=alice["auth"]).status_code == 204
    reopened = _next(client, alice)  # the tab was closed; "next" gives the same lease back with the draft
    assert reopened["assignment_id"] == aid
    assert reopened["draft"]["body"]["comments"] == {"reasoning": "half-written"}
    assert reopened["draft"]["seconds_spent"] == 95
    assert _review(client, alice, aid).status_code == 201
    with engine.connect() as conn:
        assert conn.execute(select(reviews.c.seconds_spent)).scalar_one() == 95
    assert client.get(f"/api/assignments/{aid}", headers=alice["auth"]).json()["draft"] is None


def test_released_item_goes_to_someone_else_and_not_back_to_the_skipper(client, seed):
    alice, bob = seed.user("alice"), seed.user("bob")
    seed.set_overlap(1)
    seed.item()
    aid = _next(client, alice)["assignment_id"]
    assert _next(client, bob) is None
    assert client.post(f"/api/assignments/{aid}/release", headers=alice["auth"]).status_code == 204
    assert _next(client, alice) is None
    assert _next(client, bob) is not None


def test_expired_lease_returns_to_the_pool(engine, seed):
    seed.set_overlap(1)
    alice, bob = seed.user("alice"), seed.user("bob")
    seed.item()
    t0 = now()
    ra, rb = stage.Reviewer(alice["id"], "alice"), stage.Reviewer(bob["id"], "bob")
    kwargs = {"project_id": seed.project["id"], "overlap": 1, "lease_minutes": 30}
    with engine.begin() as conn:
        first = stage.assign_next_review(conn, reviewer=ra, now=t0, **kwargs)
    with engine.begin() as conn:
        assert stage.assign_next_review(conn, reviewer=rb, now=t0 + timedelta(minutes=29), **kwargs) is None
    with engine.begin() as conn:
        second = stage.assign_next_review(conn, reviewer=rb, now=t0 + timedelta(minutes=31), **kwargs)
    assert second is not None and second.rationale_id == first.rationale_id
    with engine.connect() as conn:
        kinds = [e.kind for e in item_events(conn, item_id=first.item_id)]
    assert kinds == ["assignment.created", "assignment.expired", "assignment.created"]
    # alice comes back late: her slot was taken, so her submission is refused (her draft stays)
    with engine.begin() as conn, pytest.raises(stage.AssignmentClosed, match="draft is kept"):
        stage.submit_review(conn, project_id=seed.project["id"], assignment_id=first.assignment_id, reviewer=ra,
                            body={"verdict": "accept", "scores": SCORES}, rubric_body=latest_rubric(
                                conn, project_id=seed.project["id"]), overlap=1, now=t0 + timedelta(minutes=40))


def test_late_submission_is_kept_when_its_slot_is_still_free(engine, seed):
    alice = seed.user("alice")
    seed.item()
    t0 = now()
    ra = stage.Reviewer(alice["id"], "alice")
    with engine.begin() as conn:
        lease = stage.assign_next_review(conn, project_id=seed.project["id"], reviewer=ra, now=t0)
    with engine.begin() as conn:
        out = stage.submit_review(conn, project_id=seed.project["id"], assignment_id=lease.assignment_id, reviewer=ra,
                                  body={"verdict": "accept", "scores": SCORES},
                                  rubric_body=latest_rubric(conn, project_id=seed.project["id"]),
                                  now=t0 + timedelta(hours=2))
    assert out["review_id"]


@pytest.mark.real_consensus_lookup
def test_consensus_hook_runs_in_the_submit_transaction(client, seed, engine, monkeypatch):
    calls = []

    def on_review_submitted(conn, *, project_id, item_id, rationale_id, actor):
        calls.append((project_id, item_id, rationale_id, actor))
        n = conn.execute(select(func.count()).select_from(reviews).where(reviews.c.rationale_id == rationale_id))
        assert n.scalar_one() == 1, "the review is visible to consensus inside the same transaction"
        if item_id == "boom":
            raise RuntimeError("consensus failed")

    from clinreason.stages import consensus

    monkeypatch.setattr(consensus, "on_review_submitted", on_review_submitted)
    seed.set_overlap(1)
    alice = seed.user("alice")
    item_id, rid = seed.item()
    aid = _next(client, alice)["assignment_id"]
    assert _review(client, alice, aid).status_code == 201
    assert calls == [(seed.project["id"], item_id, rid, "user:alice")]
    # a failing consensus rolls the whole submission back: nothing half-stored
    bob = seed.user("bob")
    seed.item(item_id="boom")
    aid = _next(client, bob)["assignment_id"]
    with pytest.raises(RuntimeError):
        _review(client, bob, aid)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(reviews).where(reviews.c.item_id == "boom")).scalar() == 0
        assert conn.execute(select(func.count()).select_from(events).where(
            events.c.item_id == "boom", events.c.kind == "review.submitted")).scalar() == 0



def test_a_disagreement_consensus_sends_to_one_more_reviewer_gets_exactly_one(client, seed, engine):
    alice, bob, carol, dave = (seed.user(n) for n in ("alice", "bob", "carol", "dave"))
    item_id, rid = seed.item()
    seed.item(item_id="later")  # an ordinary item waiting behind it
    for user in (alice, bob):
        assert _next(client, user)["rationale"]["id"] == rid
    with engine.begin() as conn:  # what the consensus stage writes when the policy settles with one more reviewer
        review_store.request_extra_reviewer(conn, project_id=seed.project["id"], item_id=item_id, rationale_id=rid,
                                            actor="user:bob", reason="pending")
    assert _next(client, carol)["rationale"]["id"] == rid, "the tie-breaker comes first"
    assert _next(client, dave)["item"]["id"] == "later", "k + 1 and no more"


@pytest.mark.real_consensus_lookup
def test_with_the_consensus_stage_installed_k_passing_accepts_accept_the_item(client, seed):
    if importlib.util.find_spec("clinreason.stages.consensus") is None:
        pytest.skip("the consensus stage is not installed in this checkout")
    alice, bob, root = seed.user("alice"), seed.user("bob"), seed.user("root", role="admin")
    item_id, _ = seed.item()
    top = {k: 5 for k in SCORES}
    for user in (alice, bob):
        aid = _next(client, user)["assignment_id"]
        r = client.post(f"/api/assignments/{aid}/review", json={"verdict": "accept", "scores": top}, headers=user["auth"])
        assert r.status_code == 201
    assert client.get(f"/api/items/{item_id}", headers=root["auth"]).json()["state"] == "accepted"
    assert _next(client, seed.user("carol")) is None


def test_web_writes_take_the_process_write_turn(client, seed, monkeypatch):
    from clinreason.store import db

    taken = []
    real = db.write_coordinator
    monkeypatch.setattr(db, "write_coordinator", lambda engine: taken.append(engine.url) or real(engine))
    alice = seed.user("alice")
    seed.item()
    aid = _next(client, alice)["assignment_id"]
    assert taken, "leasing an item did not take the write turn"
    taken.clear()
    assert _review(client, alice, aid).status_code == 201
    assert taken, "submitting a review did not take the write turn"
