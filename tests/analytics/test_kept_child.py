"""The card's scan added up in a child process (analytics/kept_child.py) while the export reads in its own
snapshot. What the caller gets must be what it would have added up itself in that snapshot. That holds when
the child read first and reviews arrived after it (the state is advanced), and when the child read later
and saw a review the caller cannot see (no answer: the caller adds up itself). An export that used the
child writes the same bytes as one that did not."""

from __future__ import annotations

import base64
import filecmp
import json
import zlib
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import insert, select

from analytics import reviewdata
from clinreason.analytics import kept, kept_child
from clinreason.analytics.agreement import report_from_scan
from clinreason.stages.export import ExportOptions, run_exports
from clinreason.store import db as dbm
from clinreason.store import projects as store_projects
from clinreason.store.tables import rationales, reviews, users


@pytest.fixture
def seeded(engine, project):
    reviewdata.build(engine, project["id"], n_items=50, seed=3)
    with engine.connect() as conn:
        return engine, project["id"], store_projects.latest_rubric(conn, project_id=project["id"])


def _here(conn, pid, rubric):
    """What the caller adds up itself, in its snapshot."""
    update = kept.bring_up_to_date(conn, project_id=pid, rubric_body=rubric)
    return update, report_from_scan(update.scan)


def _counts(state: kept.KeptState) -> dict:
    """The state's body less its watermarks (each read takes its own clock)."""
    body = json.loads(zlib.decompress(base64.b64decode(kept.encode(state))))
    return {k: v for k, v in body.items() if k not in ("reviews_mark", "decisions_mark")}


def _add_review_now(engine) -> str:
    """A review committed now (stamped by the machine's clock, as the review stage stamps it) by a reviewer
    who has not yet reviewed that version."""
    with engine.begin() as conn:
        who = conn.execute(insert(users).values(username=f"late{datetime.now(UTC).timestamp()}", role="reviewer",
                                                specialties=[], password_hash="x", active=True,
                                                created_at=datetime.now(UTC))).inserted_primary_key[0]
        rid, item_id = conn.execute(select(rationales.c.id, rationales.c.item_id).order_by(rationales.c.id)).first()
        review_id = f"{rid}-late-{who}"
        conn.execute(insert(reviews).values(
            id=review_id, rationale_id=rid, item_id=item_id, assignment_id=None, reviewer_id=who, verdict="accept",
            scores={d: 2 for d in reviewdata.DIMS}, comments={}, edited_text=None, seconds_spent=40.0,
            rubric_version=1, created_at=datetime.now(UTC), steps=None))
    return review_id


def test_the_childs_answer_is_the_callers_own(seeded):
    engine, pid, rubric = seeded
    pending = kept_child.start(engine, project_id=pid, rubric_body=rubric)
    with dbm.read_snapshot(engine) as conn:
        got = pending.finish(conn, project_id=pid, rubric_body=rubric)
        update, report = _here(conn, pid, rubric)
    assert got is not None, "the child's scan was not taken although nothing arrived"
    assert got.report is not None
    assert got.report == json.loads(json.dumps(report)) == report  # and the report survives the pipe as it is
    assert report_from_scan(got.update.scan) == report
    assert _counts(got.update.state) == _counts(update.state)  # the same counts and intervals
    assert got.update.rebuilt and got.update.worth_saving  # a first scan: worth storing, as it is here


def test_reviews_after_the_childs_read_are_added_in_the_callers_snapshot(seeded):
    engine, pid, rubric = seeded
    pending = kept_child.start(engine, project_id=pid, rubric_body=rubric)
    pending.proc.wait(timeout=120)  # the child has read (and finished) before the review below commits
    before = None
    with dbm.read_snapshot(engine) as conn:
        before = _here(conn, pid, rubric)[0].scan.total_reviews
    _add_review_now(engine)
    with dbm.read_snapshot(engine) as conn:
        got = pending.finish(conn, project_id=pid, rubric_body=rubric)
        update, report = _here(conn, pid, rubric)
    assert got is not None
    assert got.update.scan.total_reviews == update.scan.total_reviews == before + 1
    assert got.report is None  # the child's report predates the review: worked out again by the caller
    assert report_from_scan(got.update.scan) == report


def test_a_child_that_saw_a_review_the_caller_cannot_see_gives_no_answer(seeded):
    engine, pid, rubric = seeded
    with dbm.read_snapshot(engine) as conn:
        counted = _here(conn, pid, rubric)[0].scan.total_reviews  # the caller's snapshot is taken here
        _add_review_now(engine)  # committed after it
        pending = kept_child.start(engine, project_id=pid, rubric_body=rubric)
        assert pending.finish(conn, project_id=pid, rubric_body=rubric) is None
        assert _here(conn, pid, rubric)[0].scan.total_reviews == counted  # what the caller adds up instead


def test_a_child_that_fails_or_read_another_rubric_gives_no_answer(seeded, tmp_path):
    engine, pid, rubric = seeded
    missing = dbm.make_engine(f"sqlite:///{tmp_path / 'none' / 'x.db'}")
    with dbm.read_snapshot(engine) as conn:
        assert kept_child.start(missing, project_id=pid, rubric_body=rubric).finish(
            conn, project_id=pid, rubric_body=rubric) is None
        other = json.loads(json.dumps(rubric))
        other["dimensions"] = other["dimensions"][:-1]
        assert kept_child.start(engine, project_id=pid, rubric_body=rubric).finish(
            conn, project_id=pid, rubric_body=other) is None


def test_a_child_is_started_only_for_a_full_scan_of_many_reviews(seeded):
    engine, pid, rubric = seeded
    with dbm.read_snapshot(engine) as conn:
        n = _here(conn, pid, rubric)[0].scan.total_reviews
        assert not kept_child.worth_a_child(conn, project_id=pid, rubric_body=rubric)  # MIN_REVIEWS: 20,000
        assert kept_child.worth_a_child(conn, project_id=pid, rubric_body=rubric, min_reviews=n)
        assert not kept_child.worth_a_child(conn, project_id=pid, rubric_body=rubric, min_reviews=n + 10_000)
    kept.refresh(engine, project_id=pid)  # a kept state stored: bringing it up to date is cheap, no child
    with dbm.read_snapshot(engine) as conn:
        assert not kept_child.worth_a_child(conn, project_id=pid, rubric_body=rubric, min_reviews=1)


def test_an_export_whose_card_was_added_up_by_a_child_has_the_same_bytes(seeded, tmp_path, monkeypatch):
    engine, pid, rubric = seeded
    from clinreason.store.tables import scan_states

    started = []
    real_start = kept_child.start

    def counting(*args, **kwargs):
        started.append(1)
        return real_start(*args, **kwargs)

    monkeypatch.setattr(kept_child, "start", counting)
    outs = []
    for name, least in (("child", 1), ("here", 10**9)):
        with engine.begin() as conn:
            conn.execute(scan_states.delete())
        monkeypatch.setattr(kept_child, "MIN_REVIEWS", least)
        out = tmp_path / name
        run_exports(engine, project="default", out=out, formats=("jsonl", "parquet"), opts=ExportOptions())
        outs.append(out)
    assert started == [1], "the first export did not start a child, or the second did"
    files = sorted(str(p.relative_to(outs[0])) for p in outs[0].rglob("*") if p.is_file())
    assert any(f.endswith("README.md") for f in files)
    match, mismatch, errors = filecmp.cmpfiles(outs[0], outs[1], files, shallow=False)
    assert not mismatch and not errors, (mismatch, errors)
    assert Path(outs[0] / "jsonl" / "README.md").read_text(encoding="utf-8").count("κ") > 0
