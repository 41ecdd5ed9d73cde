"""Reviews and assignments: leases on rationale versions, autosaved drafts, submitted reviews, the
extra reviewers consensus asked for, and the feedback it computed for a version it sent back.

Concurrency: on PostgreSQL the item row is claimed with `FOR NO KEY UPDATE SKIP LOCKED` and counts are
re-read under that lock (READ COMMITTED), so two reviewers never both take the last slot; a reviewer's
own user row is locked first, so a double click cannot lease two versions. On SQLite every transaction
begins IMMEDIATE, which already serialises writers; the locking clauses compile to nothing there."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, RowMapping, bindparam, delete, exists, func, insert, select, update

from clinreason.domain.consensus import Feedback, ReviewVote
from clinreason.domain.records import Assignment, RationaleVersion, Review
from clinreason.domain.steps import StepMark
from clinreason.store.common import aware, now, upsert
from clinreason.store.decisions import add_event
from clinreason.store.hot import Hot
from clinreason.store.queue import REVIEWABLE_STATE, Candidate
from clinreason.store.readmodels import review_from_row
from clinreason.store.tables import (
    assignments,
    checks,
    extra_reviewer_requests,
    feedback,
    items,
    rationales,
    review_drafts,
    reviews,
    users,
)


def _assignment(row: RowMapping) -> Assignment:
    return Assignment(id=row["id"], rationale_id=row["rationale_id"], item_id=row["item_id"],
                      reviewer_id=row["reviewer_id"], status=row["status"], created_at=aware(row["created_at"]),  # type: ignore[arg-type]
                      expires_at=aware(row["expires_at"]), submitted_at=aware(row["submitted_at"]),  # type: ignore[arg-type]
                      project_id=row.get("project_id"))


# --- the review path's statements, built once (bind parameters: SQLAlchemy's compiled cache does the rest)

_LOCK_REVIEWER = Hot(select(users.c.id).where(users.c.id == bindparam("reviewer_id")).with_for_update(key_share=True))
_USERNAME = Hot(select(users.c.username).where(users.c.id == bindparam("user_id")))
_EXPIRED = Hot((select(assignments.c.id, assignments.c.item_id)
            .where(assignments.c.status == "open", assignments.c.expires_at <= bindparam("at"),
                   exists().where(items.c.id == assignments.c.item_id, items.c.project_id == bindparam("project_id")))
            .with_for_update(skip_locked=True, key_share=True)))
_CURRENT_LEASE = Hot((select(assignments, rationales.c.version)
                  .join(items, items.c.id == assignments.c.item_id)
                  .join(rationales, rationales.c.id == assignments.c.rationale_id)
                  .where(items.c.project_id == bindparam("project_id"), assignments.c.reviewer_id == bindparam("reviewer_id"),
                         assignments.c.status == "open", assignments.c.expires_at > bindparam("at"))
                  .order_by(assignments.c.created_at).limit(1)))
_ADD_ASSIGNMENT = Hot(insert(assignments))
_LOCK_ASSIGNMENT = (select(assignments, items.c.project_id).join(items, items.c.id == assignments.c.item_id)
                    .where(assignments.c.id == bindparam("assignment_id")).with_for_update(of=assignments, key_share=True))
_LOCK_ASSIGNMENT_DRAFT = Hot(_LOCK_ASSIGNMENT.add_columns(
    exists().where(review_drafts.c.rationale_id == assignments.c.rationale_id,
                   review_drafts.c.reviewer_id == assignments.c.reviewer_id).label("has_draft")))
_SUBMITTED = Hot(update(assignments).where(assignments.c.id == bindparam("b_assignment_id")))
_EXTRA_WANTED = Hot((select(extra_reviewer_requests.c.rationale_id, func.count())
                 .join(items, items.c.id == extra_reviewer_requests.c.item_id)
                 .where(extra_reviewer_requests.c.project_id == bindparam("project_id"),
                        extra_reviewer_requests.c.closed_at.is_(None), items.c.state == REVIEWABLE_STATE)
                 .group_by(extra_reviewer_requests.c.rationale_id)
                 .order_by(func.min(extra_reviewer_requests.c.id))))
_EXTRA_OF = Hot(select(func.count()).select_from(extra_reviewer_requests) \
    .where(extra_reviewer_requests.c.rationale_id == bindparam("rationale_id")))
_LOAD_DRAFT = select(review_drafts).where(review_drafts.c.rationale_id == bindparam("rationale_id"),
                                          review_drafts.c.reviewer_id == bindparam("reviewer_id"))
_DELETE_DRAFT = delete(review_drafts).where(review_drafts.c.rationale_id == bindparam("rationale_id"),
                                            review_drafts.c.reviewer_id == bindparam("reviewer_id"))
_ADD_REVIEW = Hot(insert(reviews))
_REVIEWS_OF = Hot((select(reviews, users.c.username.label("reviewer")).join(users, users.c.id == reviews.c.reviewer_id)
               .where(reviews.c.rationale_id == bindparam("rationale_id")).order_by(reviews.c.created_at, reviews.c.id)))
_ADD_FEEDBACK = Hot(insert(feedback))
_FEEDBACK_FOR = Hot(select(feedback.c.body).where(feedback.c.rationale_id == bindparam("rationale_id"))
                    .order_by(feedback.c.id.desc()).limit(1))


# --- leases ---------------------------------------------------------------------------------------

def lock_reviewer(conn: Connection, *, reviewer_id: int) -> None:
    """Serialise one reviewer's own requests (NO KEY UPDATE leaves foreign-key checks on the row free)."""
    _LOCK_REVIEWER.run(conn, {"reviewer_id": reviewer_id})


def username(conn: Connection, *, user_id: int) -> str:
    return str(_USERNAME.run(conn, {"user_id": user_id}).scalar_one())


def expire_leases(conn: Connection, *, project_id: int, at: datetime) -> int:
    """Mark open leases past their expiry as `expired` (their slots are already free: every count
    ignores expired leases). Rows another transaction holds are skipped, never waited for."""
    rows = _EXPIRED.run(conn, {"at": at, "project_id": project_id}).all()
    if not rows:
        return 0
    conn.execute(update(assignments).where(assignments.c.id.in_([r.id for r in rows]),
                                           assignments.c.status == "open").values(status="expired"))
    for r in rows:
        add_event(conn, project_id=project_id, item_id=r.item_id, kind="assignment.expired", actor="system",
                  detail={"assignment_id": r.id})
    return len(rows)


def current_lease(conn: Connection, *, project_id: int, reviewer_id: int, at: datetime) -> tuple[Assignment, int] | None:
    """The reviewer's live lease in this project (oldest first) and the leased version's number."""
    row = _CURRENT_LEASE.run(conn, {"project_id": project_id, "reviewer_id": reviewer_id, "at": at}
                       ).mappings().first()
    if row is None:
        return None
    return _assignment(row), int(row["version"])


def add_assignment(conn: Connection, *, project_id: int, assignment_id: str, candidate: Candidate, reviewer_id: int,
                   actor: str, at: datetime, expires_at: datetime) -> None:
    _ADD_ASSIGNMENT.run(conn, {"id": assignment_id, "rationale_id": candidate.id, "item_id": candidate.item_id,
                                   "reviewer_id": reviewer_id, "status": "open", "created_at": at,
                                   "expires_at": expires_at})
    add_event(conn, project_id=project_id, item_id=candidate.item_id, kind="assignment.created", actor=actor,
              detail={"assignment_id": assignment_id, "rationale_id": candidate.id, "version": candidate.version})


def lock_assignment(conn: Connection, *, assignment_id: str) -> Assignment | None:
    """The assignment (with its item's project id), locked for this transaction."""
    row = conn.execute(_LOCK_ASSIGNMENT, {"assignment_id": assignment_id}).mappings().first()
    return _assignment(row) if row else None


def lock_assignment_with_draft(conn: Connection, *, assignment_id: str) -> tuple[Assignment, bool] | None:
    """`lock_assignment`, and whether its reviewer has a draft of its version (one statement)."""
    row = _LOCK_ASSIGNMENT_DRAFT.run(conn, {"assignment_id": assignment_id}).mappings().first()
    return (_assignment(row), bool(row["has_draft"])) if row else None


def get_assignment(conn: Connection, *, assignment_id: str) -> Assignment | None:
    row = conn.execute(
        select(assignments, items.c.project_id).join(items, items.c.id == assignments.c.item_id)
        .where(assignments.c.id == assignment_id)
    ).mappings().first()
    return _assignment(row) if row else None


def set_assignment_status(conn: Connection, *, assignment_id: str, status: str, at: datetime | None = None) -> None:
    values: dict[str, Any] = {"status": status}
    if status == "submitted":
        values["submitted_at"] = at or now()
    _SUBMITTED.run(conn, {"b_assignment_id": assignment_id, **values})


def taken_slots(conn: Connection, *, rationale_id: str, at: datetime, except_assignment: str | None = None) -> int:
    """Reviews of the version plus live leases on it (other than `except_assignment`)."""
    done = conn.execute(select(func.count()).select_from(reviews).where(reviews.c.rationale_id == rationale_id)).scalar_one()
    live = select(func.count()).select_from(assignments).where(
        assignments.c.rationale_id == rationale_id, assignments.c.status == "open", assignments.c.expires_at > at)
    if except_assignment is not None:
        live = live.where(assignments.c.id != except_assignment)
    return int(done) + int(conn.execute(live).scalar_one())


def served_count(conn: Connection, *, reviewer_id: int) -> int:
    """How many leases the reviewer has ever had."""
    return int(conn.execute(select(func.count()).select_from(assignments)
                            .where(assignments.c.reviewer_id == reviewer_id)).scalar_one())


def reviewer_totals(conn: Connection, *, project_id: int, reviewer_id: int) -> tuple[int, float]:
    """(reviews submitted, seconds spent on them) by one reviewer in one project."""
    count, seconds = conn.execute(
        select(func.count(), func.coalesce(func.sum(reviews.c.seconds_spent), 0.0))
        .select_from(reviews.join(items, items.c.id == reviews.c.item_id))
        .where(items.c.project_id == project_id, reviews.c.reviewer_id == reviewer_id)).one()
    return int(count), float(seconds)


def open_lease_count(conn: Connection, *, project_id: int, at: datetime) -> int:
    """Assignments of the project still open and not expired at `at`."""
    return int(conn.execute(
        select(func.count()).select_from(assignments.join(items, items.c.id == assignments.c.item_id))
        .where(items.c.project_id == project_id, assignments.c.status == "open",
               assignments.c.expires_at > at)).scalar_one())


# --- extra reviewers ------------------------------------------------------------------------------

def request_extra_reviewer(conn: Connection, *, project_id: int, item_id: str, rationale_id: str, actor: str,
                           reason: str) -> None:
    """One more reviewer for this version: state the queue reads, and an event for the audit trail."""
    conn.execute(insert(extra_reviewer_requests).values(project_id=project_id, item_id=item_id,
                                                        rationale_id=rationale_id, reason=reason, actor=actor,
                                                        created_at=now()))
    add_event(conn, project_id=project_id, item_id=item_id, kind="consensus.extra_reviewer", actor=actor,
              detail={"rationale_id": rationale_id, "reason": reason})


def extra_reviewers_wanted(conn: Connection, *, project_id: int) -> dict[str, int]:
    """Rationale id -> extra reviewers asked for, for versions of items still in review (read from the open
    requests' partial index: the requests of items that left review are closed, migration 0013)."""
    rows = _EXTRA_WANTED.run(conn, {"project_id": project_id}).all()
    return {rid: int(n) for rid, n in rows}


def extra_reviewers_of(conn: Connection, *, rationale_id: str) -> int:
    return int(_EXTRA_OF.run(conn, {"rationale_id": rationale_id}).scalar_one())


# --- drafts (autosave) ----------------------------------------------------------------------------

def save_draft(conn: Connection, *, assignment: Assignment, body: dict[str, Any], seconds_spent: float,
               at: datetime) -> None:
    values = {"assignment_id": assignment.id, "body": body, "seconds_spent": seconds_spent, "updated_at": at}
    upsert(conn, review_drafts, keys=["rationale_id", "reviewer_id"],
           values={"rationale_id": assignment.rationale_id, "reviewer_id": assignment.reviewer_id, **values},
           update=values)


def load_draft(conn: Connection, *, rationale_id: str, reviewer_id: int) -> dict[str, Any] | None:
    row = conn.execute(_LOAD_DRAFT, {"rationale_id": rationale_id, "reviewer_id": reviewer_id}).mappings().first()
    return dict(row) if row else None


def delete_draft(conn: Connection, *, rationale_id: str, reviewer_id: int) -> None:
    conn.execute(_DELETE_DRAFT, {"rationale_id": rationale_id, "reviewer_id": reviewer_id})


# --- reviews --------------------------------------------------------------------------------------

def add_review(conn: Connection, review: Review) -> None:
    _ADD_REVIEW.run(conn, {
        "id": review.id, "rationale_id": review.rationale_id, "item_id": review.item_id,
        "assignment_id": review.assignment_id, "reviewer_id": review.reviewer_id, "verdict": review.verdict,
        "scores": review.scores, "comments": review.comments, "edited_text": review.edited_text,
        "seconds_spent": review.seconds_spent, "rubric_version": review.rubric_version,
        "steps": review.steps or None, "created_at": review.created_at or now()})


def reviews_of(conn: Connection, *, rationale_id: str) -> list[Review]:
    """The version's reviews, oldest first, with the reviewer's username."""
    rows = _REVIEWS_OF.run(conn, {"rationale_id": rationale_id}).mappings()
    return [review_from_row(r) for r in rows]


def votes_for(conn: Connection, *, rationale_id: str) -> list[ReviewVote]:
    """The version's reviews as the consensus rules read them."""
    return [ReviewVote(reviewer=r.reviewer or "", verdict=r.verdict, scores=dict(r.scores),
                       comments={k: str(v) for k, v in r.comments.items() if v}, steps=tuple(r.marks))
            for r in reviews_of(conn, rationale_id=rationale_id)]


def marked_parent_steps(conn: Connection, *, versions: list[RationaleVersion]) -> dict[str, list[tuple[int, str]]]:
    """For each version with a parent: the parent's steps that a reviewer marked `error`, as (step number,
    the step's text in the parent), by the child version's id. Versions whose parent has no error marks
    are absent."""
    children = {(v.item_id, v.parent_version): v.id for v in versions if v.parent_version is not None}
    if not children:
        return {}
    rows = conn.execute(
        select(rationales.c.item_id, rationales.c.version, rationales.c.steps, reviews.c.steps.label("marks"))
        .join(reviews, reviews.c.rationale_id == rationales.c.id)
        .where(rationales.c.item_id.in_(sorted({item_id for item_id, _ in children})),
               reviews.c.steps.is_not(None))).all()
    found: dict[str, dict[int, str]] = {}
    for item_id, version, steps, marks in rows:
        child = children.get((item_id, version))
        if child is None:
            continue
        texts = list(steps or [])
        for mark in marks or []:
            n = int(mark["step"])
            if mark.get("verdict") == "error" and 0 < n <= len(texts):
                found.setdefault(child, {})[n] = texts[n - 1]
    return {child: sorted(marked.items()) for child, marked in found.items()}


def reviewed_versions(conn: Connection, *, item_id: str, reviewer_id: int) -> set[str]:
    return set(conn.execute(select(reviews.c.rationale_id).where(reviews.c.item_id == item_id,
                                                                 reviews.c.reviewer_id == reviewer_id)).scalars())


@dataclass(frozen=True, slots=True)
class ReviewTally:
    """How many reviews, the newest created_at among them, and how many of them carry exactly that instant."""

    count: int
    newest: datetime | None
    at_newest: int


_TALLY = (select(func.count(), func.max(reviews.c.created_at)).select_from(reviews)
          .join(items, items.c.id == reviews.c.item_id).where(items.c.project_id == bindparam("project_id")))
# the project is told by `project_id + 0`, an expression no index serves: so the planner reads the reviews from
# the created_at index and looks their items up, instead of walking every item of the project (which it
# otherwise prefers, knowing nothing of how few reviews are that recent)
_RECENT = (select(func.count(), func.max(reviews.c.created_at)).select_from(reviews)
           .join(items, items.c.id == reviews.c.item_id)
           .where(reviews.c.created_at >= bindparam("at"), items.c.project_id + 0 == bindparam("project_id")))
_COUNT_AT = (select(func.count()).select_from(reviews).join(items, items.c.id == reviews.c.item_id)
             .where(reviews.c.created_at == bindparam("at"), items.c.project_id + 0 == bindparam("project_id")))


def project_review_tally(conn: Connection, *, project_id: int, since: datetime | None = None) -> ReviewTally:
    """The project's reviews stamped at or after `since` (all of them when None), read from the index on
    reviews.created_at (migration 0012): a count kept up to date by the caller costs the reviews that arrived
    since, not all of them."""
    if since is None:
        count, newest = conn.execute(_TALLY, {"project_id": project_id}).one()
    else:
        count, newest = conn.execute(_RECENT, {"project_id": project_id, "at": since}).one()
    newest = aware(newest)
    at_newest = 0 if newest is None else int(conn.execute(_COUNT_AT, {"project_id": project_id, "at": newest})
                                             .scalar_one())
    return ReviewTally(count=int(count), newest=newest, at_newest=at_newest)


def project_votes(conn: Connection, *, project_id: int) -> list[tuple[str, ReviewVote]]:
    """(rationale id, vote) for every review of the project (the reliability fit's input)."""
    rows = conn.execute(select(reviews.c.rationale_id, users.c.username, reviews.c.verdict, reviews.c.scores)
                        .join(users, users.c.id == reviews.c.reviewer_id).join(items, items.c.id == reviews.c.item_id)
                        .where(items.c.project_id == project_id)).all()
    return [(r.rationale_id, ReviewVote(r.username, r.verdict, dict(r.scores or {}))) for r in rows]


def reviewed_check_rows(conn: Connection, *, project_id: int) -> dict[str, list[tuple[str, bool]]]:
    """Rationale id -> (check name, passed) of every reviewed version of the project."""
    reviewed = select(reviews.c.rationale_id).join(items, items.c.id == reviews.c.item_id) \
        .where(items.c.project_id == project_id)
    out: dict[str, list[tuple[str, bool]]] = {}
    for rid, name, passed in conn.execute(select(checks.c.rationale_id, checks.c.name, checks.c.passed)
                                          .where(checks.c.rationale_id.in_(reviewed))):
        out.setdefault(rid, []).append((name, bool(passed)))
    return out


# --- feedback -------------------------------------------------------------------------------------

def store_feedback(conn: Connection, *, item_id: str, rationale_id: str, merged: Feedback) -> None:
    """The merged feedback consensus computed for a version it sent back."""
    body = {"failing": merged.failing, "comments": [list(c) for c in merged.comments], "verdicts": merged.verdicts,
            "step_marks": [[who, mark.to_dict()] for who, mark in merged.step_marks]}
    _ADD_FEEDBACK.run(conn, {"item_id": item_id, "rationale_id": rationale_id, "body": body, "created_at": now()})


def feedback_for(conn: Connection, *, rationale_id: str) -> Feedback | None:
    """The latest feedback stored for this version, or None when consensus never sent it back."""
    row = _FEEDBACK_FOR.run(conn, {"rationale_id": rationale_id}).first()
    if row is None:
        return None
    body = row[0]
    return Feedback(failing={k: [int(s) for s in v] for k, v in body["failing"].items()},
                    comments=[(str(a), str(b), str(c)) for a, b, c in body["comments"]],
                    verdicts={k: int(v) for k, v in body["verdicts"].items()},
                    step_marks=[(str(who), StepMark.from_dict(m)) for who, m in body.get("step_marks") or []])


# --- a reviewer's own progress --------------------------------------------------------------------

def reviews_since(conn: Connection, *, project_id: int, reviewer_id: int, since: datetime) -> int:
    """Reviews the reviewer submitted in the project at or after `since` (UTC)."""
    return int(conn.execute(
        select(func.count()).select_from(reviews.join(items, items.c.id == reviews.c.item_id))
        .where(items.c.project_id == project_id, reviews.c.reviewer_id == reviewer_id,
               reviews.c.created_at >= since)).scalar_one())


def review_seconds(conn: Connection, *, project_id: int, reviewer_id: int) -> list[float]:
    """The seconds the reviewer spent on each of their reviews in the project (where recorded), ascending.
    The median is taken by the caller: SQLite has no percentile function, and PostgreSQL's is its own."""
    rows = conn.execute(
        select(reviews.c.seconds_spent).select_from(reviews.join(items, items.c.id == reviews.c.item_id))
        .where(items.c.project_id == project_id, reviews.c.reviewer_id == reviewer_id,
               reviews.c.seconds_spent.is_not(None))
        .order_by(reviews.c.seconds_spent)).scalars()
    return [float(s) for s in rows]
