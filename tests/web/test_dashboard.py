"""The admin dashboard shows the quality evidence; reviewers get progress only."""

from __future__ import annotations

import uuid

from sqlalchemy import insert, select

from clinreason.store.common import now
from clinreason.store.tables import rationales, reviews, users

SCORES = {"correctness": 5, "reasoning": 4, "sufficiency": 4, "terminology": 5, "clinical_value": 4}


def test_admin_sees_charts_and_the_reviewer_table(client, seed, engine):
    admin = seed.user("boss", role="admin")
    alice = seed.user("alice")
    seed.user("bob")
    item, rat = seed.item()
    with engine.begin() as conn:
        for name, score in (("alice", 5), ("bob", 4)):
            uid = conn.execute(select(users.c.id).where(users.c.username == name)).scalar_one()
            conn.execute(insert(reviews).values(
                id=uuid.uuid4().hex, rationale_id=rat, item_id=item, reviewer_id=uid, verdict="accept",
                scores={**SCORES, "correctness": score}, comments={}, seconds_spent=60.0, rubric_version=1,
                created_at=now()))
        assert conn.execute(select(rationales.c.id).where(rationales.c.id == rat)).scalar_one()
    page = client.get("/dashboard", headers=admin["auth"])
    assert page.status_code == 200
    html = page.text
    assert 'id="evidence"' in html and "<svg" in html and 'id="chart-agreement"' in html
    assert 'id="reviewer-table"' in html
    assert 'id="evidence"' not in client.get("/dashboard", headers=alice["auth"]).text
