"""How many experts should review a version: fixed overlap, or adaptive.

Adaptive: one reviewer to start with; a second (and a third) only when the reviews so far disagree with
the screening signals or with each other, are borderline, or come from a reviewer whose estimated
reliability is low. A positive review of a draft the screening doubts is such a disagreement, and so is
a negative review of a draft the screening trusted; a negative review that confirms doubtful signals
sends the draft back at once (a wrongly rejected draft costs a regeneration round, never a defect in
the dataset). A random audit share is always double-reviewed so agreement can still be measured.
Pure functions; the stages apply them.
"""

from __future__ import annotations

from dataclasses import dataclass

from clinreason.domain.consensus import ReviewVote, passes
from clinreason.domain.rubric import Rubric


@dataclass(frozen=True, slots=True)
class AllocationPolicy:
    mode: str = "fixed"  # fixed | adaptive
    overlap: int = 2  # fixed mode: reviewers per version
    audit_share: float = 0.1  # adaptive: share of versions always double-reviewed
    max_reviewers: int = 3
    min_reliability: float = 0.75  # a review from a less reliable reviewer is confirmed by a second


@dataclass(frozen=True, slots=True)
class ScreeningSignals:
    checks_passed: bool  # every automatic check passed (blocking or not)
    judge_pass: bool | None = None  # the LLM judge's pre-scores all met their thresholds (None: no judge)
    flagged: bool = False  # sent to experts with a warning

    @property
    def confident(self) -> bool:
        return self.checks_passed and self.judge_pass is not False and not self.flagged

    @property
    def predicts_pass(self) -> bool:
        return self.confident


def initial_reviewers(policy: AllocationPolicy, signals: ScreeningSignals, audit_draw: float) -> tuple[int, str]:
    """Reviewers a version starts with. `audit_draw` is a uniform [0, 1) number (seeded by the caller)."""
    if policy.mode != "adaptive":
        return policy.overlap, "fixed overlap"
    if audit_draw < policy.audit_share:
        return 2, "random audit: double review"
    return 1, "one reviewer first" + ("" if signals.confident else " (screening doubts it: a pass gets a second)")


def _borderline(rubric: Rubric, vote: ReviewVote) -> bool:
    """The verdict and the scores point different ways: an accept with a dimension below its threshold,
    or a rejection with every dimension at or above it."""
    failing = rubric.failing_dimensions(vote.scores)
    return (vote.verdict == "accept" and bool(failing)) or (vote.verdict != "accept" and not failing)


def more_reviewers(policy: AllocationPolicy, rubric: Rubric, votes: list[ReviewVote], signals: ScreeningSignals,
                   reliability: dict[str, float], required: int) -> tuple[int, str]:
    """How many more reviewers this version needs now that `votes` are in (0: decide now)."""
    if policy.mode != "adaptive" or len(votes) < required or len(votes) >= policy.max_reviewers:
        return 0, ""
    if any(v.verdict == "flag_question" for v in votes):
        return 0, ""
    verdicts = {passes(rubric, v) for v in votes}
    if len(verdicts) > 1:
        return 1, "reviewers disagree"
    if len(votes) >= 2:
        if all(passes(rubric, v) for v in votes) and all(
                reliability.get(v.reviewer, 1.0) < policy.min_reliability for v in votes):
            return 1, "every acceptance so far comes from a reviewer of low estimated reliability"
        return 0, ""
    vote = votes[0]
    ok = passes(rubric, vote)
    if reliability.get(vote.reviewer, 1.0) < policy.min_reliability:
        return 1, f"{vote.reviewer}'s estimated reliability is below {policy.min_reliability:.2f}"
    if ok and not signals.predicts_pass:
        return 1, "a positive review of a draft the screening doubts"
    if not ok and signals.predicts_pass:
        return 1, "a negative review of a draft the screening trusted"
    if _borderline(rubric, vote):
        return 1, "the review is borderline: its verdict and its scores disagree"
    return 0, ""
