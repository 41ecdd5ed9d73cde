"""The admin dashboard shows the reviewers' agreement on step marks next to the score agreement."""

from __future__ import annotations

import uuid

from sqlalchemy import insert, select

from clinreason.store.common import now
from clinreason.store.tables import reviews, users

SCORES = {"correctness": 5, "reasoning": 4, "sufficiency": 4, "terminology": 5, "clinical_value": 4}
ERROR = {"verdict": "error", "category": "factual_error", "severity": "major", "note": "wrong"}


def _review(engine, item, rat, username, steps) -> None:
    with engine.begin() as conn:
        uid = conn.execute(select(users.c.id).where(users.c.username == username)).scalar_one()
        conn.execute(insert(reviews).values(
            id=uuid.uuid4().hex, rationale_id=rat, item_id=item, reviewer_id=uid, verdict="regenerate",
            scores=SCORES, comments={}, seconds_spent=60.0, rubric_version=1, steps=steps, created_at=now()))


def test_admin_sees_step_agreement(client, seed, engine):
    admin = seed.user("boss", role="admin")
    seed.user("alice")
    seed.user("bob")
    item, rat = seed.item(rationale_text="Step one.\nStep two.\nStep three.\nFinal answer: A")
    # step 1: error, error; step 2: ok, error; step 3: ok, ok  ->  α = 1 − 5·2 / (2·3·3) = 0.444
    _review(engine, item, rat, "alice", [{"step": 1, **ERROR}, {"step": 2, "verdict": "ok"},
                                        {"step": 3, "verdict": "ok"}])
    _review(engine, item, rat, "bob", [{"step": 1, **ERROR}, {"step": 2, **ERROR}, {"step": 3, "verdict": "ok"}])
    html = client.get("/dashboard", headers=admin["auth"]).text
    start = html.index('id="step-agreement"')
    shown = " ".join(html[start:html.index("</p>", start)].split())
    assert 'data-units="3"' in shown
    assert "<strong>0.444</strong> on 3 step(s) judged by two or more reviewers" in shown
    assert "50.0 % of flagged steps were flagged by a second reviewer too" in shown


def test_without_marks_the_dashboard_says_so(client, seed, engine):
    admin = seed.user("boss", role="admin")
    seed.user("alice")
    item, rat = seed.item()
    _review(engine, item, rat, "alice", None)
    html = client.get("/dashboard", headers=admin["auth"]).text
    assert 'data-units="0"' in html and "no step has been marked by two reviewers yet" in html
