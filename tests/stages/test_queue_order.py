"""The review queue's order, checked against a plain-Python statement of the rules on random states: the
reviewer's specialty first (without case), then items without one, then the rest; the oldest item first
within each (created_at, then id); only the current version of an in-review item, never one the reviewer
wrote, holds, gave back or reviewed, and only while reviews + live leases < k. The queue reads windows of
an index instead of sorting every waiting item (issue 16), so a test must show that it still picks what
the rules pick, also when the first eligible item lies beyond the first windows."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert

from clinreason.stages import review as review_stage
from clinreason.store import queue as queue_store
from clinreason.store.tables import assignments, items, rationales, reviews, users

T0 = datetime(2025, 5, 1, 9, 0, tzinfo=UTC)
NOW = T0 + timedelta(days=2)
SPECIALTIES = ["Cardiology", "cardiology", "neurology", "surgery", None, None]


def _state(engine, project_id: int, rng: random.Random, n_items: int, *, blocked_front: int = 0):
    """Random items (some with two versions, ties on created_at), reviewers, reviews and leases; the first
    `blocked_front` items (oldest, all in cardiology) are already reviewed by reviewer 1."""
    with engine.begin() as conn:
        for uid in (1, 2, 3, 4):
            conn.execute(insert(users).values(id=uid, username=f"u{uid}", role="reviewer", specialties=[],
                                              password_hash="x", active=True, created_at=T0))
        item_rows, versions, review_rows, lease_rows = [], [], [], []
        for n in range(n_items):
            iid = f"it{rng.randrange(10**6):06d}x{n}"
            front = n < blocked_front
            created = T0 + timedelta(minutes=n if front else blocked_front + rng.randrange(max(1, n_items // 3)))
            state = "in_review" if front or rng.random() < 0.8 else rng.choice(["accepted", "screening"])
            spec = "cardiology" if front else rng.choice(SPECIALTIES)
            item_rows.append(dict(id=iid, project_id=project_id, content_hash=iid, question="q", options=[],
                                  answer_labels=["A"], language="en", specialty=spec, meta={}, state=state,
                                  strikes=0, auto_retries=0, created_at=created, updated_at=created))
            n_versions = 1 if front else rng.choice([1, 1, 2])
            for v in range(1, n_versions + 1):
                author = "model:x" if v == 1 else rng.choice(["model:x", "user:u1", "user:u2"])
                rid = f"{iid}v{v}"
                versions.append(dict(id=rid, item_id=iid, version=v, origin="generated", author=author, steps=[],
                                     final_answer=["A"], text="t", params={}, parse_status="ok", created_at=created))
                reviewers = [1] if front else rng.sample([1, 2, 3, 4], rng.choice([0, 0, 1, 1, 2]))
                for who in reviewers:
                    kind = "review" if front else rng.choice(["review", "open", "expired_open", "released"])
                    aid = f"{rid}a{who}"
                    if kind == "review":
                        review_rows.append(dict(id=f"{rid}r{who}", rationale_id=rid, item_id=iid, reviewer_id=who,
                                                verdict="accept", scores={}, comments={}, rubric_version=1,
                                                created_at=created))
                    else:
                        expires = NOW - timedelta(minutes=1) if kind == "expired_open" else NOW + timedelta(minutes=30)
                        lease_rows.append(dict(id=aid, rationale_id=rid, item_id=iid, reviewer_id=who,
                                               status="released" if kind == "released" else "open",
                                               created_at=created, expires_at=expires))
        conn.execute(insert(items), item_rows)
        conn.execute(insert(rationales), versions)
        if review_rows:
            conn.execute(insert(reviews), review_rows)
        if lease_rows:
            conn.execute(insert(assignments), lease_rows)
    return item_rows, versions, review_rows, lease_rows


def _oracle(state, *, reviewer_id: int, author: str, specialties: tuple[str, ...], overlap: int, limit: int):
    item_rows, versions, review_rows, lease_rows = state
    wanted = {s.strip().lower() for s in specialties if s.strip()}
    current = {}
    for v in versions:
        if v["item_id"] not in current or v["version"] > current[v["item_id"]]["version"]:
            current[v["item_id"]] = v
    eligible = []
    for it in item_rows:
        if it["state"] != "in_review":
            continue
        v = current[it["id"]]
        rid = v["id"]
        done = sum(r["rationale_id"] == rid for r in review_rows)
        live = sum(a["rationale_id"] == rid and a["status"] == "open" and a["expires_at"] > NOW for a in lease_rows)
        held = any(a["rationale_id"] == rid and a["reviewer_id"] == reviewer_id for a in lease_rows)
        reviewed = any(r["rationale_id"] == rid and r["reviewer_id"] == reviewer_id for r in review_rows)
        if v["author"] == author or held or reviewed or done + live >= overlap:
            continue
        spec = it["specialty"]
        rank = 1 if spec is None else (0 if spec.lower() in wanted else 2)
        eligible.append((rank, it["created_at"], it["id"], rid))
    eligible.sort()
    if not eligible:
        return []
    best = eligible[0][0]
    return [rid for rank, _, _, rid in eligible if rank == best][:limit]


@pytest.mark.parametrize("seed", range(6))
def test_the_queue_picks_what_the_rules_pick(engine, project, seed):
    rng = random.Random(seed)
    state = _state(engine, project["id"], rng, n_items=rng.choice([40, 90, 150]))
    for reviewer_id, specialties in ((1, ("cardiology",)), (2, ("NEUROLOGY", " surgery ")), (3, ()), (4, ("dermatology",))):
        for overlap in (1, 2, 3):
            with engine.connect() as conn:
                got = queue_store.candidates(conn, project_id=project["id"], reviewer_id=reviewer_id,
                                              author=f"user:u{reviewer_id}", specialties=specialties, overlap=overlap,
                                              at=NOW, limit=500)
            expected = _oracle(state, reviewer_id=reviewer_id, author=f"user:u{reviewer_id}",
                               specialties=specialties, overlap=overlap, limit=500)
            assert got, "every state here leaves some version to review"
            assert got[0].id == expected[0], (reviewer_id, overlap)
            # the first window with a candidate: its candidates are the rules' best ones, in order
            assert [c.id for c in got] == expected[:len(got)]


def test_the_first_eligible_item_behind_hundreds_already_reviewed_is_found(engine, project):
    """300 oldest cardiology items the reviewer has already reviewed: the queue reads past several windows."""
    rng = random.Random(11)
    state = _state(engine, project["id"], rng, n_items=420, blocked_front=300)
    with engine.connect() as conn:
        got = queue_store.candidates(conn, project_id=project["id"], reviewer_id=1, author="user:u1",
                                      specialties=("cardiology",), overlap=2, at=NOW, limit=25)
    expected = _oracle(state, reviewer_id=1, author="user:u1", specialties=("cardiology",), overlap=2, limit=25)
    assert got[0].id == expected[0]
    assert not got[0].item_id.endswith(tuple(f"x{n}" for n in range(300)))


def test_a_lease_goes_to_the_rules_first_choice(engine, project):
    rng = random.Random(5)
    state = _state(engine, project["id"], rng, n_items=80)
    with engine.begin() as conn:  # a reviewer who holds no lease yet
        conn.execute(insert(users).values(id=5, username="u5", role="reviewer", specialties=["neurology"],
                                          password_hash="x", active=True, created_at=T0))
    expected = _oracle(state, reviewer_id=5, author="user:u5", specialties=("neurology",), overlap=2, limit=1)
    with engine.begin() as conn:
        lease = review_stage.assign_next_review(conn, project_id=project["id"],
                                                reviewer=review_stage.Reviewer(5, "u5", ("neurology",)),
                                                overlap=2, now=NOW)
    assert lease is not None and lease.rationale_id == expected[0]
