"""The consensus stage: what happens to an item once a review of its current version is in.

Called inside the review's own transaction (stages/review.py), so the review, the decision and the
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
from typing import Any

from sqlalchemy import Connection, func, insert, select, update

from clinreason.domain.allocation import (
    AllocationPolicy,
    EvidenceModel,
    Rates,
    ScreeningSignals,
    borderline,
    decide_adaptive,
    initial_reviewers,
    leniency_offsets,
    says_pass,
)
from clinreason.domain.consensus import (
    ConsensusDecision,
    Outcome,
    Policy,
    ReviewVote,
    decide,
    strike_outcome,
)
from clinreason.domain.lifecycle import ItemState
from clinreason.domain.reliability import estimate
from clinreason.domain.rubric import rubric_from_dict
from clinreason.stages import calibration
from clinreason.stages.review import EXTRA_REVIEWER_EVENT  # the assignment stage honours these events
from clinreason.store import repository as repo
from clinreason.store.tables import calibration as calibration_table
from clinreason.store.tables import checks, decisions, events, items, projects, rationales, reviews, users

# (database, project) -> (reviews counted at the fit, the fitted model)
_EVIDENCE_CACHE: dict[tuple[str, int], tuple[int, EvidenceModel]] = {}


def project_policy(conn: Connection, project_id: int) -> Policy:
    config = conn.execute(select(projects.c.config).where(projects.c.id == project_id)).scalar_one()
    return Policy.from_config((config or {}).get("review", {}))


def votes_for(conn: Connection, rationale_id: str) -> list[ReviewVote]:
    rows = conn.execute(
        select(reviews.c.verdict, reviews.c.scores, reviews.c.comments, users.c.username)
        .join(users, users.c.id == reviews.c.reviewer_id)
        .where(reviews.c.rationale_id == rationale_id).order_by(reviews.c.created_at, reviews.c.id)
    ).all()
    return [ReviewVote(reviewer=r.username, verdict=r.verdict, scores=dict(r.scores or {}),
                       comments={k: str(v) for k, v in (r.comments or {}).items() if v}) for r in rows]


def extra_reviewers_requested(conn: Connection, rationale_id: str) -> int:
    # narrowed to the version's item first (events are indexed by item), then matched on the JSON detail
    item = select(rationales.c.item_id).where(rationales.c.id == rationale_id).scalar_subquery()
    return conn.execute(select(func.count()).select_from(events).where(
        events.c.item_id == item, events.c.kind == EXTRA_REVIEWER_EVENT,
        events.c.detail["rationale_id"].as_string() == rationale_id
    )).scalar_one()


def _ask_extra_reviewer(conn: Connection, *, project_id: int, item_id: str, rationale_id: str, actor: str,
                        reason: str) -> None:
    """One more reviewer for this version (the assignment stage reads these events)."""
    repo.add_event(conn, project_id=project_id, item_id=item_id, kind=EXTRA_REVIEWER_EVENT, actor=actor,
                   detail={"rationale_id": rationale_id, "reason": reason})


def screening_signals(conn: Connection, *, item_id: str, rationale_id: str) -> ScreeningSignals:
    rows = conn.execute(select(checks.c.name, checks.c.passed).where(checks.c.rationale_id == rationale_id)).all()
    flagged = conn.execute(select(items.c.flag_reason).where(items.c.id == item_id)).scalar() is not None
    return ScreeningSignals.from_checks([tuple(r) for r in rows], flagged=flagged)


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


def _signal_labels(conn: Connection, project_id: int, rationale_ids: set[str]) -> list[tuple[str, str, bool]]:
    """The screening signals of the reviewed versions as witnesses, in the shape the estimator takes."""
    reviewed = select(reviews.c.rationale_id).join(items, items.c.id == reviews.c.item_id) \
        .where(items.c.project_id == project_id)
    by_version: dict[str, list[tuple[str, bool]]] = {}
    for rid, name, passed in conn.execute(select(checks.c.rationale_id, checks.c.name, checks.c.passed)
                                          .where(checks.c.rationale_id.in_(reviewed))):
        if rid in rationale_ids:
            by_version.setdefault(rid, []).append((name, passed))
    return [(rid, source, said) for rid, rows in by_version.items()
            for source, said in ScreeningSignals.from_checks(rows).labels()]


def fit_evidence(conn: Connection, project_id: int) -> EvidenceModel:
    """Fit Dawid–Skene on every non-borderline review of the project and on the screening signals of
    the reviewed versions; versions an adjudicator accepted, and calibration versions, are known truths."""
    rubric = rubric_from_dict(repo.latest_rubric(conn, project_id=project_id))
    rows = conn.execute(select(reviews.c.rationale_id, users.c.username, reviews.c.verdict, reviews.c.scores)
                        .join(users, users.c.id == reviews.c.reviewer_id).join(items, items.c.id == reviews.c.item_id)
                        .where(items.c.project_id == project_id)).all()
    by_version: dict[str, list[ReviewVote]] = {}
    for r in rows:
        vote = ReviewVote(r.username, r.verdict, dict(r.scores or {}))
        if vote.verdict != "flag_question" and not borderline(rubric, vote):
            by_version.setdefault(r.rationale_id, []).append(vote)
    if not by_version:
        return EvidenceModel()
    offsets = leniency_offsets(by_version)
    labels = [(rid, v.reviewer, says_pass(rubric, v, offsets.get(v.reviewer, 0.0)))
              for rid, votes in by_version.items() for v in votes]
    known = {rid: True for rid in conn.execute(
        select(decisions.c.rationale_id).join(items, items.c.id == decisions.c.item_id)
        .where(items.c.project_id == project_id, decisions.c.kind == "adjudication",
               decisions.c.rationale_id.is_not(None))).scalars()}
    known.update(calibration_truths(conn, project_id))
    labels += _signal_labels(conn, project_id, {rid for rid, _, _ in labels})
    fit = estimate(labels, known=known, max_iter=50, tol=1e-4)
    return EvidenceModel(prevalence=fit.prevalence, offsets=offsets,
                         sources={r: Rates(rel.sensitivity, rel.specificity) for r, rel in fit.reviewers.items()})


def calibration_truths(conn: Connection, project_id: int) -> dict[str, bool]:
    """Calibration versions of the project: rationale id -> known sound (True) or defective (False)."""
    return {rid: expect == "good" for rid, expect in conn.execute(
        select(calibration_table.c.rationale_id, calibration_table.c.expect)
        .where(calibration_table.c.project_id == project_id))}


def evidence_model(conn: Connection, project_id: int) -> EvidenceModel:
    """The project's fitted evidence model, refitted whenever the reviews have grown by a tenth (at least
    50) since the last fit: cheap enough to call on every submission."""
    count = conn.execute(select(func.count()).select_from(reviews).join(items, items.c.id == reviews.c.item_id)
                         .where(items.c.project_id == project_id)).scalar_one()
    key = (conn.engine.url.render_as_string(hide_password=True), project_id)
    cached = _EVIDENCE_CACHE.get(key)
    if cached is not None and cached[0] <= count < cached[0] + max(50, cached[0] // 10):
        return cached[1]
    model = fit_evidence(conn, project_id)
    _EVIDENCE_CACHE[key] = (count, model)
    return model


def evaluate(conn: Connection, *, project_id: int, rationale_id: str) -> ConsensusDecision:
    rubric = rubric_from_dict(repo.latest_rubric(conn, project_id=project_id))
    policy = project_policy(conn, project_id)
    votes = votes_for(conn, rationale_id)
    extra = extra_reviewers_requested(conn, rationale_id)
    if policy.allocation != "adaptive":
        return decide(rubric, policy, votes, extra_requested=extra)
    item_id = conn.execute(select(rationales.c.item_id).where(rationales.c.id == rationale_id)).scalar_one()
    return decide_adaptive(rubric, AllocationPolicy.from_policy(policy), votes,
                           screening_signals(conn, item_id=item_id, rationale_id=rationale_id),
                           evidence_model(conn, project_id), required=policy.base_overlap + extra)


def on_review_submitted(conn: Connection, *, project_id: int, item_id: str, rationale_id: str, actor: str) -> None:
    item = conn.execute(select(items).where(items.c.id == item_id)).mappings().one()
    if item["state"] == ItemState.CALIBRATION.value:
        calibration.record_result(conn, project_id=project_id, item_id=item_id, rationale_id=rationale_id, actor=actor)
        return
    if item["state"] != ItemState.IN_REVIEW.value:
        return
    latest = conn.execute(select(rationales.c.id, rationales.c.version, rationales.c.origin, rationales.c.parent_version)
                          .where(rationales.c.item_id == item_id)
                          .order_by(rationales.c.version.desc()).limit(1)).one()
    policy = project_policy(conn, project_id)
    if latest.id != rationale_id:
        # an expert's edit superseded the reviewed version: that round failed, the new version is reviewed
        reviewed_version = conn.execute(select(rationales.c.version).where(rationales.c.id == rationale_id)).scalar_one()
        if latest.origin == "edited" and latest.parent_version == reviewed_version:
            _strike(conn, item=item, policy=policy, actor=actor, reason="an expert edited the rationale",
                    rationale_id=rationale_id, regenerate=False)
            if conn.execute(select(items.c.state).where(items.c.id == item_id)).scalar_one() == "in_review":
                enter_review(conn, project_id=project_id, item_id=item_id, rationale_id=latest.id, actor=actor)
        return
    decision = evaluate(conn, project_id=project_id, rationale_id=rationale_id)
    detail = {"rationale_id": rationale_id, "version": latest.version, "outcome": decision.outcome.value,
              "reason": decision.reason}
    if decision.outcome is Outcome.PENDING:
        if decision.feedback is not None:  # a disagreement the policy settles with one more reviewer
            _ask_extra_reviewer(conn, project_id=project_id, item_id=item_id, rationale_id=rationale_id, actor=actor,
                                reason=decision.reason)
        return
    if decision.outcome is Outcome.ACCEPTED:
        repo.transition_item(conn, item_id=item_id, expected=ItemState.IN_REVIEW, target=ItemState.ACCEPTED,
                             actor=actor, detail=detail)
        conn.execute(insert(decisions).values(item_id=item_id, kind="consensus", rationale_id=rationale_id,
                                              decided_by="consensus", reason=decision.reason, created_at=repo.now()))
        repo.add_event(conn, project_id=project_id, item_id=item_id, kind="decision.consensus", actor=actor,
                       after={"rationale_id": rationale_id, "version": latest.version}, detail=detail)
        return
    if decision.outcome is Outcome.FLAGGED:
        _escalate(conn, item_id=item_id, actor=actor, reason=decision.reason, detail=detail)
        return
    if decision.outcome is Outcome.DISAGREEMENT:
        _escalate(conn, item_id=item_id, actor=actor, reason=f"reviewers disagree: {decision.reason}", detail=detail)
        return
    _strike(conn, item=item, policy=policy, actor=actor, reason=decision.reason, rationale_id=rationale_id,
            regenerate=True, feedback=decision)


def _escalate(conn: Connection, *, item_id: str, actor: str, reason: str, detail: dict[str, Any]) -> None:
    repo.transition_item(conn, item_id=item_id, expected=ItemState.IN_REVIEW, target=ItemState.ESCALATED, actor=actor,
                         detail=detail, flag_reason=reason[:2000])


def _strike(conn: Connection, *, item: dict[str, Any], policy: Policy, actor: str, reason: str, rationale_id: str,
            regenerate: bool, feedback: ConsensusDecision | None = None) -> None:
    strikes = int(conn.execute(select(items.c.strikes).where(items.c.id == item["id"])).scalar_one()) + 1
    detail: dict[str, Any] = {"rationale_id": rationale_id, "strikes": strikes, "max_strikes": policy.max_strikes,
                              "reason": reason}
    if feedback is not None and feedback.feedback is not None:
        detail["failing"] = feedback.feedback.failing
        detail["verdicts"] = feedback.feedback.verdicts
    repo.add_event(conn, project_id=item["project_id"], item_id=item["id"], kind="item.strike", actor=actor,
                   before={"strikes": strikes - 1}, after={"strikes": strikes}, detail=detail)
    if strike_outcome(strikes, policy):
        # five strikes (by default): an adjudicator decides, with every version and review in view
        reason_text = f"{strikes} failed rounds (max_strikes = {policy.max_strikes}): {reason}"
        repo.transition_item(conn, item_id=item["id"], expected=ItemState.IN_REVIEW, target=ItemState.ESCALATED,
                             actor=actor, detail=detail, strikes=strikes, flag_reason=reason_text)
        return
    if regenerate:
        repo.transition_item(conn, item_id=item["id"], expected=ItemState.IN_REVIEW, target=ItemState.REGENERATING,
                             actor=actor, detail=detail, strikes=strikes, auto_retries=0,
                             claimed_by=None, claimed_until=None)
    else:
        conn.execute(update(items).where(items.c.id == item["id"]).values(strikes=strikes, updated_at=repo.now()))
