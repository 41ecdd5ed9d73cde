"""The review stage: which rationale version a reviewer gets next, and how a review is stored.

Plain functions over a Connection; the caller owns the transaction (one request = one transaction).

Assignment rules (`assign_next_review`):
  * an item is reviewable while its state is `in_review`; the version under review is its highest version;
  * a version gets at most `overlap` (k) reviewers: completed reviews + open, unexpired leases < k;
  * never the same reviewer twice on a version, never a reviewer on a version they authored by editing;
  * a version consensus asked one more reviewer for (`consensus.extra_reviewer`) first; then specialty
    match (then items without a specialty, then the rest); among those the oldest item first, so reviewers
    fill one item's k slots before opening the next instead of leaving everything half-reviewed;
  * a lease expires after `lease_minutes` and the slot returns to the pool.

Concurrency: on PostgreSQL the item row is claimed with `FOR NO KEY UPDATE SKIP LOCKED` and the count is
re-read under that lock (READ COMMITTED: a new statement sees every commit before it), so two reviewers
can never both take the last slot; the reviewer's own user row is locked first so that a double click
cannot lease two versions. On SQLite every transaction starts with BEGIN IMMEDIATE, which already
serialises writers; the same code runs there (the locking clauses compile to nothing).
"""

from __future__ import annotations

import importlib
import importlib.util
import random
import re
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, bindparam, case, delete, exists, func, insert, select, update

from clinreason.domain.lifecycle import ItemState
from clinreason.domain.records import Origin, Verdict
from clinreason.domain.rubric import RubricError, rubric_from_dict
from clinreason.stages import calibration
from clinreason.store import repository as repo
from clinreason.store.tables import assignments, events, items, rationales, review_drafts, reviews, users

REVIEWABLE_STATE = "in_review"
EXTRA_REVIEWER_EVENT = "consensus.extra_reviewer"
MAX_COMMENT_CHARS = 20_000
MAX_TEXT_CHARS = 200_000
GENERAL_COMMENT = "general"


class ReviewError(ValueError):
    """A submission the reviewer can fix; `field` names the offending field (e.g. `scores.correctness`)."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class AssignmentNotFound(LookupError):
    """No such assignment in this project."""


class NotYourAssignment(PermissionError):
    """The assignment belongs to another reviewer."""


class AssignmentClosed(RuntimeError):
    """The assignment can no longer take a review (submitted, given back, or its slot was taken)."""


@dataclass(frozen=True, slots=True)
class Reviewer:
    id: int
    username: str
    specialties: tuple[str, ...] = ()

    @property
    def actor(self) -> str:
        return f"user:{self.username}"


@dataclass(frozen=True, slots=True)
class Lease:
    assignment_id: str
    rationale_id: str
    item_id: str
    version: int
    expires_at: datetime
    resumed: bool  # the reviewer already held this lease (e.g. reopened the tab)


def new_id() -> str:
    return uuid.uuid4().hex


def aware(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; everything here is UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


# --- leases ---------------------------------------------------------------------------------------

def expire_leases(conn: Connection, *, project_id: int, now: datetime | None = None) -> int:
    """Mark open leases past their expiry as `expired` (their slots are already free: every count
    ignores expired leases). Rows another transaction holds are skipped, never waited for."""
    now = now or repo.now()
    rows = conn.execute(
        select(assignments.c.id, assignments.c.item_id)
        .where(assignments.c.status == "open", assignments.c.expires_at <= now,
               assignments.c.item_id.in_(select(items.c.id).where(items.c.project_id == project_id)))
        .with_for_update(skip_locked=True, key_share=True)
    ).all()
    if not rows:
        return 0
    conn.execute(update(assignments).where(assignments.c.id.in_([r.id for r in rows]),
                                           assignments.c.status == "open").values(status="expired"))
    for r in rows:
        repo.add_event(conn, project_id=project_id, item_id=r.item_id, kind="assignment.expired", actor="system",
                       detail={"assignment_id": r.id})
    return len(rows)


@lru_cache(maxsize=2)
def _candidate_statement(one: bool):
    """The candidate query, built once with bind parameters (a cached statement hits SQLAlchemy's compiled
    cache). It looks at one window of the project's in-review items, best first (specialty rank, then
    oldest), so its cost follows the window, not the queue; `one` re-checks a single rationale id."""
    now, me = bindparam("now"), bindparam("reviewer_id")
    later = rationales.alias("later")
    done = select(func.count()).select_from(reviews).where(reviews.c.rationale_id == rationales.c.id)
    live = select(func.count()).select_from(assignments).where(
        assignments.c.rationale_id == rationales.c.id, assignments.c.status == "open", assignments.c.expires_at > now)
    held = exists().where(assignments.c.rationale_id == rationales.c.id, assignments.c.reviewer_id == me,
                          assignments.c.status.in_(["open", "submitted", "released"]))
    reviewed = exists().where(reviews.c.rationale_id == rationales.c.id, reviews.c.reviewer_id == me)
    rank = case((items.c.specialty.is_(None), 1),
                (func.lower(items.c.specialty).in_(bindparam("wanted", expanding=True)), 0), else_=2)
    window = select(items.c.id, items.c.created_at, rank.label("rank")).where(
        items.c.project_id == bindparam("project_id"), items.c.state == REVIEWABLE_STATE)
    if one:
        window = window.where(items.c.id == select(rationales.c.item_id).where(
            rationales.c.id == bindparam("rationale_id")).scalar_subquery())
    else:
        window = window.order_by(rank, items.c.created_at, items.c.id).limit(bindparam("window")).offset(bindparam("skip"))
    win = window.subquery("win")
    query = (
        select(rationales.c.id, rationales.c.item_id, rationales.c.version)
        .select_from(win.join(rationales, rationales.c.item_id == win.c.id))
        .where(~exists().where(later.c.item_id == rationales.c.item_id, later.c.version > rationales.c.version),
               rationales.c.author != bindparam("author"), ~held, ~reviewed,
               done.scalar_subquery() + live.scalar_subquery() < bindparam("overlap"))
        .order_by(win.c.rank, win.c.created_at, win.c.id).limit(bindparam("limit"))
    )
    if one:
        query = query.where(rationales.c.id == bindparam("rationale_id"))
    return query


def _candidates(conn: Connection, *, project_id: int, reviewer: Reviewer, overlap: int, now: datetime,
                limit: int, rationale_id: str | None = None) -> list[Any]:
    """Versions this reviewer may take now, best first: the current version of an in-review item with
    fewer than `overlap` reviews + live leases, not written, held, given back or reviewed by them.
    Windows of growing size are scanned in order until one has a candidate."""
    params = {"now": now, "reviewer_id": reviewer.id, "author": reviewer.actor, "project_id": project_id,
              "overlap": overlap, "limit": limit,
              "wanted": [s.strip().lower() for s in reviewer.specialties if s.strip()]}
    if rationale_id is not None:
        return conn.execute(_candidate_statement(True), {**params, "rationale_id": rationale_id}).all()
    total = conn.execute(select(func.count()).select_from(items).where(
        items.c.project_id == project_id, items.c.state == REVIEWABLE_STATE)).scalar_one()
    skip, window = 0, 64
    while skip < total:
        found = conn.execute(_candidate_statement(False), {**params, "skip": skip, "window": window}).all()
        if found:
            return found
        skip, window = skip + window, window * 2
    return []


def extra_reviewers(conn: Connection, *, project_id: int) -> dict[str, int]:
    """Rationale id -> reviewers beyond k that consensus asked for (event `consensus.extra_reviewer`, written
    when the project settles disagreements with one more reviewer), for items still in review."""
    rows = conn.execute(
        select(events.c.detail).join(items, items.c.id == events.c.item_id)
        .where(events.c.project_id == project_id, events.c.kind == EXTRA_REVIEWER_EVENT,
               items.c.state == REVIEWABLE_STATE)
    ).scalars()
    wanted: dict[str, int] = {}
    for detail in rows:
        rid = (detail or {}).get("rationale_id")
        if rid:
            wanted[rid] = wanted.get(rid, 0) + 1
    return wanted


def current_lease(conn: Connection, *, project_id: int, reviewer_id: int, now: datetime | None = None) -> Lease | None:
    now = now or repo.now()
    row = conn.execute(
        select(assignments.c.id, assignments.c.rationale_id, assignments.c.item_id, assignments.c.expires_at,
               rationales.c.version)
        .join(items, items.c.id == assignments.c.item_id).join(rationales, rationales.c.id == assignments.c.rationale_id)
        .where(items.c.project_id == project_id, assignments.c.reviewer_id == reviewer_id,
               assignments.c.status == "open", assignments.c.expires_at > now)
        .order_by(assignments.c.created_at).limit(1)
    ).first()
    if row is None:
        return None
    return Lease(row.id, row.rationale_id, row.item_id, row.version, aware(row.expires_at), resumed=True)


def assign_next_review(conn: Connection, *, project_id: int, reviewer: Reviewer, overlap: int = 2,
                       lease_minutes: int = 30, now: datetime | None = None, max_rounds: int = 60) -> Lease | None:
    """Lease the next rationale version to `reviewer`, or return None when there is nothing for them.
    A reviewer holding a live lease gets that lease back (one item at a time)."""
    now = now or repo.now()
    # Serialise this reviewer's own requests; NO KEY UPDATE leaves foreign-key checks on the row free.
    conn.execute(select(users.c.id).where(users.c.id == reviewer.id).with_for_update(key_share=True))
    expire_leases(conn, project_id=project_id, now=now)
    held = current_lease(conn, project_id=project_id, reviewer_id=reviewer.id, now=now)
    if held is not None:
        return held
    probe = calibration.candidate(conn, project_id=project_id, reviewer_id=reviewer.id, author=reviewer.actor,
                                  rate=calibration.rate(conn, project_id))
    if probe is not None:  # a calibration version, leased exactly like any other
        return _lease(conn, project_id=project_id, reviewer=reviewer, cand=probe, now=now, lease_minutes=lease_minutes)
    for _round in range(max_rounds):
        # Versions consensus asked one more reviewer for (a disagreement to settle) come first.
        found = [(cand, overlap + extra) for rid, extra in extra_reviewers(conn, project_id=project_id).items()
                 for cand in _candidates(conn, project_id=project_id, reviewer=reviewer, overlap=overlap + extra,
                                         now=now, limit=1, rationale_id=rid)]
        found += [(cand, overlap) for cand in _candidates(conn, project_id=project_id, reviewer=reviewer,
                                                          overlap=overlap, now=now, limit=25)]
        if not found:
            return None
        for cand, slots in found:
            claimed = conn.execute(
                select(items.c.id).where(items.c.id == cand.item_id, items.c.state == REVIEWABLE_STATE)
                .with_for_update(skip_locked=True, key_share=True)
            ).first()
            if claimed is None:
                continue  # another reviewer is being assigned this item right now: try the next one
            # Re-check under the lock (PostgreSQL, READ COMMITTED: this statement sees every assignment
            # committed before it). On SQLite the whole transaction already holds the write lock.
            if conn.dialect.name != "sqlite" and not _candidates(
                    conn, project_id=project_id, reviewer=reviewer, overlap=slots, now=now, limit=1,
                    rationale_id=cand.id):
                continue
            return _lease(conn, project_id=project_id, reviewer=reviewer, cand=cand, now=now,
                          lease_minutes=lease_minutes)
        # Every candidate was locked by a concurrent assignment (PostgreSQL) or filled meanwhile: look again.
        time.sleep(random.uniform(0.002, 0.01))
    return None


def _lease(conn: Connection, *, project_id: int, reviewer: Reviewer, cand: Any, now: datetime,
           lease_minutes: int) -> Lease:
    lease = Lease(new_id(), cand.id, cand.item_id, cand.version, now + timedelta(minutes=lease_minutes), resumed=False)
    conn.execute(insert(assignments).values(
        id=lease.assignment_id, rationale_id=cand.id, item_id=cand.item_id, reviewer_id=reviewer.id,
        status="open", created_at=now, expires_at=lease.expires_at))
    repo.add_event(conn, project_id=project_id, item_id=cand.item_id, kind="assignment.created",
                   actor=reviewer.actor, detail={"assignment_id": lease.assignment_id,
                                                 "rationale_id": cand.id, "version": cand.version})
    return lease


def release_assignment(conn: Connection, *, project_id: int, assignment_id: str, reviewer_id: int) -> None:
    """The reviewer gives the lease back (skip); they will not be offered this version again."""
    row = _lock_assignment(conn, project_id=project_id, assignment_id=assignment_id, reviewer_id=reviewer_id)
    if row.status == "submitted":
        raise AssignmentClosed("this review was already submitted; reviews cannot be changed")
    conn.execute(update(assignments).where(assignments.c.id == assignment_id).values(status="released"))
    conn.execute(delete(review_drafts).where(review_drafts.c.rationale_id == row.rationale_id,
                                             review_drafts.c.reviewer_id == reviewer_id))
    repo.add_event(conn, project_id=project_id, item_id=row.item_id, kind="assignment.released",
                   actor=f"user:{_username(conn, reviewer_id)}", detail={"assignment_id": assignment_id})


def _username(conn: Connection, user_id: int) -> str:
    return conn.execute(select(users.c.username).where(users.c.id == user_id)).scalar_one()


def _lock_assignment(conn: Connection, *, project_id: int, assignment_id: str, reviewer_id: int | None) -> Any:
    row = conn.execute(
        select(assignments, items.c.project_id).join(items, items.c.id == assignments.c.item_id)
        .where(assignments.c.id == assignment_id).with_for_update(of=assignments, key_share=True)
    ).first()
    if row is None or row.project_id != project_id:
        raise AssignmentNotFound(f"assignment {assignment_id} does not exist in this project")
    if reviewer_id is not None and row.reviewer_id != reviewer_id:
        raise NotYourAssignment(f"assignment {assignment_id} belongs to another reviewer")
    return row


def get_assignment(conn: Connection, *, project_id: int, assignment_id: str, reviewer_id: int | None) -> dict[str, Any]:
    row = conn.execute(
        select(assignments, items.c.project_id).join(items, items.c.id == assignments.c.item_id)
        .where(assignments.c.id == assignment_id)
    ).mappings().first()
    if row is None or row["project_id"] != project_id:
        raise AssignmentNotFound(f"assignment {assignment_id} does not exist in this project")
    if reviewer_id is not None and row["reviewer_id"] != reviewer_id:
        raise NotYourAssignment(f"assignment {assignment_id} belongs to another reviewer")
    out = dict(row)
    for key in ("created_at", "expires_at", "submitted_at"):
        out[key] = aware(out[key])
    return out


# --- drafts (autosave) ----------------------------------------------------------------------------

def save_draft(conn: Connection, *, project_id: int, assignment_id: str, reviewer_id: int, body: dict[str, Any],
               seconds_spent: float | None, now: datetime | None = None) -> None:
    """Keep what the reviewer has typed so far; a closed tab or an expired lease loses nothing."""
    now = now or repo.now()
    row = _lock_assignment(conn, project_id=project_id, assignment_id=assignment_id, reviewer_id=reviewer_id)
    if row.status in ("submitted", "released"):
        raise AssignmentClosed(f"assignment {assignment_id} is {row.status}: there is no draft to save")
    values = {"assignment_id": assignment_id, "body": body, "seconds_spent": max(0.0, float(seconds_spent or 0.0)),
              "updated_at": now}
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as upsert
    else:
        from sqlalchemy.dialects.sqlite import insert as upsert
    stmt = upsert(review_drafts).values(rationale_id=row.rationale_id, reviewer_id=reviewer_id, **values)
    conn.execute(stmt.on_conflict_do_update(index_elements=["rationale_id", "reviewer_id"], set_=values))


def load_draft(conn: Connection, *, rationale_id: str, reviewer_id: int) -> dict[str, Any] | None:
    row = conn.execute(select(review_drafts).where(review_drafts.c.rationale_id == rationale_id,
                                                   review_drafts.c.reviewer_id == reviewer_id)).mappings().first()
    return dict(row) if row else None


# --- submitting -----------------------------------------------------------------------------------

_FINAL = re.compile(r"^\W*(?:final answer|answer|最终答案|答案)\W*[:：]\s*(?P<value>.+?)\s*$", re.IGNORECASE)


def parse_edited_text(text: str, *, option_labels: list[str], fallback: list[str]) -> tuple[list[str], list[str]]:
    """Steps = the non-empty lines; final answer = the labels on a closing 'Final answer: X' line
    (or its text for open questions), else the reviewed version's final answer."""
    steps = [line.strip() for line in text.splitlines() if line.strip()]
    if steps:
        match = _FINAL.match(steps[-1])
        if match:
            value = match.group("value").strip("*_ .")
            if option_labels:
                tokens = re.findall(r"[A-Za-z0-9]+", value)
                labels = sorted({t.upper() for t in tokens if t.upper() in {lb.upper() for lb in option_labels}})
                if labels:
                    return steps, labels
            elif value:
                return steps, [value]
    return steps, list(fallback)


def validate_review(body: dict[str, Any], *, rubric_body: dict[str, Any], original_text: str) -> dict[str, Any]:
    """Check a submission against the project's current rubric; raise ReviewError naming the field."""
    rubric = rubric_from_dict(rubric_body)
    verdict = body.get("verdict")
    if verdict not in {v.value for v in Verdict}:
        raise ReviewError("verdict", f"expected one of {', '.join(v.value for v in Verdict)}, got {verdict!r}")
    scores = body.get("scores")
    if not isinstance(scores, dict):
        raise ReviewError("scores", "expected an object mapping every rubric dimension to a score")
    try:
        clean_scores = rubric.validate_scores(scores)
    except RubricError as exc:
        field, _, message = str(exc).partition(": ")
        raise ReviewError(field, message) from None
    comments = body.get("comments") or {}
    if not isinstance(comments, dict):
        raise ReviewError("comments", "expected an object mapping dimension names to text")
    clean_comments: dict[str, str] = {}
    for key, text in comments.items():
        if key not in rubric.names and key != GENERAL_COMMENT:
            raise ReviewError(f"comments.{key}", f"not a rubric dimension (expected one of {', '.join(rubric.names)} "
                                                 f"or '{GENERAL_COMMENT}')")
        if text is None:
            continue
        if not isinstance(text, str):
            raise ReviewError(f"comments.{key}", "expected text")
        if len(text) > MAX_COMMENT_CHARS:
            raise ReviewError(f"comments.{key}", f"longer than {MAX_COMMENT_CHARS} characters")
        if text.strip():
            clean_comments[key] = text.strip()
    edited = body.get("edited_text")
    if edited is not None and not isinstance(edited, str):
        raise ReviewError("edited_text", "expected text")
    edited = (edited or "").replace("\r\n", "\n")
    if verdict == Verdict.EDIT:
        if not edited.strip():
            raise ReviewError("edited_text", "required with verdict 'edit': the full corrected rationale")
        if edited.strip() == original_text.replace("\r\n", "\n").strip():
            raise ReviewError("edited_text", "identical to the version under review: change it, or choose another verdict")
        if len(edited) > MAX_TEXT_CHARS:
            raise ReviewError("edited_text", f"longer than {MAX_TEXT_CHARS} characters")
    elif edited.strip() and edited.strip() != original_text.replace("\r\n", "\n").strip():
        raise ReviewError("edited_text", f"an edited text was given with verdict '{verdict}': submit it with verdict "
                                         "'edit', or leave it out")
    seconds = body.get("seconds_spent")
    if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0):
        raise ReviewError("seconds_spent", "expected a number of seconds >= 0")
    return {"verdict": verdict, "scores": clean_scores, "comments": clean_comments,
            "edited_text": edited if verdict == Verdict.EDIT else None,
            "seconds_spent": float(seconds) if seconds is not None else None,
            "rubric_version": rubric.version}


def _consensus_hook():
    """`clinreason.stages.consensus.on_review_submitted`, when that stage is installed."""
    if importlib.util.find_spec("clinreason.stages.consensus") is None:
        return None
    return importlib.import_module("clinreason.stages.consensus").on_review_submitted


def submit_review(conn: Connection, *, project_id: int, assignment_id: str, reviewer: Reviewer, body: dict[str, Any],
                  rubric_body: dict[str, Any], overlap: int = 2, now: datetime | None = None) -> dict[str, Any]:
    """Store one immutable review (and, for `edit`, the new rationale version) in the caller's transaction.
    Returns {"review_id", "rationale_id", "new_rationale_id", "new_version"}."""
    now = now or repo.now()
    row = _lock_assignment(conn, project_id=project_id, assignment_id=assignment_id, reviewer_id=reviewer.id)
    if row.status == "submitted":
        raise AssignmentClosed("this review was already submitted; reviews cannot be changed")
    if row.status == "released":
        raise AssignmentClosed("you gave this assignment back; take the next item instead")
    item = conn.execute(select(items).where(items.c.id == row.item_id).with_for_update(key_share=True)).mappings().one()
    rat = conn.execute(select(rationales).where(rationales.c.id == row.rationale_id)).mappings().one()
    latest = conn.execute(select(func.max(rationales.c.version)).where(rationales.c.item_id == row.item_id)).scalar_one()
    clean = validate_review(body, rubric_body=rubric_body, original_text=rat["text"])
    # a calibration version (stages/calibration.py): no slot count, no new version
    probe = item["state"] == ItemState.CALIBRATION.value
    if (row.status != "open" or aware(row.expires_at) <= now) and not probe:
        # The lease lapsed: keep the work if its slot is still free, else say so (the draft stays).
        taken = conn.execute(select(func.count()).select_from(reviews).where(reviews.c.rationale_id == rat["id"])).scalar_one()
        taken += conn.execute(select(func.count()).select_from(assignments).where(
            assignments.c.rationale_id == rat["id"], assignments.c.status == "open", assignments.c.expires_at > now,
            assignments.c.id != assignment_id)).scalar_one()
        if taken >= overlap + extra_reviewers(conn, project_id=project_id).get(rat["id"], 0):
            raise AssignmentClosed("your lease on this item expired and other reviewers have taken its place; "
                                   "your draft is kept")
    if clean["verdict"] == Verdict.EDIT and not probe and (item["state"] != REVIEWABLE_STATE
                                                           or rat["version"] != latest):
        raise AssignmentClosed(f"the rationale changed while you reviewed it (now version {latest}, item "
                               f"'{item['state']}'): your edit would fork it; your draft is kept")
    seconds = clean["seconds_spent"]
    if seconds is None:
        draft = load_draft(conn, rationale_id=rat["id"], reviewer_id=reviewer.id)
        seconds = draft["seconds_spent"] if draft and draft["seconds_spent"] else (now - aware(row.created_at)).total_seconds()
    review_id = new_id()
    conn.execute(insert(reviews).values(
        id=review_id, rationale_id=rat["id"], item_id=row.item_id, assignment_id=assignment_id,
        reviewer_id=reviewer.id, verdict=clean["verdict"], scores=clean["scores"], comments=clean["comments"],
        edited_text=clean["edited_text"], seconds_spent=round(float(seconds), 1),
        rubric_version=clean["rubric_version"], created_at=now))
    conn.execute(update(assignments).where(assignments.c.id == assignment_id)
                 .values(status="submitted", submitted_at=now))
    conn.execute(delete(review_drafts).where(review_drafts.c.rationale_id == rat["id"],
                                             review_drafts.c.reviewer_id == reviewer.id))
    repo.add_event(conn, project_id=project_id, item_id=row.item_id, kind="review.submitted", actor=reviewer.actor,
                   detail={"review_id": review_id, "rationale_id": rat["id"], "version": rat["version"],
                           "verdict": clean["verdict"]})
    new_rationale_id = new_version = None
    if clean["verdict"] == Verdict.EDIT and not probe:
        new_rationale_id, new_version = new_id(), latest + 1
        labels = [label for label, _text in item["options"]]
        steps, final = parse_edited_text(clean["edited_text"], option_labels=labels, fallback=rat["final_answer"])
        conn.execute(insert(rationales).values(
            id=new_rationale_id, item_id=row.item_id, version=new_version, parent_version=rat["version"],
            origin=Origin.EDITED.value, author=reviewer.actor, steps=steps, final_answer=final,
            text=clean["edited_text"], model=None, params={}, prompt_tokens=0, completion_tokens=0, cost=0.0,
            parse_status="ok", created_at=now))
        repo.transition_item(conn, item_id=row.item_id, expected=REVIEWABLE_STATE, target=REVIEWABLE_STATE,
                             actor=reviewer.actor, detail={"review_id": review_id, "edited_version": rat["version"],
                                                           "new_version": new_version})
    hook = _consensus_hook()
    if hook is not None:
        hook(conn, project_id=project_id, item_id=row.item_id, rationale_id=rat["id"], actor=reviewer.actor)
    return {"review_id": review_id, "rationale_id": rat["id"], "new_rationale_id": new_rationale_id,
            "new_version": new_version}


# --- blindness ------------------------------------------------------------------------------------

def visible_reviews(conn: Connection, *, item_id: str, viewer_id: int, viewer_role: str) -> list[dict[str, Any]]:
    """The item's reviews this viewer may see: adjudicators and admins see all; a reviewer sees their own,
    and other reviewers' reviews of a version only once they have submitted their own review of it."""
    rows = [dict(r) for r in conn.execute(
        select(reviews, users.c.username.label("reviewer"), rationales.c.version)
        .join(users, users.c.id == reviews.c.reviewer_id).join(rationales, rationales.c.id == reviews.c.rationale_id)
        .where(reviews.c.item_id == item_id).order_by(reviews.c.created_at, reviews.c.id)
    ).mappings()]
    if viewer_role in ("admin", "adjudicator"):
        return rows
    unlocked = {r["rationale_id"] for r in rows if r["reviewer_id"] == viewer_id}
    return [r for r in rows if r["rationale_id"] in unlocked]


def reviewed_versions(conn: Connection, *, item_id: str, reviewer_id: int) -> set[str]:
    return set(conn.execute(select(reviews.c.rationale_id).where(reviews.c.item_id == item_id,
                                                                 reviews.c.reviewer_id == reviewer_id)).scalars())
