"""Consensus rules: given the rubric, the review policy and the submitted reviews of one rationale
version, decide what happens to it. Pure: no database, no clock.

Outcomes
  pending         fewer reviews than the policy needs (wait for more)
  accepted        the reviewers agree it meets the pass rule
  needs_revision  the reviewers agree it does not: regenerate, guided by their merged feedback
  disagreement    they disagree: an extra reviewer, or an adjudicator, settles it (policy)
  flagged         a reviewer says the question itself is flawed: adjudication
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from statistics import mean

from clinreason.domain.rubric import Rubric
from clinreason.domain.steps import Severity, StepMark, blocking_marks


class Outcome(StrEnum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    NEEDS_REVISION = "needs_revision"
    DISAGREEMENT = "disagreement"
    FLAGGED = "flagged"


class Rule(StrEnum):
    ALL_ACCEPT = "all_accept"  # every reviewer accepts and every score meets its threshold
    MAJORITY = "majority"  # more than half of the reviews pass
    MEAN_SCORE = "mean_score"  # the mean of every dimension meets min(threshold, mean_threshold); no regenerate


class Settle(StrEnum):
    ADJUDICATOR = "adjudicator"
    EXTRA_REVIEWER = "extra_reviewer"


@dataclass(frozen=True, slots=True)
class Policy:
    """The review policy the rules apply. Projects build it from their settings (config.ReviewConfig.policy,
    the one table of defaults); every field is given there."""

    overlap: int
    rule: Rule
    mean_threshold: float
    settle: Settle
    max_extra_reviewers: int
    max_strikes: int
    allocation: str  # fixed | adaptive (domain/allocation.py)
    audit_share: float
    max_reviewers: int
    min_reliability: float
    accept_risk: float  # adaptive: accept when P(defective) is at most this
    revise_risk: float  # adaptive: send back when P(sound) is at most this
    min_signal_accuracy: float  # adaptive: weaker screening signals make acceptance need two passes
    block_on_severity: Severity | None  # a step marked `error` at this severity or above blocks acceptance
    revise_on_step_error: bool  # a version with any step marked `error` needs revision, even if accepted

    @property
    def base_overlap(self) -> int:
        """Reviewers every version gets before any extra is asked for: 1 when allocation is adaptive."""
        return 1 if self.allocation == "adaptive" else self.overlap


@dataclass(frozen=True, slots=True)
class ReviewVote:
    reviewer: str
    verdict: str  # accept | edit | regenerate | flag_question
    scores: dict[str, int]
    comments: dict[str, str] = field(default_factory=dict)
    steps: tuple[StepMark, ...] = ()

    @property
    def error_marks(self) -> list[StepMark]:
        return [m for m in self.steps if m.is_error]


@dataclass(frozen=True, slots=True)
class Feedback:
    """What the reviewers said, merged: drives guided regeneration."""

    failing: dict[str, list[int]]  # dimension -> every reviewer's score, for dimensions someone failed
    comments: list[tuple[str, str, str]]  # (reviewer, dimension or "general", text)
    verdicts: dict[str, int]
    #: (reviewer, mark) for every step a reviewer marked `error`, by step number then reviewer order
    step_marks: list[tuple[str, StepMark]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ConsensusDecision:
    outcome: Outcome
    reason: str
    feedback: Feedback | None = None
    reviews_needed: int = 0  # for pending: how many more


def passes(rubric: Rubric, vote: ReviewVote) -> bool:
    """One review passes when its verdict is accept and every dimension meets its threshold."""
    return vote.verdict == "accept" and not rubric.failing_dimensions(vote.scores)


def merge_feedback(rubric: Rubric, votes: list[ReviewVote]) -> Feedback:
    failing: dict[str, list[int]] = {}
    for dim in rubric.dimensions:
        scores = [v.scores[dim.name] for v in votes if dim.name in v.scores]
        if scores and min(scores) < dim.threshold:
            failing[dim.name] = scores
    comments = [(v.reviewer, dim, text.strip()) for v in votes for dim, text in sorted(v.comments.items())
                if text and text.strip()]
    verdicts: dict[str, int] = {}
    for v in votes:
        verdicts[v.verdict] = verdicts.get(v.verdict, 0) + 1
    order = {v.reviewer: i for i, v in enumerate(votes)}
    marks = sorted(((v.reviewer, m) for v in votes for m in v.error_marks), key=lambda rm: (rm[1].step, order[rm[0]]))
    return Feedback(failing=failing, comments=comments, verdicts=verdicts, step_marks=marks)


def apply_step_marks(policy: Policy, votes: list[ReviewVote], decision: ConsensusDecision,
                     feedback: Feedback) -> ConsensusDecision:
    """Consensus respects steps: once the reviews a decision needed are in, a step marked `error` at
    `block_on_severity` or above blocks acceptance whatever the scores, and (with `revise_on_step_error`)
    any step marked `error` sends the version back even when a reviewer accepted it (rather than asking
    one more reviewer, or an adjudicator, to settle a disagreement). A decision still waiting for the
    reviews already asked for, and a flagged question, are left as they are."""
    waiting = decision.outcome is Outcome.PENDING and decision.feedback is None
    if waiting or decision.outcome in (Outcome.FLAGGED, Outcome.NEEDS_REVISION):
        return decision
    marked = [(v.reviewer, m) for v in votes for m in v.error_marks]
    if not marked:
        return decision
    blocking = [(who, m) for who, m in marked if m in blocking_marks([m], policy.block_on_severity)]
    if blocking:
        who, m = blocking[0]
        return ConsensusDecision(Outcome.NEEDS_REVISION, f"step {m.step} marked {m.severity} ({m.category}) by {who}: "
                                 f"acceptance blocked ({decision.reason})", feedback)
    if policy.revise_on_step_error:
        steps = sorted({m.step for _, m in marked})
        return ConsensusDecision(Outcome.NEEDS_REVISION, f"step{'s' if len(steps) > 1 else ''} "
                                 f"{', '.join(map(str, steps))} marked as an error ({decision.reason})", feedback)
    return decision


def decide(rubric: Rubric, policy: Policy, votes: list[ReviewVote], *, extra_requested: int = 0) -> ConsensusDecision:
    """The consensus outcome for one version under a fixed overlap (adaptive allocation decides in
    `allocation.decide_adaptive`). `extra_requested`: extra reviewers already asked for."""
    decision = _decide_on_scores(rubric, policy, votes, extra_requested=extra_requested)
    return apply_step_marks(policy, votes, decision, decision.feedback or merge_feedback(rubric, votes))


def _decide_on_scores(rubric: Rubric, policy: Policy, votes: list[ReviewVote], *,
                      extra_requested: int) -> ConsensusDecision:
    needed = policy.base_overlap + extra_requested
    feedback = merge_feedback(rubric, votes)
    if any(v.verdict == "flag_question" for v in votes):
        who = ", ".join(v.reviewer for v in votes if v.verdict == "flag_question")
        return ConsensusDecision(Outcome.FLAGGED, f"question flagged as flawed by {who}", feedback)
    if len(votes) < needed:
        return ConsensusDecision(Outcome.PENDING, f"{len(votes)} of {needed} reviews in", reviews_needed=needed - len(votes))

    passing = [v for v in votes if passes(rubric, v)]
    n, p = len(votes), len(passing)
    if policy.rule is Rule.ALL_ACCEPT:
        if p == n:
            return ConsensusDecision(Outcome.ACCEPTED, f"all {n} reviewers accept with every score at threshold")
        if p == 0:
            return ConsensusDecision(Outcome.NEEDS_REVISION, f"none of {n} reviewers accept", feedback)
        return _disagree(policy, f"{p} of {n} reviewers accept", feedback, extra_requested)
    if policy.rule is Rule.MAJORITY:
        if 2 * p > n:
            return ConsensusDecision(Outcome.ACCEPTED, f"{p} of {n} reviewers accept (majority)")
        if 2 * p < n:
            return ConsensusDecision(Outcome.NEEDS_REVISION, f"only {p} of {n} reviewers accept", feedback)
        return _disagree(policy, f"a tie: {p} of {n} accept", feedback, extra_requested)
    # mean score
    if any(v.verdict == "regenerate" for v in votes) and p == 0:
        return ConsensusDecision(Outcome.NEEDS_REVISION, "reviewers asked for regeneration", feedback)
    short = [d.name for d in rubric.dimensions
             if mean(v.scores[d.name] for v in votes) < min(d.threshold, policy.mean_threshold)]
    if not short and not any(v.verdict == "regenerate" for v in votes):
        return ConsensusDecision(Outcome.ACCEPTED, "mean scores meet the thresholds")
    if short and p == 0:
        return ConsensusDecision(Outcome.NEEDS_REVISION, f"mean below threshold on {', '.join(short)}", feedback)
    return _disagree(policy, "mean scores and verdicts point different ways", feedback, extra_requested)


def _disagree(policy: Policy, reason: str, feedback: Feedback, extra_requested: int) -> ConsensusDecision:
    if policy.settle is Settle.EXTRA_REVIEWER and extra_requested < policy.max_extra_reviewers:
        return ConsensusDecision(Outcome.PENDING, f"{reason}: one more reviewer settles it", feedback, reviews_needed=1)
    return ConsensusDecision(Outcome.DISAGREEMENT, f"{reason}: an adjudicator settles it", feedback)


def strike_outcome(strikes_after: int, policy: Policy) -> bool:
    """True when this failed round exhausts the strikes (the item is escalated)."""
    return strikes_after >= policy.max_strikes
