"""The kept scan state (analytics/kept.py): brought up to date from what arrived since, it must count exactly
what a full scan of the same rows counts — after reviews on old versions, new versions, new items, new
reviewers, consensus, adjudications and exclusions, rows stamped a little before the watermark — and the
reports made from it must be the full scan's. A state of another rubric, a corrupt one, or one a concurrent
writer moved on is handled as a user would expect (rebuilt / not overwritten)."""

from __future__ import annotations

import base64
import json
import random
import zlib
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import insert, select, update

from analytics import legacy_scan, reviewdata
from clinreason.analytics import kept
from clinreason.analytics.agreement import agreement_report
from clinreason.analytics.scan import ReviewScan, scan_reviews
from clinreason.analytics.stats import project_stats
from clinreason.store import db as dbm
from clinreason.store import projects as store_projects
from clinreason.store import scanstate
from clinreason.store.tables import decisions, items, rationales, reviews, scan_states, users

DIMS = reviewdata.DIMS
REVIEWERS = [(f"rev{i}", "reviewer", [reviewdata.SPECIALTIES[i % 3]]) for i in range(6)] + [
    ("judge", "adjudicator", ["cardiology"])]
#: the rounds come after reviewdata's rows (T0 + one hour per item)
START = reviewdata.T0 + timedelta(days=30)


def data_clock(conn) -> datetime:
    """The reads' clock in these tests: a minute after the newest review or decision. The rows here are
    stamped on a timeline of their own (2025), so the machine's clock would put every one of them — the
    late-committed ones too — long before the watermark."""
    from sqlalchemy import func

    found = [conn.execute(select(func.max(t.c.created_at))).scalar_one() for t in (reviews, decisions)]
    newest = max((t.replace(tzinfo=UTC) if t.tzinfo is None else t for t in found if t is not None),
                 default=reviewdata.T0)
    return newest + timedelta(minutes=1)


@pytest.fixture(autouse=True)
def _reads_follow_the_data(monkeypatch):
    monkeypatch.setattr(kept, "read_clock", data_clock)


def assert_same_scan(mine: ReviewScan, full: ReviewScan) -> None:
    assert mine.dimensions == full.dimensions and mine.scale == full.scale
    assert mine.dim_patterns == full.dim_patterns
    assert mine.overall_patterns == full.overall_patterns
    assert mine.verdict_patterns == full.verdict_patterns
    assert mine.step_units == full.step_units
    assert np.array_equal(mine.histograms, full.histograms) and mine.ratings == full.ratings
    assert sorted(mine.pair_confusion) == sorted(full.pair_confusion)
    for pair, cube in full.pair_confusion.items():
        assert np.array_equal(mine.pair_confusion[pair], cube), pair
    assert mine.total_reviews == full.total_reviews
    assert mine.total_seconds == pytest.approx(full.total_seconds, abs=1e-9)
    assert list(mine.reviewers) == list(full.reviewers)
    for rid, t in full.reviewers.items():
        m = mine.reviewers[rid]
        for name in ("username", "role", "specialties", "pseudonym", "reviews", "accepts", "seconds",
                     "leniency", "leniency_units", "adjudicated", "adjudicator_agreed"):
            assert getattr(m, name) == getattr(t, name), (rid, name)
        assert m.leniency_sum == pytest.approx(t.leniency_sum, abs=1e-9)


def _unpack(text: str) -> dict:
    return json.loads(zlib.decompress(base64.b64decode(text)))


def _pack(body: dict) -> str:
    return base64.b64encode(zlib.compress(json.dumps(body).encode())).decode()


def _reports(conn, pid, scan):
    return (agreement_report(conn, project_id=pid, scan=scan, resamples=60, min_overlap=3),
            project_stats(conn, project_id=pid, scan=scan))


def _full(engine, pid):
    with engine.connect() as conn:
        full = scan_reviews(conn, project_id=pid, rubric_body=store_projects.latest_rubric(conn, project_id=pid))
        return full, _reports(conn, pid, full)


def _refresh(engine, pid) -> kept.Update:
    with dbm.read_snapshot(engine) as conn:
        found = kept.bring_up_to_date(conn, project_id=pid)
    if found.changed:
        assert kept.save(engine, project_id=pid, update=found)
    return found


def _score_row(rng: random.Random) -> dict[str, int]:
    scores = {d: rng.randint(1, 5) for d in DIMS}
    if rng.random() < 0.1:
        scores.pop(rng.choice(DIMS))
    return scores


def _marks(rng: random.Random):
    if rng.random() < 0.5:
        return None
    return [{"step": s, "verdict": rng.choice(["ok", "ok", "error"])} for s in (1, 2) if rng.random() < 0.7] or None


def add_round(engine, pid: int, rng: random.Random, r: int, *, late: timedelta | None = None) -> int:
    """Reviews on old versions, new versions of open items, new items, a new reviewer now and then, and
    decisions (consensus, adjudication, exclusion); created_at after START + r hours, or — with `late` —
    some rows stamped that long before the newest row already there (committed late, within LAG)."""
    t0 = START + timedelta(hours=r)
    added = 0
    with engine.begin() as conn:
        newest = data_clock(conn) - timedelta(minutes=1)  # the newest review or decision already there
        if r % 2 == 1:
            conn.execute(insert(users).values(username=f"new{r}", role="reviewer", specialties=["neurology"],
                                              password_hash="x", active=True, created_at=t0))
        reviewer_ids = [row[0] for row in conn.execute(select(users.c.id).where(users.c.role == "reviewer"))]
        judge = conn.execute(select(users.c.id).where(users.c.username == "judge")).scalar_one()
        decided = set(conn.execute(select(decisions.c.item_id)).scalars())
        versions = conn.execute(select(rationales.c.id, rationales.c.item_id, rationales.c.version)
                                .order_by(rationales.c.id)).all()
        done = {(a, b) for a, b in conn.execute(select(reviews.c.rationale_id, reviews.c.reviewer_id))}
        minute = 0

        def stamp() -> object:
            nonlocal minute
            minute += 1
            if late is not None and rng.random() < 0.4:
                return newest - late + timedelta(seconds=rng.randint(0, 30))
            return t0 + timedelta(minutes=minute)

        def review(rid: str, item_id: str, who: int, *, verdict: str | None = None) -> None:
            nonlocal added
            if (rid, who) in done:
                return
            done.add((rid, who))
            conn.execute(insert(reviews).values(
                id=f"{rid}-x{r}-{who}", rationale_id=rid, item_id=item_id, assignment_id=None, reviewer_id=who,
                verdict=verdict or rng.choice(["accept", "edit", "regenerate", "flag_question"]),
                scores=_score_row(rng), comments={}, edited_text=None,
                seconds_spent=rng.choice([None, round(rng.uniform(5, 500), 1), rng.uniform(1, 50)]),
                rubric_version=1, created_at=stamp(), steps=_marks(rng)))
            added += 1

        for rid, item_id, _ in rng.sample(versions, min(12, len(versions))):  # reviews on old versions
            review(rid, item_id, rng.choice(reviewer_ids))
        open_items = sorted({i for _, i, _ in versions} - decided)
        for item_id in rng.sample(open_items, min(4, len(open_items))):  # a new version of an open item
            last = max(v for _, i, v in versions if i == item_id)
            rid = f"{item_id}-v{last + 1}"
            conn.execute(insert(rationales).values(
                id=rid, item_id=item_id, version=last + 1, parent_version=last, origin="regenerated",
                author="model:x", steps=["a", "b"], final_answer=["A"], text="a\nb", model="x", params={},
                prompt_hash="ph", seed=0, raw_output=None, reasoning=None, prompt_tokens=1, completion_tokens=1,
                cost=0.0, latency_ms=None, parse_status="ok", parse_error=None, idempotency_key=None,
                fingerprint=None, created_at=t0))
            for who in rng.sample(reviewer_ids, 2):
                review(rid, item_id, who)
        for n in range(3):  # new items, each with a version and two or three reviews
            item_id = f"n{r}x{n}"
            conn.execute(insert(items).values(
                id=item_id, project_id=pid, content_hash=f"h{item_id}", question="Q?", options=[["A", "a"]],
                answer_labels=["A"], answer_text=None, language="en", specialty=rng.choice(reviewdata.SPECIALTIES),
                context=None, reference_explanation=None, meta={}, state="in_review", strikes=0, auto_retries=0,
                created_at=t0, updated_at=t0))
            rid = f"{item_id}-v1"
            conn.execute(insert(rationales).values(
                id=rid, item_id=item_id, version=1, parent_version=None, origin="generated", author="model:x",
                steps=["a", "b"], final_answer=["A"], text="a\nb", model="x", params={}, prompt_hash="ph", seed=0,
                raw_output=None, reasoning=None, prompt_tokens=1, completion_tokens=1, cost=0.0, latency_ms=None,
                parse_status="ok", parse_error=None, idempotency_key=None, fingerprint=None, created_at=t0))
            for who in rng.sample(reviewer_ids, rng.choice([2, 2, 3])):
                review(rid, item_id, who)
        versions = conn.execute(select(rationales.c.id, rationales.c.item_id)).all()
        open_items = sorted({i for _, i in versions} - decided)
        for item_id in rng.sample(open_items, min(5, len(open_items))):  # decisions
            mine = sorted(v for v, i in versions if i == item_id)
            kind = rng.choice(["consensus", "adjudication", "excluded"])
            chosen = None if kind == "excluded" else (mine[-1] if kind == "consensus" else rng.choice(mine))
            conn.execute(insert(decisions).values(item_id=item_id, kind=kind, rationale_id=chosen,
                                                  decided_by="consensus" if kind == "consensus" else f"user:{judge}",
                                                  reason="", created_at=stamp()))
            conn.execute(update(items).where(items.c.id == item_id)
                         .values(state="excluded" if kind == "excluded" else "accepted"))
            added += 1
    return added


@pytest.fixture
def seeded(engine, project):
    reviewdata.build(engine, project["id"], n_items=60, seed=5, reviewers=REVIEWERS, step_judge_rate=0.5)
    return engine, project["id"]


def test_the_kept_state_counts_what_a_full_scan_counts_round_after_round(seeded):
    engine, pid = seeded
    first = _refresh(engine, pid)
    assert first.rebuilt and first.changed
    full, reports = _full(engine, pid)
    assert_same_scan(first.scan, full)
    rng = random.Random(1616)
    for r in range(6):
        late = timedelta(minutes=4) if r in (2, 4) else None  # stamped before the watermark, within LAG
        assert add_round(engine, pid, rng, r, late=late) > 0
        found = _refresh(engine, pid)
        assert found.changed and not found.rebuilt, r  # brought up to date, not rebuilt
        full, reports = _full(engine, pid)
        assert_same_scan(found.scan, full)
        with engine.connect() as conn:
            assert _reports(conn, pid, found.scan) == reports
            # what the commands print without a scan passed: the stored state brought up to date
            assert agreement_report(conn, project_id=pid, resamples=60, min_overlap=3) == reports[0]
            assert project_stats(conn, project_id=pid) == reports[1]
    again = _refresh(engine, pid)
    assert not again.changed and not again.rebuilt
    assert_same_scan(again.scan, full)
    with engine.connect() as conn:  # and the counts are the previous algorithm's
        old = legacy_scan.scan_reviews(conn, project_id=pid, rubric_body=store_projects.latest_rubric(conn, project_id=pid))
    assert again.scan.dim_patterns == old.dim_patterns and again.scan.total_reviews == old.total_reviews
    assert sorted(again.scan.pair_confusion) == sorted(old.pair_confusion)


def test_a_state_kept_in_memory_only_is_not_written(seeded):
    engine, pid = seeded
    _refresh(engine, pid)
    with engine.connect() as conn:
        before = scanstate.load(conn, project_id=pid)
    add_round(engine, pid, random.Random(3), 0)
    with engine.connect() as conn:
        scan = kept.current_scan(conn, project_id=pid)
        assert scanstate.load(conn, project_id=pid) == before
    assert_same_scan(scan, _full(engine, pid)[0])


def test_the_cli_commands_keep_the_state_and_print_what_a_full_scan_gives(seeded, db_url):
    from typer.testing import CliRunner

    from clinreason.cli import app

    engine, pid = seeded
    runner = CliRunner()
    for r in range(2):
        out = runner.invoke(app, ["agreement", "--json", "--db", db_url, "--min-overlap", "3"])
        assert out.exit_code == 0, out.output
        full = _full(engine, pid)[0]
        with engine.connect() as conn:
            assert scanstate.load(conn, project_id=pid) is not None
            assert json.loads(out.output) == json.loads(json.dumps(agreement_report(
                conn, project_id=pid, min_overlap=3, scan=full)))
        out = runner.invoke(app, ["stats", "--json", "--db", db_url])
        assert out.exit_code == 0, out.output
        with engine.connect() as conn:
            assert json.loads(out.output) == json.loads(json.dumps(project_stats(conn, project_id=pid, scan=full)))
        add_round(engine, pid, random.Random(r), r)


def test_a_rubric_change_rebuilds_the_state(seeded):
    engine, pid = seeded
    _refresh(engine, pid)
    with engine.begin() as conn:
        body = store_projects.latest_rubric(conn, project_id=pid)
        body["dimensions"] = body["dimensions"][:3]
        store_projects.add_rubric_version(conn, project_id=pid, body=body, actor="admin")
    add_round(engine, pid, random.Random(4), 0)
    found = _refresh(engine, pid)
    assert found.rebuilt and len(found.scan.dimensions) == 3
    assert_same_scan(found.scan, _full(engine, pid)[0])
    add_round(engine, pid, random.Random(5), 1)
    found = _refresh(engine, pid)
    assert not found.rebuilt
    assert_same_scan(found.scan, _full(engine, pid)[0])


@pytest.mark.parametrize("damage", ["garbage", "not json", "missing key", "wrong counts", "negative", "format"])
def test_a_corrupt_state_is_rebuilt(seeded, damage):
    engine, pid = seeded
    _refresh(engine, pid)
    with engine.connect() as conn:
        stored = scanstate.load(conn, project_id=pid)
    assert stored is not None
    body = _unpack(stored.body)
    values: dict = {}
    if damage == "garbage":
        values["body"] = "garbage!"
    elif damage == "not json":
        values["body"] = base64.b64encode(zlib.compress(b"{not json")).decode()
    elif damage == "missing key":
        del body["pairs"]
        values["body"] = _pack(body)
    elif damage == "wrong counts":
        body["ratings"][0] += 1
        values["body"] = _pack(body)
    elif damage == "negative":
        body["reviewers"] = body["reviewers"][1:]  # a reviewer's tallies lost: subtracting goes below zero
        values["body"] = _pack(body)
    else:
        values["format"] = kept.FORMAT + 1
    with engine.begin() as conn:
        conn.execute(update(scan_states).where(scan_states.c.project_id == pid).values(**values))
    if damage == "negative":
        # make every version of the lost reviewer's affected: a new review on each
        with engine.begin() as conn:
            lost = body and _unpack(stored.body)["reviewers"][0][0]
            theirs = conn.execute(select(reviews.c.rationale_id, reviews.c.item_id)
                                  .where(reviews.c.reviewer_id == lost)).all()
            other = conn.execute(select(users.c.id).where(users.c.username == "judge")).scalar_one()
            for n, (rid, item_id) in enumerate(theirs):
                conn.execute(insert(reviews).values(
                    id=f"late{n}", rationale_id=rid, item_id=item_id, assignment_id=None, reviewer_id=other,
                    verdict="accept", scores={d: 3 for d in DIMS}, comments={}, edited_text=None, seconds_spent=1.0,
                    rubric_version=1, created_at=START + timedelta(minutes=n)))
    found = _refresh(engine, pid)
    assert found.rebuilt
    assert_same_scan(found.scan, _full(engine, pid)[0])
    assert not _refresh(engine, pid).changed  # the rebuilt state was stored


def test_a_state_a_concurrent_writer_moved_on_is_not_overwritten(seeded):
    engine, pid = seeded
    _refresh(engine, pid)
    add_round(engine, pid, random.Random(6), 0)
    with dbm.read_snapshot(engine) as conn:
        slow = kept.bring_up_to_date(conn, project_id=pid)
    add_round(engine, pid, random.Random(7), 1)
    fast = _refresh(engine, pid)  # another reader got there first and stored a newer state
    with engine.connect() as conn:
        stored = scanstate.load(conn, project_id=pid)
    assert stored is not None and not kept.save(engine, project_id=pid, update=slow)
    with engine.connect() as conn:
        assert scanstate.load(conn, project_id=pid) == stored
    assert_same_scan(fast.scan, _full(engine, pid)[0])
    # two first writers at once: the second insert does not replace the first
    with engine.begin() as conn:
        scanstate.discard(conn, project_id=pid)
    with dbm.read_snapshot(engine) as conn:
        a = kept.bring_up_to_date(conn, project_id=pid)
        b = kept.bring_up_to_date(conn, project_id=pid)
    assert a.base_revision is None and kept.save(engine, project_id=pid, update=a)
    assert not kept.save(engine, project_id=pid, update=b)


def test_the_body_round_trips_and_is_not_pickle(seeded):
    engine, pid = seeded
    found = _refresh(engine, pid)
    blob = kept.encode(found.state)
    assert _unpack(blob)["format"] == kept.FORMAT
    back = kept.decode(blob, dims=found.state.raw.dimensions, scale=found.state.raw.scale)
    with engine.connect() as conn:
        from clinreason.analytics.scan import with_reviewers

        assert_same_scan(with_reviewers(conn, pid, back.raw), found.scan)
    assert back.reviews == found.state.reviews and back.decisions == found.state.decisions


def test_an_empty_project_keeps_an_empty_state_then_fills_it(engine, project):
    pid = project["id"]
    with engine.begin() as conn:
        reviewdata.add_reviewers(conn, reviewdata.Built(), REVIEWERS)
    found = _refresh(engine, pid)
    # nothing counted, nothing recent; the watermark is the read's clock less LAG all the same
    assert found.scan.total_reviews == 0 and not found.state.reviews.recent
    with engine.connect() as conn:
        assert found.state.reviews.at == data_clock(conn) - kept.LAG
    add_round(engine, pid, random.Random(8), 0)
    found = _refresh(engine, pid)
    assert not found.rebuilt and found.scan.total_reviews > 0
    assert_same_scan(found.scan, _full(engine, pid)[0])


def test_the_ids_kept_are_those_of_the_last_lag_of_activity(seeded, monkeypatch):
    """Rows stamped within LAG of the read are kept by id; once the read's clock has moved LAG past them the
    stored marks drop them (one write), and a later read has nothing to fetch again."""
    engine, pid = seeded
    rng = random.Random(5)
    add_round(engine, pid, rng, 0)  # a round's rows stamped a minute apart: the newest few within LAG
    first = _refresh(engine, pid)
    assert first.state.reviews.recent  # the last minutes of the round, kept by id
    with engine.connect() as conn:
        later = data_clock(conn) + kept.LAG
    monkeypatch.setattr(kept, "read_clock", lambda conn: later)
    drained = _refresh(engine, pid)
    assert drained.changed and not drained.rebuilt
    assert not drained.state.reviews.recent and not drained.state.decisions.recent
    assert_same_scan(drained.scan, _full(engine, pid)[0])
    again = _refresh(engine, pid)
    assert not again.changed and not again.rebuilt
