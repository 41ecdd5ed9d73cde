"""Adaptive allocation on hand-built evidence: when one review is enough, when another is asked for and
why, when a version is sent back, when an adjudicator settles it."""

from __future__ import annotations

import pytest

from clinreason.config import ReviewConfig
from clinreason.domain.allocation import (
    CHECKS_SOURCE,
    JUDGE_SOURCE,
    AllocationPolicy,
    EvidenceModel,
    Rates,
    ScreeningSignals,
    decide_adaptive,
    initial_reviewers,
    leniency_offsets,
    p_sound,
    says_pass,
)
from clinreason.domain.consensus import Outcome, ReviewVote
from clinreason.domain.rubric import default_rubric

R = default_rubric()
GOOD = {"correctness": 5, "reasoning": 5, "sufficiency": 4, "terminology": 4, "clinical_value": 4}
POOR = {"correctness": 2, "reasoning": 2, "sufficiency": 3, "terminology": 4, "clinical_value": 3}
POLICY = AllocationPolicy.from_policy(ReviewConfig(allocation="adaptive", accept_risk=0.01, revise_risk=0.1, max_reviewers=3,
                                                   min_reliability=0.75).policy())
CONFIDENT = ScreeningSignals(checks_passed=True, judge_pass=True)
DOUBTED = ScreeningSignals(checks_passed=False, judge_pass=False)
STRONG = EvidenceModel(prevalence=0.6, sources={
    CHECKS_SOURCE: Rates(0.9, 0.9), JUDGE_SOURCE: Rates(0.9, 0.9),
    "careful": Rates(0.9, 0.97), "careful2": Rates(0.9, 0.97), "careless": Rates(0.55, 0.6)})


def accept(who="careful"):
    return ReviewVote(who, "accept", GOOD)


def reject(who="careful"):
    return ReviewVote(who, "regenerate", POOR, {"general": "wrong"})


def test_one_reliable_acceptance_of_a_confident_draft_is_enough():
    d = decide_adaptive(R, POLICY, [accept()], CONFIDENT, STRONG, required=1)
    assert d.outcome is Outcome.ACCEPTED and "P(sound)" in d.reason


def test_a_negative_review_of_a_trusted_draft_calls_a_second_reviewer():
    d = decide_adaptive(R, POLICY, [reject()], CONFIDENT, STRONG, required=1)
    assert d.outcome is Outcome.PENDING and d.reviews_needed == 1 and d.feedback is not None
    assert "screening trusted" in d.reason


def test_a_negative_review_confirming_doubtful_signals_sends_the_draft_back_at_once():
    d = decide_adaptive(R, POLICY, [reject()], DOUBTED, STRONG, required=1)
    assert d.outcome is Outcome.NEEDS_REVISION and d.feedback.failing


def test_a_positive_review_of_a_doubted_draft_needs_confirmation():
    d = decide_adaptive(R, POLICY, [accept()], DOUBTED, STRONG, required=1)
    assert d.outcome is Outcome.PENDING and "screening doubts" in d.reason


def test_an_unreliable_reviewer_never_accepts_alone():
    d = decide_adaptive(R, POLICY, [accept("careless")], CONFIDENT, STRONG, required=1)
    assert d.outcome is Outcome.PENDING and "careless" in d.reason and "reliability" in d.reason
    d = decide_adaptive(R, POLICY, [accept("careless"), accept()], CONFIDENT, STRONG, required=1)
    assert d.outcome is Outcome.ACCEPTED


def test_a_borderline_review_counts_as_no_evidence():
    mixed = ReviewVote("careful", "accept", POOR)  # accepts, but scores below threshold
    assert p_sound(STRONG, R, CONFIDENT, [mixed]) == p_sound(STRONG, R, CONFIDENT, [])
    d = decide_adaptive(R, POLICY, [mixed], CONFIDENT, STRONG, required=1)
    assert d.outcome is Outcome.PENDING and "borderline" in d.reason


def test_still_uncertain_at_the_reviewer_cap_goes_to_an_adjudicator():
    votes = [accept(), reject("careful2"), accept("careless")]
    mixed = ScreeningSignals(checks_passed=True, judge_pass=False)
    d = decide_adaptive(R, POLICY, votes, mixed, STRONG, required=1)
    assert d.outcome is Outcome.DISAGREEMENT and "3 reviews" in d.reason


def test_audit_and_requested_reviews_are_waited_for():
    d = decide_adaptive(R, POLICY, [accept()], CONFIDENT, STRONG, required=2)
    assert d.outcome is Outcome.PENDING and d.feedback is None and d.reviews_needed == 1


def test_a_flagged_question_is_escalated_whatever_the_evidence():
    d = decide_adaptive(R, POLICY, [ReviewVote("careful", "flag_question", GOOD)], CONFIDENT, STRONG, required=1)
    assert d.outcome is Outcome.FLAGGED


def test_weak_signals_buy_less_trust_so_a_single_review_is_not_enough():
    weak = EvidenceModel(prevalence=0.6, sources={CHECKS_SOURCE: Rates(0.6, 0.6), JUDGE_SOURCE: Rates(0.6, 0.6),
                                                  "careful": Rates(0.85, 0.85)})
    assert decide_adaptive(R, POLICY, [accept()], CONFIDENT, weak, required=1).outcome is Outcome.PENDING
    assert p_sound(weak, R, CONFIDENT, [accept()]) < p_sound(STRONG, R, CONFIDENT, [accept()])


def test_posterior_moves_the_right_way_with_each_witness():
    base = p_sound(STRONG, R, CONFIDENT, [])
    assert p_sound(STRONG, R, CONFIDENT, [accept()]) > base > p_sound(STRONG, R, CONFIDENT, [reject()])
    assert p_sound(STRONG, R, DOUBTED, []) < base
    # a flagged draft is a failed check, whatever the check rows said
    assert p_sound(STRONG, R, ScreeningSignals(True, True, flagged=True), []) < base


def test_audit_share_starts_two_reviewers_and_fixed_mode_its_overlap():
    assert initial_reviewers(POLICY, CONFIDENT, audit_draw=0.01)[0] == 2
    assert initial_reviewers(POLICY, CONFIDENT, audit_draw=0.99)[0] == 1
    assert initial_reviewers(AllocationPolicy.from_policy(ReviewConfig(overlap=3).policy()), CONFIDENT, 0.5)[0] == 3


def test_leniency_offsets_recover_a_harsh_and_a_lenient_reviewer_and_ignore_small_ones():
    import random

    rng = random.Random(3)
    dims = list(GOOD)
    by_version = {}
    for i in range(200):
        truth = rng.choice((3, 4, 5))
        by_version[f"v{i}"] = [
            ReviewVote(who, "accept", {d: truth + bias + rng.choice((-1, 0, 0, 1)) for d in dims})
            for who, bias in (("harsh", -1), ("lenient", 1), ("fair", 0), ("fair2", 0))]
    offsets = leniency_offsets(by_version)
    assert offsets["harsh"] == pytest.approx(-1.33 * 200 / 210, abs=0.15)  # vs the mean of the three others
    assert offsets["lenient"] == pytest.approx(1.33 * 200 / 210, abs=0.15)
    assert "fair" not in offsets and "fair2" not in offsets
    assert leniency_offsets({k: v for k, v in list(by_version.items())[:10]}) == {}  # too few shared versions


def test_a_harsh_reviewers_rejection_reads_as_a_pass_once_their_offset_is_known():
    harsh_on_sound = ReviewVote("harsh", "regenerate", {d: s - 1 for d, s in GOOD.items()})
    assert not says_pass(R, harsh_on_sound) and says_pass(R, harsh_on_sound, offset=-0.9)
    assert not says_pass(R, reject(), offset=-0.9)  # a real defect still fails
    model = EvidenceModel(prevalence=0.6, sources=STRONG.sources, offsets={"harsh": -0.9})
    assert p_sound(model, R, CONFIDENT, [harsh_on_sound]) > p_sound(STRONG, R, CONFIDENT, [])


def test_when_the_fit_says_screening_is_weak_one_pass_never_accepts_alone():
    """Reviewers tend to miss the same subtle defects; only independent signals catch those. With weak
    signals, even a reviewer the fit rates near-perfect needs a second passing review."""
    weak = EvidenceModel(prevalence=0.9, sources={CHECKS_SOURCE: Rates(0.62, 0.62), JUDGE_SOURCE: Rates(0.6, 0.6),
                                                  "careful": Rates(0.95, 0.999), "careful2": Rates(0.95, 0.999)})
    assert p_sound(weak, R, CONFIDENT, [accept()]) > 0.99  # the posterior alone would accept
    d = decide_adaptive(R, POLICY, [accept()], CONFIDENT, weak, required=1)
    assert d.outcome is Outcome.PENDING and "signals are weak" in d.reason
    assert decide_adaptive(R, POLICY, [accept(), accept("careful2")], CONFIDENT, weak,
                           required=1).outcome is Outcome.ACCEPTED
    # before any fit the guard stays off (the defaults are not evidence that screening is weak)
    assert EvidenceModel().signal_accuracy() is None
