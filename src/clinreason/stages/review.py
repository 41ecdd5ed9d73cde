"""The review stage: which rationale version a reviewer gets next, and what happens when they submit.

Plain functions over a Connection; the caller owns the transaction (one request = one transaction).
The SQL lives in store/reviews.py (leases, reviews) and store/queue.py (who may take what); this module holds the rules.

Assignment rules (`assign_next_review`):
  * an item is reviewable while its state is `in_review`; the version under review is its highest version;
  * a version gets at most `overlap` (k) reviewers: completed reviews + open, unexpired leases < k;
  * never the same reviewer twice on a version, never a reviewer on a version they authored by editing;
  * a version consensus asked one more reviewer for (store: extra_reviewer_requests) first; then specialty
    match (then items without a specialty, then the rest); among those the oldest item first, so reviewers
    fill one item's k slots before opening the next instead of leaving everything half-reviewed;
  * a calibration version is served instead at the project's `calibration_rate` (stages/calibration.py);
  * a lease expires after `lease_minutes` and the slot returns to the pool.

Submitting (`submit_review`) reads top to bottom: lock the lease, validate, store the review (and, for an
edit, the expert's new version), then apply consensus (stages/consensus.py) — all in the caller's
transaction, so the review and its consequences are stored together or not at all.
"""

from __future__ import annotations

import random
import time
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection

from clinreason.domain.lifecycle import ItemState
from clinreason.domain.messages import N_, Params, Translatable, fill
from clinreason.domain.records import Assignment, Item, Origin, RationaleVersion, Review, Verdict
from clinreason.domain.rubric import Rubric, RubricError, rubric_from_dict
from clinreason.domain.steps import StepMarkError, validate_marks
from clinreason.stages import calibration, consensus, screen
from clinreason.stages.settings import ReviewSettings, review_settings
from clinreason.store import items as item_store
from clinreason.store import queue as queue_store
from clinreason.store import rationales as rationale_store
from clinreason.store import reviews as review_store
from clinreason.store.common import new_id
from clinreason.store.common import now as store_now
from clinreason.store.decisions import add_event
from clinreason.store.queue import Candidate
from clinreason.store.rationales import NewVersion
from clinreason.store.readmodels import item_reviews

REVIEWABLE_STATE = ItemState.IN_REVIEW.value
MAX_COMMENT_CHARS = 20_000
MAX_TEXT_CHARS = 200_000
GENERAL_COMMENT = "general"


class ReviewError(ValueError):
    """A submission the reviewer can fix; `field` names the offending field (e.g. `scores.correctness`)."""

    def __init__(self, field: str, message: str, params: Params = None):
        self.template, self.params = message, (dict(params) if params is not None else None)
        self.message = fill(message, params)  # English; a marked template + params is translatable (web/i18n.py)
        super().__init__(f"{field}: {self.message}")
        self.field = field


class AssignmentNotFound(Translatable, LookupError):
    """No such assignment in this project."""


class NotYourAssignment(Translatable, PermissionError):
    """The assignment belongs to another reviewer."""


class AssignmentClosed(Translatable, RuntimeError):
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




# --- leases ---------------------------------------------------------------------------------------

def expire_leases(conn: Connection, *, project_id: int, now: datetime | None = None) -> int:
    """Mark open leases past their expiry as `expired`; returns how many."""
    return review_store.expire_leases(conn, project_id=project_id, at=now or store_now())


def extra_reviewers(conn: Connection, *, project_id: int) -> dict[str, int]:
    """Rationale id -> reviewers beyond k that consensus asked for, for items still in review."""
    return review_store.extra_reviewers_wanted(conn, project_id=project_id)


def current_lease(conn: Connection, *, project_id: int, reviewer_id: int, now: datetime | None = None) -> Lease | None:
    held = review_store.current_lease(conn, project_id=project_id, reviewer_id=reviewer_id, at=now or store_now())
    if held is None:
        return None
    assignment, version = held
    return Lease(assignment.id, assignment.rationale_id, assignment.item_id, version, assignment.expires_at,
                 resumed=True)


def _candidates(conn: Connection, *, project_id: int, reviewer: Reviewer, overlap: int, now: datetime, limit: int,
                rationale_id: str | None = None) -> list[Candidate]:
    return queue_store.candidates(conn, project_id=project_id, reviewer_id=reviewer.id, author=reviewer.actor,
                                  specialties=reviewer.specialties, overlap=overlap, at=now, limit=limit,
                                  rationale_id=rationale_id)


def assign_next_review(conn: Connection, *, project_id: int, reviewer: Reviewer, overlap: int = 2,
                       lease_minutes: int = 30, now: datetime | None = None, max_rounds: int = 60,
                       settings: ReviewSettings | None = None) -> Lease | None:
    """Lease the next rationale version to `reviewer`, or return None when there is nothing for them.
    A reviewer holding a live lease gets that lease back (one item at a time). `settings`: the project's
    review settings when the caller has just read them (else they are read here)."""
    now = now or store_now()
    sqlite = conn.dialect.name == "sqlite"
    if not sqlite:  # on SQLite the transaction (BEGIN IMMEDIATE) already serialises every writer
        review_store.lock_reviewer(conn, reviewer_id=reviewer.id)
    expire_leases(conn, project_id=project_id, now=now)
    held = current_lease(conn, project_id=project_id, reviewer_id=reviewer.id, now=now)
    if held is not None:
        return held
    current = settings or review_settings(conn, project_id)
    if current.has_probes:  # no calibration item in the project: nothing to draw
        probe = calibration.candidate(conn, project_id=project_id, reviewer_id=reviewer.id, author=reviewer.actor,
                                      rate=current.config.calibration_rate)
        if probe is not None:  # a calibration version, leased exactly like any other
            return _lease(conn, project_id=project_id, reviewer=reviewer, cand=probe, now=now,
                          lease_minutes=lease_minutes)
    for _round in range(max_rounds):
        # Versions consensus asked one more reviewer for (a disagreement to settle) come first.
        found = [(cand, overlap + extra) for rid, extra in extra_reviewers(conn, project_id=project_id).items()
                 for cand in _candidates(conn, project_id=project_id, reviewer=reviewer, overlap=overlap + extra,
                                         now=now, limit=1, rationale_id=rid)]
        found += [(cand, overlap) for cand in _candidates(conn, project_id=project_id, reviewer=reviewer,
                                                          overlap=overlap, now=now, limit=1 if sqlite else 25)]
        if not found:
            return None
        if sqlite:
            # One writer at a time: the candidates were read in this transaction, under its write lock, and
            # nothing moved since (the claim and the re-check below would see exactly what was read).
            return _lease(conn, project_id=project_id, reviewer=reviewer, cand=found[0][0], now=now,
                          lease_minutes=lease_minutes)
        for cand, slots in found:
            if not item_store.claim_item_row(conn, item_id=cand.item_id, state=REVIEWABLE_STATE):
                continue  # another reviewer is being assigned this item right now: try the next one
            # Re-check under the lock (PostgreSQL, READ COMMITTED: this statement sees every assignment
            # committed before it).
            if not _candidates(conn, project_id=project_id, reviewer=reviewer, overlap=slots, now=now, limit=1,
                               rationale_id=cand.id):
                continue
            return _lease(conn, project_id=project_id, reviewer=reviewer, cand=cand, now=now,
                          lease_minutes=lease_minutes)
        # Every candidate was locked by a concurrent assignment or filled meanwhile: look again.
        time.sleep(random.uniform(0.002, 0.01))
    return None


def _lease(conn: Connection, *, project_id: int, reviewer: Reviewer, cand: Candidate, now: datetime,
           lease_minutes: int) -> Lease:
    lease = Lease(new_id(), cand.id, cand.item_id, cand.version, now + timedelta(minutes=lease_minutes), resumed=False)
    review_store.add_assignment(conn, project_id=project_id, assignment_id=lease.assignment_id, candidate=cand,
                                reviewer_id=reviewer.id, actor=reviewer.actor, at=now, expires_at=lease.expires_at)
    return lease


def _lock_assignment(conn: Connection, *, project_id: int, assignment_id: str, reviewer_id: int | None) -> Assignment:
    row = review_store.lock_assignment(conn, assignment_id=assignment_id)
    _check_owner(row, project_id=project_id, assignment_id=assignment_id, reviewer_id=reviewer_id)
    assert row is not None
    return row


def _check_owner(row: Assignment | None, *, project_id: int, assignment_id: str, reviewer_id: int | None) -> None:
    if row is None or row.project_id != project_id:
        raise AssignmentNotFound(N_("assignment {assignment_id} does not exist in this project"),
                                 {"assignment_id": assignment_id})
    if reviewer_id is not None and row.reviewer_id != reviewer_id:
        raise NotYourAssignment(N_("assignment {assignment_id} belongs to another reviewer"),
                                {"assignment_id": assignment_id})


def release_assignment(conn: Connection, *, project_id: int, assignment_id: str, reviewer_id: int) -> None:
    """The reviewer gives the lease back (skip); they will not be offered this version again."""
    row = _lock_assignment(conn, project_id=project_id, assignment_id=assignment_id, reviewer_id=reviewer_id)
    if row.status == "submitted":
        raise AssignmentClosed(N_("this review was already submitted; reviews cannot be changed"))
    review_store.set_assignment_status(conn, assignment_id=assignment_id, status="released")
    review_store.delete_draft(conn, rationale_id=row.rationale_id, reviewer_id=reviewer_id)
    add_event(conn, project_id=project_id, item_id=row.item_id, kind="assignment.released",
              actor=f"user:{review_store.username(conn, user_id=reviewer_id)}", detail={"assignment_id": assignment_id})


def get_assignment(conn: Connection, *, project_id: int, assignment_id: str, reviewer_id: int | None) -> Assignment:
    row = review_store.get_assignment(conn, assignment_id=assignment_id)
    _check_owner(row, project_id=project_id, assignment_id=assignment_id, reviewer_id=reviewer_id)
    assert row is not None
    return row


# --- drafts (autosave) ----------------------------------------------------------------------------

def save_draft(conn: Connection, *, project_id: int, assignment_id: str, reviewer_id: int, body: dict[str, Any],
               seconds_spent: float | None, now: datetime | None = None) -> None:
    """Keep what the reviewer has typed so far; a closed tab or an expired lease loses nothing."""
    row = _lock_assignment(conn, project_id=project_id, assignment_id=assignment_id, reviewer_id=reviewer_id)
    if row.status in ("submitted", "released"):
        raise AssignmentClosed(N_("assignment {assignment_id} is {status}: there is no draft to save"),
                               {"assignment_id": assignment_id, "status": row.status})
    review_store.save_draft(conn, assignment=row, body=body, seconds_spent=max(0.0, float(seconds_spent or 0.0)),
                            at=now or store_now())


def load_draft(conn: Connection, *, rationale_id: str, reviewer_id: int) -> dict[str, Any] | None:
    return review_store.load_draft(conn, rationale_id=rationale_id, reviewer_id=reviewer_id)


# --- submitting -----------------------------------------------------------------------------------

def validate_review(body: dict[str, Any], *, rubric_body: dict[str, Any] | Rubric, original_text: str,
                    n_steps: int | None = None) -> dict[str, Any]:
    """Check a submission against the project's current rubric (its stored body, or the body parsed) and,
    for step marks, the reviewed version's `n_steps` steps and the rubric's error taxonomy; raise
    ReviewError naming the field."""
    rubric = rubric_body if isinstance(rubric_body, Rubric) else rubric_from_dict(rubric_body)
    verdict = body.get("verdict")
    if verdict not in {v.value for v in Verdict}:
        raise ReviewError("verdict", N_("expected one of {choices}, got {value!r}"),
                          {"choices": ", ".join(v.value for v in Verdict), "value": verdict})
    scores = body.get("scores")
    if not isinstance(scores, dict):
        raise ReviewError("scores", N_("expected an object mapping every rubric dimension to a score"))
    try:
        clean_scores = rubric.validate_scores(scores)
    except RubricError as exc:
        if exc.field:
            raise ReviewError(exc.field, exc.template, exc.params) from None
        field, _, message = str(exc).partition(": ")
        raise ReviewError(field, message) from None
    comments = body.get("comments") or {}
    if not isinstance(comments, dict):
        raise ReviewError("comments", N_("expected an object mapping dimension names to text"))
    clean_comments: dict[str, str] = {}
    for key, text in comments.items():
        if key not in rubric.names and key != GENERAL_COMMENT:
            raise ReviewError(f"comments.{key}", N_("not a rubric dimension (expected one of {names} or '{general}')"),
                              {"names": ", ".join(rubric.names), "general": GENERAL_COMMENT})
        if text is None:
            continue
        if not isinstance(text, str):
            raise ReviewError(f"comments.{key}", N_("expected text"))
        if len(text) > MAX_COMMENT_CHARS:
            raise ReviewError(f"comments.{key}", N_("longer than {n} characters"), {"n": MAX_COMMENT_CHARS})
        if text.strip():
            clean_comments[key] = text.strip()
    edited = body.get("edited_text")
    if edited is not None and not isinstance(edited, str):
        raise ReviewError("edited_text", N_("expected text"))
    edited = (edited or "").replace("\r\n", "\n")
    if verdict == Verdict.EDIT:
        if not edited.strip():
            raise ReviewError("edited_text", N_("required with verdict 'edit': the full corrected rationale"))
        if edited.strip() == original_text.replace("\r\n", "\n").strip():
            raise ReviewError("edited_text",
                              N_("identical to the version under review: change it, or choose another verdict"))
        if len(edited) > MAX_TEXT_CHARS:
            raise ReviewError("edited_text", N_("longer than {n} characters"), {"n": MAX_TEXT_CHARS})
    elif edited.strip() and edited.strip() != original_text.replace("\r\n", "\n").strip():
        raise ReviewError("edited_text", N_("an edited text was given with verdict '{verdict}': submit it with verdict "
                                            "'edit', or leave it out"), {"verdict": verdict})
    seconds = body.get("seconds_spent")
    if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0):
        raise ReviewError("seconds_spent", N_("expected a number of seconds >= 0"))
    try:
        marks = validate_marks(body.get("steps"), n_steps=n_steps if n_steps is not None else 0,
                               categories=rubric.step_error_names)
    except StepMarkError as exc:
        raise ReviewError(exc.field, exc.template, exc.params) from None
    return {"verdict": verdict, "scores": clean_scores, "comments": clean_comments,
            "edited_text": edited if verdict == Verdict.EDIT else None,
            "seconds_spent": float(seconds) if seconds is not None else None,
            "rubric_version": rubric.version, "steps": [m.to_dict() for m in marks]}


def submit_review(conn: Connection, *, project_id: int, assignment_id: str, reviewer: Reviewer, body: dict[str, Any],
                  rubric_body: dict[str, Any] | Rubric, overlap: int = 2, now: datetime | None = None,
                  settings: ReviewSettings | None = None) -> dict[str, Any]:
    """Store one immutable review (and, for `edit`, the expert's new version), then apply consensus, in
    the caller's transaction. Returns {"review_id", "rationale_id", "new_rationale_id", "new_version"}.
    `settings`: the project's review settings where the caller read them in this transaction (consensus
    takes them instead of reading them again)."""
    now = now or store_now()
    locked = review_store.lock_assignment_with_draft(conn, assignment_id=assignment_id)
    _check_owner(locked[0] if locked else None, project_id=project_id, assignment_id=assignment_id,
                 reviewer_id=reviewer.id)
    assert locked is not None
    lease, has_draft = locked
    if lease.status == "submitted":
        raise AssignmentClosed(N_("this review was already submitted; reviews cannot be changed"))
    if lease.status == "released":
        raise AssignmentClosed(N_("you gave this assignment back; take the next item instead"))
    item = item_store.lock_item(conn, item_id=lease.item_id)
    latest = rationale_store.latest_version(conn, item_id=lease.item_id)
    reviewed = latest if latest is not None and latest.id == lease.rationale_id else \
        rationale_store.get_version(conn, rationale_id=lease.rationale_id)
    assert item is not None and reviewed is not None and latest is not None
    clean = validate_review(body, rubric_body=rubric_body, original_text=reviewed.text, n_steps=len(reviewed.steps))
    probe = item.state == ItemState.CALIBRATION.value  # no slot count, no new version, no consensus
    _check_still_open(conn, lease=lease, reviewed=reviewed, probe=probe, overlap=overlap, now=now)
    if clean["verdict"] == Verdict.EDIT and not probe and (item.state != REVIEWABLE_STATE
                                                           or reviewed.version != latest.version):
        raise AssignmentClosed(N_("the rationale changed while you reviewed it (now version {version}, item "
                                  "'{state}'): your edit would fork it; your draft is kept"),
                               {"version": latest.version, "state": item.state})

    review = _store_review(conn, project_id=project_id, lease=lease, reviewer=reviewer, reviewed=reviewed,
                           clean=clean, now=now, has_draft=has_draft)
    edited: RationaleVersion | None = None
    if clean["verdict"] == Verdict.EDIT and not probe:
        edited = _store_edit(conn, item=item, reviewed=reviewed, reviewer=reviewer, review=review,
                             text=clean["edited_text"])

    if probe:
        calibration.record_result(conn, project_id=project_id, item_id=item.id, rationale_id=reviewed.id,
                                  actor=reviewer.actor)
    else:
        # unless an edit added a version, the item and its latest version are as read above (locked):
        # consensus takes them from here instead of reading them again
        with consensus.holding(conn, item=item, latest=latest, settings=settings) if edited is None \
                else nullcontext():
            consensus.on_review_submitted(conn, project_id=project_id, item_id=item.id, rationale_id=reviewed.id,
                                          actor=reviewer.actor)
    return {"review_id": review.id, "rationale_id": reviewed.id,
            "new_rationale_id": edited.id if edited else None, "new_version": edited.version if edited else None}


def _check_still_open(conn: Connection, *, lease: Assignment, reviewed: RationaleVersion, probe: bool, overlap: int,
                      now: datetime) -> None:
    """A lapsed lease keeps its work while the version's slot is still free; else the draft stays."""
    if probe or (lease.status == "open" and lease.expires_at > now):
        return
    taken = review_store.taken_slots(conn, rationale_id=reviewed.id, at=now, except_assignment=lease.id)
    wanted = overlap + review_store.extra_reviewers_of(conn, rationale_id=reviewed.id)
    if taken >= wanted:
        raise AssignmentClosed(N_("your lease on this item expired and other reviewers have taken its place; "
                                  "your draft is kept"))


def _store_review(conn: Connection, *, project_id: int, lease: Assignment, reviewer: Reviewer,
                  reviewed: RationaleVersion, clean: dict[str, Any], now: datetime, has_draft: bool = True) -> Review:
    """`has_draft`: whether the reviewer had a draft of the version when the lease was locked (on SQLite,
    where nothing else writes meanwhile, no draft means none to read or delete)."""
    seconds = clean["seconds_spent"]
    maybe_draft = has_draft or conn.dialect.name != "sqlite"
    if seconds is None:
        draft = load_draft(conn, rationale_id=reviewed.id, reviewer_id=reviewer.id) if maybe_draft else None
        seconds = draft["seconds_spent"] if draft and draft["seconds_spent"] else (now - lease.created_at).total_seconds()
    review = Review(id=new_id(), rationale_id=reviewed.id, item_id=lease.item_id, reviewer_id=reviewer.id,
                    verdict=clean["verdict"], scores=clean["scores"], comments=clean["comments"],
                    edited_text=clean["edited_text"], seconds_spent=round(float(seconds), 1),
                    rubric_version=clean["rubric_version"], assignment_id=lease.id, created_at=now,
                    steps=clean["steps"])
    review_store.add_review(conn, review)
    review_store.set_assignment_status(conn, assignment_id=lease.id, status="submitted", at=now)
    if maybe_draft:
        review_store.delete_draft(conn, rationale_id=reviewed.id, reviewer_id=reviewer.id)
    add_event(conn, project_id=project_id, item_id=lease.item_id, kind="review.submitted", actor=reviewer.actor,
              detail={"review_id": review.id, "rationale_id": reviewed.id, "version": reviewed.version,
                      "verdict": clean["verdict"],
                      "error_steps": [m["step"] for m in clean["steps"] if m["verdict"] == "error"]})
    return review


def _store_edit(conn: Connection, *, item: Item, reviewed: RationaleVersion, reviewer: Reviewer, review: Review,
                text: str) -> RationaleVersion:
    """The expert's text becomes the next version, which goes back to review."""
    edited = rationale_store.add_version(conn, NewVersion(item=item, origin=Origin.EDITED, author=reviewer.actor,
                                                          text=text, parent_version=reviewed.version,
                                                          fallback_final=reviewed.final_answer))
    screen.screen_edited_version(conn, item=item, version=edited)
    item_store.transition_item(conn, item_id=item.id, expected=REVIEWABLE_STATE, target=REVIEWABLE_STATE,
                               actor=reviewer.actor, detail={"review_id": review.id, "edited_version": reviewed.version,
                                                             "new_version": edited.version})
    return edited


# --- blindness ------------------------------------------------------------------------------------

def visible_reviews(conn: Connection, *, item_id: str, viewer_id: int, viewer_role: str) -> list[Review]:
    """The item's reviews this viewer may see: adjudicators and admins see all; a reviewer sees their own,
    and other reviewers' reviews of a version only once they have submitted their own review of it."""
    rows = item_reviews(conn, item_id=item_id)
    if viewer_role in ("admin", "adjudicator"):
        return rows
    unlocked = {r.rationale_id for r in rows if r.reviewer_id == viewer_id}
    return [r for r in rows if r.rationale_id in unlocked]


def reviewed_versions(conn: Connection, *, item_id: str, reviewer_id: int) -> set[str]:
    return review_store.reviewed_versions(conn, item_id=item_id, reviewer_id=reviewer_id)
