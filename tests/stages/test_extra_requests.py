"""Extra-reviewer requests stay open exactly while their item is in review (migration 0013): the lease reads
only the open ones, and an item that comes back to review (a withdrawn calibration item) is again offered
first to the extra reviewer consensus asked for."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from clinreason.stages import calibration
from clinreason.stages.review import Reviewer, assign_next_review
from clinreason.store import reviews as review_store
from clinreason.store.rationales import latest_version
from clinreason.store.tables import extra_reviewer_requests, users

pytestmark = pytest.mark.store


def _closed(conn, item_id):
    return conn.execute(select(extra_reviewer_requests.c.closed_at)
                        .where(extra_reviewer_requests.c.item_id == item_id)).scalars().all()


def test_a_request_closes_when_its_item_leaves_review_and_reopens_when_it_comes_back(engine, imported, in_review):
    pid, item_id = imported["id"], in_review[-1]  # the newest of the three: not first in queue order
    with engine.begin() as conn:
        rid = latest_version(conn, item_id=item_id).id
        review_store.request_extra_reviewer(conn, project_id=pid, item_id=item_id, rationale_id=rid,
                                            actor="consensus", reason="a split vote")
        assert _closed(conn, item_id) == [None]
        assert review_store.extra_reviewers_wanted(conn, project_id=pid) == {rid: 1}

    with engine.begin() as conn:
        calibration.mark(conn, project_id=pid, item_id=item_id, expect="good", actor="user:root")
        [closed] = _closed(conn, item_id)
        assert closed is not None  # out of review: no longer read by the lease
        assert review_store.extra_reviewers_wanted(conn, project_id=pid) == {}

    with engine.begin() as conn:
        calibration.unmark(conn, project_id=pid, item_id=item_id, actor="user:root")
        assert _closed(conn, item_id) == [None]
        assert review_store.extra_reviewers_wanted(conn, project_id=pid) == {rid: 1}
        ana = Reviewer(conn.execute(select(users.c.id).where(users.c.username == "ana")).scalar_one(), "ana")
        lease = assign_next_review(conn, project_id=pid, reviewer=ana)
        assert lease is not None and lease.rationale_id == rid  # the asked-for version still comes first


def test_a_request_is_not_reopened_by_a_move_within_review(engine, imported, in_review):
    from clinreason.store.items import transition_item

    pid, item_id = imported["id"], in_review[0]
    with engine.begin() as conn:
        rid = latest_version(conn, item_id=item_id).id
        review_store.request_extra_reviewer(conn, project_id=pid, item_id=item_id, rationale_id=rid,
                                            actor="consensus", reason="a split vote")
        transition_item(conn, item_id=item_id, expected="in_review", target="escalated", actor="test")
        [closed] = _closed(conn, item_id)
        transition_item(conn, item_id=item_id, expected="escalated", target="accepted", actor="test")
        assert _closed(conn, item_id) == [closed]  # closed once, when it left review
