"""Calibration items: marked by an admin, served to reviewers like any other version (once each), never
decided by consensus; their results are reported per reviewer and anchor the reliability model."""

from __future__ import annotations

import pytest
from sqlalchemy import func, insert, select, update
from stages.test_consensus_stage import GOOD, POOR

from clinreason.stages import calibration
from clinreason.stages.consensus import _EVIDENCE_CACHE, fit_evidence
from clinreason.stages.review import Reviewer, assign_next_review, submit_review
from clinreason.store import common as store_common
from clinreason.store import projects as store_projects
from clinreason.store.tables import items, projects, rationales, reviews, users

pytestmark = pytest.mark.store


def _rate(engine, project_id, rate):
    with engine.begin() as conn:
        config = conn.execute(select(projects.c.config).where(projects.c.id == project_id)).scalar_one()
        conn.execute(update(projects).where(projects.c.id == project_id).values(
            config={**config, "review": {**config.get("review", {}), "calibration_rate": rate}}))


def _reviewer(conn, name):
    return Reviewer(conn.execute(select(users.c.id).where(users.c.username == name)).scalar_one(), name)


def _review_next(engine, project_id, name, verdict, scores, **extra):
    with engine.begin() as conn:
        who = _reviewer(conn, name)
        lease = assign_next_review(conn, project_id=project_id, reviewer=who)
        rubric = store_projects.latest_rubric(conn, project_id=project_id)
        body = {"verdict": verdict, "scores": scores, "comments": {"general": "checked"} if verdict != "accept" else {},
                **extra}
        submit_review(conn, project_id=project_id, assignment_id=lease.assignment_id, reviewer=who, body=body,
                      rubric_body=rubric)
        return lease


def test_a_calibration_item_is_served_once_to_each_reviewer_and_never_decided(engine, imported, in_review):
    pid = imported["id"]
    probe = in_review[0]
    with engine.begin() as conn:
        done = calibration.mark(conn, project_id=pid, item_id=probe, expect="bad", actor="user:root", note="seeded")
    assert done["version"] == 1
    _rate(engine, pid, 1.0)
    lease = _review_next(engine, pid, "ana", "accept", GOOD)  # ana falls for the seeded error
    assert lease.item_id == probe and not lease.resumed
    second = _review_next(engine, pid, "ben", "regenerate", POOR)
    assert second.item_id == probe
    # ana has seen it: her next lease is ordinary work, not the same probe again
    assert _review_next(engine, pid, "ana", "accept", GOOD).item_id != probe
    with engine.connect() as conn:
        state = conn.execute(select(items.c.state).where(items.c.id == probe)).scalar_one()
        report = calibration.results(conn, project_id=pid)
        listed = calibration.listing(conn, project_id=pid)
    assert state == "calibration"  # two reviews, no consensus: it stays a probe
    assert report["ana"] == {"reviews": 1, "correct": 0, "missed": [probe]}
    assert report["ben"] == {"reviews": 1, "correct": 1, "missed": []}
    assert listed[0]["reviews"] == 2 and listed[0]["note"] == "seeded"


def test_without_the_draw_reviewers_get_ordinary_work_and_probes_are_not_in_the_normal_queue(engine, imported,
                                                                                            in_review):
    pid = imported["id"]
    with engine.begin() as conn:
        calibration.mark(conn, project_id=pid, item_id=in_review[0], expect="good", actor="user:root")
    _rate(engine, pid, 0.0)
    seen = {_review_next(engine, pid, "ana", "accept", GOOD).item_id for _ in range(2)}
    assert in_review[0] not in seen


def test_an_edit_of_a_probe_is_a_review_not_a_new_version(engine, imported, in_review):
    pid = imported["id"]
    with engine.begin() as conn:
        calibration.mark(conn, project_id=pid, item_id=in_review[1], expect="bad", actor="user:root")
    _rate(engine, pid, 1.0)
    _review_next(engine, pid, "cy", "edit", POOR, edited_text="1. Corrected step.\nFinal answer: A")
    with engine.connect() as conn:
        versions = conn.execute(select(func.count()).select_from(rationales)
                                .where(rationales.c.item_id == in_review[1])).scalar_one()
        verdicts = conn.execute(select(reviews.c.verdict).where(reviews.c.item_id == in_review[1])).scalars().all()
    assert versions == 1 and verdicts == ["edit"]


def test_marking_refuses_final_items_unknown_versions_and_bad_expectations(engine, imported, in_review):
    pid = imported["id"]
    with engine.begin() as conn:
        conn.execute(update(items).where(items.c.id == in_review[2]).values(state="accepted"))
    with engine.begin() as conn, pytest.raises(calibration.CalibrationError, match="final"):
        calibration.mark(conn, project_id=pid, item_id=in_review[2], expect="good", actor="x")
    with engine.begin() as conn, pytest.raises(calibration.CalibrationError, match="no version 9"):
        calibration.mark(conn, project_id=pid, item_id=in_review[0], expect="good", actor="x", version=9)
    with engine.begin() as conn, pytest.raises(calibration.CalibrationError, match="good, bad"):
        calibration.mark(conn, project_id=pid, item_id=in_review[0], expect="maybe", actor="x")
    with engine.connect() as conn:
        assert conn.execute(select(items.c.state).where(items.c.id == in_review[0])).scalar_one() == "in_review"


def test_a_seeded_error_becomes_a_new_version_and_unmarking_returns_the_item_to_review(engine, imported, in_review):
    pid = imported["id"]
    with engine.begin() as conn:
        done = calibration.mark(conn, project_id=pid, item_id=in_review[0], expect="bad", actor="user:root",
                                seeded_text="1. The findings point to sepsis.\nFinal answer: E")
        text = conn.execute(select(rationales.c.text).where(rationales.c.id == done["rationale_id"])).scalar_one()
    assert done["version"] == 2 and "sepsis" in text
    with engine.begin() as conn:
        calibration.unmark(conn, project_id=pid, item_id=in_review[0], actor="user:root")
        assert conn.execute(select(items.c.state).where(items.c.id == in_review[0])).scalar_one() == "in_review"
        assert calibration.listing(conn, project_id=pid) == []


def test_calibration_truths_anchor_the_reliability_estimate(engine, imported, in_review):
    """Two reviewers disagree on every probe; only the known truths can say which of them is right."""
    pid = imported["id"]
    with engine.begin() as conn:
        for item_id, expect in zip(in_review, ("bad", "bad", "good"), strict=True):
            calibration.mark(conn, project_id=pid, item_id=item_id, expect=expect, actor="user:root")
        uid = {n: conn.execute(select(users.c.id).where(users.c.username == n)).scalar_one() for n in ("ana", "ben")}
        for item_id, expect in zip(in_review, ("bad", "bad", "good"), strict=True):
            rid = conn.execute(select(rationales.c.id).where(rationales.c.item_id == item_id)).scalar_one()
            for name, right in (("ana", False), ("ben", True)):
                said_pass = (expect == "good") == right
                conn.execute(insert(reviews).values(
                    id=f"{name}-{item_id}"[:40], rationale_id=rid, item_id=item_id, reviewer_id=uid[name],
                    verdict="accept" if said_pass else "regenerate", scores=GOOD if said_pass else POOR,
                    comments={}, seconds_spent=10.0, rubric_version=1, created_at=store_common.now()))
        _EVIDENCE_CACHE.clear()
        model = fit_evidence(conn, pid)
    assert model.reliability("ben") > 0.75 > model.reliability("ana")
