"""The consensus stage: what happens to an item once a review of its current version is in.

Called by `review.submit_review`, inside the review's own transaction, so the review, the decision and the
item's next state are stored together or not at all. The rules themselves are pure
(domain/consensus.py); this module reads what they need and applies the outcome:

  accepted        -> item accepted, Decision(kind=consensus)
  needs_revision  -> a strike; guided regeneration (item -> regenerating) or, at max strikes, escalation
  disagreement    -> escalated to an adjudicator (or one extra reviewer, when the policy says so)
  flagged         -> escalated: the question itself is in doubt
  an edit         -> the expert's new version was already stored; the old round counts as a strike
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import SQLAlchemyError

from clinreason.analytics.reliability import _EVIDENCE_CACHE, evidence_model, fit_evidence  # noqa: F401
from clinreason.domain.allocation import (
    AllocationPolicy,
    ScreeningSignals,
    decide_adaptive,
    initial_reviewers,
)
from clinreason.domain.consensus import (
    ConsensusDecision,
    Feedback,
    Outcome,
    Policy,
    ReviewVote,
    apply_step_marks,
    decide,
    merge_feedback,
    strike_outcome,
)
from clinreason.domain.lifecycle import ItemState
from clinreason.domain.records import Item, RationaleVersion
from clinreason.domain.rubric import Rubric
from clinreason.stages.settings import ReviewSettings, review_policy, review_settings
from clinreason.store import decisions as decision_store
from clinreason.store import items as item_store
from clinreason.store import rationales as rationale_store
from clinreason.store import reviews as review_store


def project_policy(conn: Connection, project_id: int) -> Policy:
    return review_policy(conn, project_id)


def votes_for(conn: Connection, rationale_id: str) -> list[ReviewVote]:
    return review_store.votes_for(conn, rationale_id=rationale_id)


def extra_reviewers_requested(conn: Connection, rationale_id: str) -> int:
    return review_store.extra_reviewers_of(conn, rationale_id=rationale_id)


def _ask_extra_reviewer(conn: Connection, *, project_id: int, item_id: str, rationale_id: str, actor: str,
                        reason: str) -> None:
    """One more reviewer for this version (the queue reads the request on every lease)."""
    review_store.request_extra_reviewer(conn, project_id=project_id, item_id=item_id, rationale_id=rationale_id,
                                        actor=actor, reason=reason)


def screening_signals(conn: Connection, *, item_id: str, rationale_id: str) -> ScreeningSignals:
    rows = [(c.name, c.passed) for c in rationale_store.checks_of(conn, rationale_ids=[rationale_id])]
    return ScreeningSignals.from_checks(rows, flagged=item_store.flag_reason(conn, item_id=item_id) is not None)


def audit_draw(rationale_id: str) -> float:
    """A uniform number fixed by the version's id: the audit sample is reproducible."""
    return int(hashlib.sha256(rationale_id.encode()).hexdigest()[:8], 16) / 2**32


def enter_review(conn: Connection, *, project_id: int, item_id: str, rationale_id: str, actor: str) -> int:
    """A version enters the review queue: under adaptive allocation, decide how many reviewers it starts
    with (the base is one; each extra is an event the assignment stage honours). Returns that number."""
    policy = project_policy(conn, project_id)
    if policy.allocation != "adaptive":
        return policy.overlap
    signals = screening_signals(conn, item_id=item_id, rationale_id=rationale_id)
    n, reason = initial_reviewers(AllocationPolicy.from_policy(policy), signals, audit_draw(rationale_id))
    for _ in range(n - policy.base_overlap):
        _ask_extra_reviewer(conn, project_id=project_id, item_id=item_id, rationale_id=rationale_id, actor=actor,
                            reason=reason)
    return n


def evaluate(conn: Connection, *, project_id: int, item_id: str, rationale_id: str,
             policy: Policy | None = None, rubric: Rubric | None = None) -> ConsensusDecision:
    if rubric is None:
        rubric = review_settings(conn, project_id).rubric
    policy = policy or project_policy(conn, project_id)
    votes = votes_for(conn, rationale_id)
    extra = extra_reviewers_requested(conn, rationale_id)
    if policy.allocation != "adaptive":
        return decide(rubric, policy, votes, extra_requested=extra)  # the step rules included
    decision = decide_adaptive(rubric, AllocationPolicy.from_policy(policy), votes,
                               screening_signals(conn, item_id=item_id, rationale_id=rationale_id),
                               evidence_model(conn, project_id), required=policy.base_overlap + extra)
    return apply_step_marks(policy, votes, decision, decision.feedback or merge_feedback(rubric, votes))


_HELD = "clinreason.consensus.held"


@contextmanager
def holding(conn: Connection, *, item: Item, latest: RationaleVersion,
            settings: ReviewSettings | None = None) -> Iterator[None]:
    """Within this block, `on_review_submitted` on this connection takes `item` and its `latest` version
    as given (the caller read and locked them in this transaction and changed neither) instead of reading
    them again, and the project's review `settings` too where the caller read them in this transaction."""
    conn.info[_HELD] = (item, latest, settings)
    try:
        yield
    finally:
        try:
            conn.info.pop(_HELD, None)
        except SQLAlchemyError:
            # the connection died inside the block (the database restarted): it is discarded with its info,
            # and the block's own error (database unavailable: a 503) is the one to raise, not this one
            pass


def on_review_submitted(conn: Connection, *, project_id: int, item_id: str, rationale_id: str, actor: str) -> None:
    """Apply consensus to the version a review was just stored for (called by review.submit_review)."""
    held: tuple[Item, RationaleVersion, ReviewSettings | None] | None = conn.info.pop(_HELD, None)
    item, latest, current = held if held is not None and held[0].id == item_id and held[0].project_id == project_id \
        else (None, None, None)
    if item is None:
        item = item_store.get_item(conn, project_id=project_id, item_id=item_id)
    if item is None or item.state != ItemState.IN_REVIEW.value:
        return
    if latest is None:
        latest = rationale_store.latest_version(conn, item_id=item_id)
    assert latest is not None
    current = current or review_settings(conn, project_id)
    policy, rubric = current.policy, current.rubric
    if latest.id != rationale_id:
        # an expert's edit superseded the reviewed version: that round failed, the new version is reviewed
        reviewed = rationale_store.get_version(conn, rationale_id=rationale_id)
        if reviewed is not None and latest.origin == "edited" and latest.parent_version == reviewed.version:
            _strike(conn, item=item, policy=policy, actor=actor, reason="an expert edited the rationale",
                    rationale_id=rationale_id, regenerate=False)
            if item_store.item_state(conn, item_id=item_id) == ItemState.IN_REVIEW.value:
                enter_review(conn, project_id=project_id, item_id=item_id, rationale_id=latest.id, actor=actor)
        return
    decision = evaluate(conn, project_id=project_id, item_id=item_id, rationale_id=rationale_id, policy=policy,
                        rubric=rubric)
    detail = {"rationale_id": rationale_id, "version": latest.version, "outcome": decision.outcome.value,
              "reason": decision.reason}
    if decision.outcome is Outcome.PENDING:
        if decision.feedback is not None:  # a disagreement the policy settles with one more reviewer
            _ask_extra_reviewer(conn, project_id=project_id, item_id=item_id, rationale_id=rationale_id, actor=actor,
                                reason=decision.reason)
        return
    if decision.outcome is Outcome.ACCEPTED:
        item_store.transition_item(conn, item_id=item_id, expected=ItemState.IN_REVIEW, target=ItemState.ACCEPTED,
                                   actor=actor, detail=detail)
        decision_store.add_decision(conn, item_id=item_id, kind="consensus", rationale_id=rationale_id,
                                    decided_by="consensus", reason=decision.reason)
        decision_store.add_event(conn, project_id=project_id, item_id=item_id, kind="decision.consensus", actor=actor,
                                 after={"rationale_id": rationale_id, "version": latest.version}, detail=detail)
        return
    if decision.outcome is Outcome.FLAGGED:
        _escalate(conn, item_id=item_id, actor=actor, reason=decision.reason, detail=detail)
        return
    if decision.outcome is Outcome.DISAGREEMENT:
        _escalate(conn, item_id=item_id, actor=actor, reason=f"reviewers disagree: {decision.reason}", detail=detail)
        return
    _strike(conn, item=item, policy=policy, actor=actor, reason=decision.reason, rationale_id=rationale_id,
            regenerate=True, feedback=decision.feedback)


def _escalate(conn: Connection, *, item_id: str, actor: str, reason: str, detail: dict[str, Any]) -> None:
    item_store.transition_item(conn, item_id=item_id, expected=ItemState.IN_REVIEW, target=ItemState.ESCALATED,
                               actor=actor, detail=detail, flag_reason=reason[:2000])


def _strike(conn: Connection, *, item: Item, policy: Policy, actor: str, reason: str, rationale_id: str,
            regenerate: bool, feedback: Feedback | None = None) -> None:
    strikes = item.strikes + 1
    detail: dict[str, Any] = {"rationale_id": rationale_id, "strikes": strikes, "max_strikes": policy.max_strikes,
                              "reason": reason}
    if feedback is not None:
        detail["failing"] = feedback.failing
        detail["verdicts"] = feedback.verdicts
    decision_store.add_event(conn, project_id=item.project_id, item_id=item.id, kind="item.strike", actor=actor,
                             before={"strikes": strikes - 1}, after={"strikes": strikes}, detail=detail)
    if strike_outcome(strikes, policy):
        # five strikes (by default): an adjudicator decides, with every version and review in view
        reason_text = f"{strikes} failed rounds (max_strikes = {policy.max_strikes}): {reason}"
        item_store.transition_item(conn, item_id=item.id, expected=ItemState.IN_REVIEW, target=ItemState.ESCALATED,
                                   actor=actor, detail=detail, strikes=strikes, flag_reason=reason_text)
        return
    if regenerate:
        # what guided regeneration renders (stages/refine.py): the one Feedback consensus computed
        if feedback is not None:
            review_store.store_feedback(conn, item_id=item.id, rationale_id=rationale_id, merged=feedback)
        item_store.transition_item(conn, item_id=item.id, expected=ItemState.IN_REVIEW, target=ItemState.REGENERATING,
                                   actor=actor, detail=detail, strikes=strikes, auto_retries=0,
                                   claimed_by=None, claimed_until=None)
    else:
        item_store.set_strikes(conn, item_id=item.id, strikes=strikes)
