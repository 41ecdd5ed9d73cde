"""The loop after review: consensus, strikes, guided regeneration from reviews, escalation,
adjudication — on SQLite and PostgreSQL, with reviews written as the review stage writes them."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import insert, select, update
from stages.conftest import gold_answer_handler

from clinreason.domain.lifecycle import replay
from clinreason.llm.fake_backend import FakeBackend
from clinreason.stages import adjudicate
from clinreason.stages.consensus import on_review_submitted
from clinreason.stages.runner import REGENERATE, run_llm_stage
from clinreason.stages.screen import run_screening
from clinreason.store import common as store_common
from clinreason.store import decisions as store_decisions
from clinreason.store.tables import decisions, items, projects, rationales, reviews, users

GOOD = {"correctness": 5, "reasoning": 5, "sufficiency": 4, "terminology": 4, "clinical_value": 4}
POOR = {"correctness": 2, "reasoning": 2, "sufficiency": 3, "terminology": 4, "clinical_value": 3}
def _set_policy(engine, project_id, **review):
    with engine.begin() as conn:
        config = conn.execute(select(projects.c.config).where(projects.c.id == project_id)).scalar_one()
        conn.execute(update(projects).where(projects.c.id == project_id)
                     .values(config={**config, "review": {**config.get("review", {}), **review}}))


def _review(engine, project_id, item_id, who, verdict, scores, **comments):
    with engine.begin() as conn:
        rat = conn.execute(select(rationales).where(rationales.c.item_id == item_id)
                           .order_by(rationales.c.version.desc()).limit(1)).mappings().one()
        uid = conn.execute(select(users.c.id).where(users.c.username == who)).scalar_one()
        conn.execute(insert(reviews).values(id=uuid.uuid4().hex, rationale_id=rat["id"], item_id=item_id,
                                            reviewer_id=uid, verdict=verdict, scores=scores, comments=comments,
                                            seconds_spent=30.0, rubric_version=1, created_at=store_common.now()))
        on_review_submitted(conn, project_id=project_id, item_id=item_id, rationale_id=rat["id"], actor=f"user:{who}")
        return rat


def _state(engine, item_id):
    with engine.connect() as conn:
        return conn.execute(select(items.c.state, items.c.strikes).where(items.c.id == item_id)).one()


def _assert_replays(engine, item_id):
    with engine.connect() as conn:
        state = conn.execute(select(items.c.state).where(items.c.id == item_id)).scalar_one()
        assert replay(store_decisions.item_events(conn, item_id=item_id)).value == state


def test_two_accepts_reach_consensus(engine, imported, in_review):
    item = in_review[0]
    _review(engine, imported["id"], item, "ana", "accept", GOOD)
    assert _state(engine, item).state == "in_review"  # one of two
    rat = _review(engine, imported["id"], item, "ben", "accept", GOOD)
    assert _state(engine, item).state == "accepted"
    with engine.connect() as conn:
        d = conn.execute(select(decisions).where(decisions.c.item_id == item)).mappings().one()
    assert d["kind"] == "consensus" and d["rationale_id"] == rat["id"]
    _assert_replays(engine, item)


def test_regeneration_rounds_carry_feedback_and_escalate_exactly_at_max_strikes(engine, imported, in_review, pc):
    import asyncio

    _set_policy(engine, imported["id"], max_strikes=3)
    item = in_review[0]
    backend = FakeBackend(handler=gold_answer_handler)
    for round_no in (1, 2, 3):
        _review(engine, imported["id"], item, "ana", "regenerate", POOR, reasoning=f"round {round_no}: skips option C")
        _review(engine, imported["id"], item, "ben", "regenerate", POOR, correctness="wrong mechanism")
        state = _state(engine, item)
        assert state.strikes == round_no
        if round_no == 3:
            assert state.state == "escalated"
            break
        assert state.state == "regenerating"
        asyncio.run(run_llm_stage(engine, project=imported, pc=pc, backend=backend, kind=REGENERATE))
        prompt = backend.calls[-1].messages[-1]["content"]
        assert f"round {round_no}: skips option C" in prompt and "wrong mechanism" in prompt
        assert "Medical correctness: 2, 2 [needs 5]" in prompt and "Reasoning structure" in prompt
        assert "ana" not in prompt and "ben" not in prompt  # reviewers are anonymised to the model
        asyncio.run(run_screening(engine, project=imported, pc=pc))
        assert _state(engine, item).state == "in_review"
    with engine.connect() as conn:
        flag = conn.execute(select(items.c.flag_reason).where(items.c.id == item)).scalar_one()
        versions = conn.execute(select(rationales.c.version).where(rationales.c.item_id == item)).scalars().all()
    assert "3 failed rounds (max_strikes = 3)" in flag and sorted(versions) == [1, 2, 3]
    _assert_replays(engine, item)


def test_disagreement_goes_to_an_adjudicator_and_the_first_decision_wins(engine, imported, in_review):
    item = in_review[1]
    rat = _review(engine, imported["id"], item, "ana", "accept", GOOD)
    _review(engine, imported["id"], item, "ben", "regenerate", POOR)
    assert _state(engine, item).state == "escalated"
    with engine.connect() as conn:
        queue = adjudicate.adjudication_queue(conn, project_id=imported["id"])
    assert [q.id for q in queue] == [item] and "disagree" in queue[0].flag_reason
    with engine.begin() as conn:
        adjudicate.accept_version(conn, project_id=imported["id"], item_id=item, rationale_id=rat["id"],
                                  adjudicator="dr_adj")
    with pytest.raises(adjudicate.AdjudicationError, match="already decided by dr_adj"):
        with engine.begin() as conn:
            adjudicate.exclude(conn, project_id=imported["id"], item_id=item, reason="x", adjudicator="dr_two")
    with engine.connect() as conn:
        d = conn.execute(select(decisions).where(decisions.c.item_id == item)).mappings().one()
    assert (d["kind"], d["decided_by"], _state(engine, item).state) == ("adjudication", "dr_adj", "accepted")
    _assert_replays(engine, item)


def test_flagged_question_can_be_excluded_with_a_reason(engine, imported, in_review):
    item = in_review[2]
    _review(engine, imported["id"], item, "ana", "flag_question", POOR, general="gold answer looks wrong")
    assert _state(engine, item).state == "escalated"
    with pytest.raises(adjudicate.AdjudicationError, match="reason"):
        with engine.begin() as conn:
            adjudicate.exclude(conn, project_id=imported["id"], item_id=item, reason=" ", adjudicator="dr_adj")
    with engine.begin() as conn:
        adjudicate.exclude(conn, project_id=imported["id"], item_id=item, reason="wrong gold answer",
                           adjudicator="dr_adj")
    assert _state(engine, item).state == "excluded"
    _assert_replays(engine, item)


def test_adjudicator_can_write_the_final_text(engine, imported, in_review):
    item = in_review[0]
    _review(engine, imported["id"], item, "ana", "flag_question", POOR)
    with engine.begin() as conn:
        rid = adjudicate.write_final(conn, project_id=imported["id"], item_id=item, adjudicator="dr_adj",
                                     text="1. The decisive finding is X.\n2. Options B-E fail on it.\nFinal answer: A")
    with engine.connect() as conn:
        v = conn.execute(select(rationales).where(rationales.c.id == rid)).mappings().one()
        d = conn.execute(select(decisions).where(decisions.c.item_id == item)).mappings().one()
    assert v["origin"] == "adjudicated" and v["author"] == "user:dr_adj" and v["version"] == 2
    assert d["rationale_id"] == rid and _state(engine, item).state == "accepted"


def test_an_expert_edit_counts_as_a_failed_round(engine, imported, in_review):
    item = in_review[0]
    with engine.begin() as conn:
        old = conn.execute(select(rationales).where(rationales.c.item_id == item)).mappings().one()
        conn.execute(insert(rationales).values(
            id=uuid.uuid4().hex, item_id=item, version=2, parent_version=1, origin="edited", author="user:ana",
            steps=["fixed"], final_answer=old["final_answer"], text="1. fixed\nFinal answer: A", params={},
            parse_status="ok", prompt_tokens=0, completion_tokens=0, cost=0.0, created_at=store_common.now()))
        uid = conn.execute(select(users.c.id).where(users.c.username == "ana")).scalar_one()
        conn.execute(insert(reviews).values(id=uuid.uuid4().hex, rationale_id=old["id"], item_id=item, reviewer_id=uid,
                                            verdict="edit", scores=POOR, comments={}, edited_text="1. fixed",
                                            rubric_version=1, created_at=store_common.now()))
        on_review_submitted(conn, project_id=imported["id"], item_id=item, rationale_id=old["id"], actor="user:ana")
    assert tuple(_state(engine, item)) == ("in_review", 1)
