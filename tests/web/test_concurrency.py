"""Many reviewers at once never over-assign: 50 threads racing for the same few slots, and 50 reviewers
submitting 400 reviews over real HTTP, on SQLite and on PostgreSQL. (The full 2,000-review run with
latency figures is benchmarks/bench_review.py.)"""

from __future__ import annotations

import importlib.util
import os
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select

from clinreason.stages import review as stage
from clinreason.store.tables import assignments
from web.factories import LiveServer

REPO = Path(__file__).resolve().parents[2]


def _bench():
    if "bench_review" not in sys.modules:
        spec = importlib.util.spec_from_file_location("bench_review", REPO / "benchmarks" / "bench_review.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["bench_review"] = module
        spec.loader.exec_module(module)
    return sys.modules["bench_review"]


def _race(engine, project_id, reviewers, *, overlap=2):
    """Every reviewer asks for the next item at the same instant; returns the leases handed out."""
    barrier = threading.Barrier(len(reviewers))
    leases, errors = [], []
    lock = threading.Lock()

    def ask(reviewer):
        barrier.wait()
        try:
            with engine.begin() as conn:
                lease = stage.assign_next_review(conn, project_id=project_id, reviewer=reviewer, overlap=overlap)
            with lock:
                leases.append((reviewer.id, lease))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(repr(exc))

    threads = [threading.Thread(target=ask, args=(r,)) for r in reviewers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    return leases


def test_fifty_reviewers_racing_for_twenty_slots_get_exactly_twenty(engine, seed):
    for _ in range(10):
        seed.item()
    reviewers = []
    for i in range(50):
        u = seed.user(f"r{i:02d}")
        reviewers.append(stage.Reviewer(u["id"], u["username"]))
    leases = _race(engine, seed.project["id"], reviewers)
    granted = [lease for _, lease in leases if lease is not None]
    assert len(granted) == 20, "10 versions x k=2: every slot taken, none twice"
    per_version = Counter(lease.rationale_id for lease in granted)
    assert set(per_version.values()) == {2} and len(per_version) == 10
    with engine.connect() as conn:
        rows = conn.execute(select(assignments.c.rationale_id, assignments.c.reviewer_id)).all()
    assert len(rows) == len(set(rows)) == 20


def test_a_double_click_never_leases_two_items(engine, seed):
    for _ in range(5):
        seed.item()
    u = seed.user("alice")
    me = stage.Reviewer(u["id"], "alice")
    leases = _race(engine, seed.project["id"], [me] * 8)
    assert len({lease.assignment_id for _, lease in leases}) == 1
    with engine.connect() as conn:
        assert len(conn.execute(select(assignments.c.id)).all()) == 1


@pytest.mark.soak
def test_fifty_reviewers_submit_reviews_over_http_without_breaking_an_invariant(engine, project, web_app):
    """400 submissions under `make test`, 5,000 under `make soak` (CLINREASON_SOAK=1), on each database."""
    bench = _bench()
    n = 5000 if os.environ.get("CLINREASON_SOAK") == "1" else 400
    items = n * 13 // 20
    tokens = bench.seed(engine, project_id=project["id"], items=items, reviewers=50)
    with LiveServer(web_app) as server:
        result = bench.run_reviewers(server.url, tokens, reviews=n, edit_share=0.05)
    inv = bench.check_invariants(engine, project_id=project["id"], overlap=2, returned_ids=result.review_ids)
    print("\n".join(bench.summary_lines(result, inv)))
    assert result.errors == []
    assert len(result.review_ids) == n and inv["reviews_stored"] == n
    assert inv["versions_over_k"] == 0
    assert inv["duplicate_reviewer_per_version"] == 0
    assert inv["self_reviews_of_own_edit"] == 0
    assert inv["lost_submissions"] == inv["unreported_rows"] == inv["duplicate_review_ids"] == 0
    assert inv["open_leases_left"] == 0
    assert result.edits > 0 and inv["versions"] > items, "edits made new versions that others then reviewed"
