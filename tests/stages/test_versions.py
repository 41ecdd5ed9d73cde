"""Every rationale version is born in one place (store.rationales.add_version): an expert's edit and a
seeded calibration version get the same treatment as a model's draft — parsed steps of their own text,
and a fingerprint the near-duplicate check can see."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select

from clinreason.llm.fake_backend import FakeBackend
from clinreason.stages import calibration
from clinreason.stages.review import Reviewer, assign_next_review, submit_review
from clinreason.stages.runner import DRAFT, run_llm_stage
from clinreason.stages.screen import run_screening
from clinreason.store import projects
from clinreason.store import rationales as rationale_store
from clinreason.store.tables import checks, items, rationales, users

pytestmark = pytest.mark.store

EXPERT_TEXT = ("1. The sudden tearing chest pain radiating to the back with unequal arm pressures marks aortic "
               "dissection until proven otherwise.\n"
               "2. A widened mediastinum on the chest film supports it; thrombolysis would be lethal here.\n"
               "3. Urgent CT angiography confirms the tear and its extent before surgery is planned.\n"
               "Final answer: {gold}")
GOOD = {"correctness": 5, "reasoning": 5, "sufficiency": 5, "terminology": 5, "clinical_value": 5}


def _edit_latest(engine, project_id: int, text: str) -> tuple[str, str]:
    """Reviewer ana edits the version she is leased; returns (item id, new rationale id)."""
    with engine.begin() as conn:
        ana = Reviewer(conn.execute(select(users.c.id).where(users.c.username == "ana")).scalar_one(), "ana")
        lease = assign_next_review(conn, project_id=project_id, reviewer=ana)
        gold = conn.execute(select(items.c.answer_labels).where(items.c.id == lease.item_id)).scalar_one()
        done = submit_review(conn, project_id=project_id, assignment_id=lease.assignment_id, reviewer=ana,
                             body={"verdict": "edit", "scores": {**GOOD, "correctness": 2},
                                   "edited_text": text.format(gold=", ".join(gold))},
                             rubric_body=projects.latest_rubric(conn, project_id=project_id))
    return lease.item_id, done["new_rationale_id"]


def test_an_edit_is_fingerprinted_and_the_near_duplicate_check_sees_it(engine, imported, in_review, pc):
    pid = imported["id"]
    edited_item, new_id = _edit_latest(engine, pid, EXPERT_TEXT)
    with engine.connect() as conn:
        edited = rationale_store.get_version(conn, rationale_id=new_id)
    assert edited.origin == "edited" and edited.fingerprint is not None
    assert edited.steps[0].startswith("1. The sudden tearing chest pain")

    # another item is drafted with the expert's words: screening must call it a near-duplicate of the edit
    async def draft_copy():
        backend = FakeBackend(handler=lambda messages, params: EXPERT_TEXT.format(gold="A"))
        await run_llm_stage(engine, project=imported, pc=pc, backend=backend, kind=DRAFT, limit=1)
        await run_screening(engine, project=imported, pc=pc)

    asyncio.run(draft_copy())
    with engine.connect() as conn:
        rows = conn.execute(select(checks.c.passed, checks.c.detail, rationales.c.item_id)
                            .join(rationales, rationales.c.id == checks.c.rationale_id)
                            .where(checks.c.name == "near_duplicate", rationales.c.item_id != edited_item,
                                   rationales.c.text.like("%sudden tearing chest pain%"))).all()
    assert len(rows) == 1
    passed, detail, _copy = rows[0]
    assert not passed and f"item {edited_item}" in detail


def test_a_seeded_calibration_version_carries_its_own_parsed_steps(engine, imported, in_review):
    pid = imported["id"]
    probe = in_review[0]
    with engine.connect() as conn:
        base = rationale_store.latest_version(conn, item_id=probe)
    seeded = ("1. The seeded step that is wrong on purpose: beta-blockers first.\n"
              "2. A second seeded step.\nFinal answer: " + ", ".join(base.final_answer))
    with engine.begin() as conn:
        done = calibration.mark(conn, project_id=pid, item_id=probe, expect="bad", actor="user:root",
                                seeded_text=seeded)
    with engine.connect() as conn:
        version = rationale_store.get_version(conn, rationale_id=done["rationale_id"])
    assert version.version == base.version + 1 and version.parent_version == base.version
    assert version.text == seeded
    assert version.steps != base.steps
    assert version.steps[:2] == ["1. The seeded step that is wrong on purpose: beta-blockers first.",
                                 "2. A second seeded step."]
    assert version.final_answer == base.final_answer and version.fingerprint is not None


def test_an_edit_is_screened_like_any_version_and_nothing_blocks_it(engine, imported, in_review):
    """The edited version gets every automatic check, stored as hints (never blocking); the steps the
    editor marked as errors are checked by `marked_steps_revised` against the edit."""
    pid = imported["id"]
    with engine.begin() as conn:
        ana = Reviewer(conn.execute(select(users.c.id).where(users.c.username == "ana")).scalar_one(), "ana")
        lease = assign_next_review(conn, project_id=pid, reviewer=ana)
        reviewed = rationale_store.get_version(conn, rationale_id=lease.rationale_id)
        # an "edit" that keeps step 1 (marked as an error) word for word and drops the final answer line
        kept = reviewed.steps[0]
        done = submit_review(conn, project_id=pid, assignment_id=lease.assignment_id, reviewer=ana,
                             body={"verdict": "edit", "scores": {**GOOD, "correctness": 2},
                                   "edited_text": kept + "\nA short second step.",
                                   "steps": [{"step": 1, "verdict": "error", "category": "factual_error",
                                              "severity": "major", "note": "wrong"}]},
                             rubric_body=projects.latest_rubric(conn, project_id=pid))
    with engine.connect() as conn:
        found = {c.name: c for c in rationale_store.checks_of(conn, rationale_ids=[done["new_rationale_id"]])}
        state = conn.execute(select(items.c.state).where(items.c.id == lease.item_id)).scalar_one()
    assert {"parse", "length", "answer_leakage", "language", "marked_steps_revised"} <= set(found)
    assert not any(c.blocking for c in found.values())
    assert not found["marked_steps_revised"].passed and "step 1" in found["marked_steps_revised"].detail
    assert state == "in_review"  # straight back to the experts, whatever the checks say
