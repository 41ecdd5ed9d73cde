"""Consensus rules, exhaustively over small review sets, for every rule and settle mode."""

import itertools

import pytest

from clinreason.config import ReviewConfig
from clinreason.domain.consensus import Outcome, ReviewVote, Rule, Settle, decide, passes
from clinreason.domain.lifecycle import ItemState, replay
from clinreason.domain.rubric import default_rubric

R = default_rubric()
GOOD = {"correctness": 5, "reasoning": 4, "sufficiency": 4, "terminology": 5, "clinical_value": 4}
WEAK = {**GOOD, "correctness": 4}  # correctness must be 5
POOR = {n: 2 for n in GOOD}


def policy(**settings):
    """A project's review policy with these settings (the rest: the project defaults)."""
    return ReviewConfig(**settings).policy()


def vote(name, verdict="accept", scores=GOOD, **comments):
    return ReviewVote(name, verdict, scores, comments)


def test_pass_rule_is_the_design_default():
    assert passes(R, vote("a"))
    assert not passes(R, vote("a", scores=WEAK))  # correctness 4 < 5
    assert not passes(R, vote("a", scores={**GOOD, "reasoning": 3}))
    assert not passes(R, vote("a", "regenerate"))


def test_pending_until_k_reviews():
    d = decide(R, policy(overlap=2), [vote("a")])
    assert d.outcome is Outcome.PENDING and d.reviews_needed == 1
    assert decide(R, policy(overlap=3), [vote("a"), vote("b")]).reviews_needed == 1


def test_all_accept_default():
    p = policy()
    assert decide(R, p, [vote("a"), vote("b")]).outcome is Outcome.ACCEPTED
    d = decide(R, p, [vote("a", "regenerate", POOR, reasoning="skips B"), vote("b", "regenerate", WEAK)])
    assert d.outcome is Outcome.NEEDS_REVISION
    assert set(d.feedback.failing) == {"correctness", "reasoning", "sufficiency", "terminology", "clinical_value"}
    assert d.feedback.failing["correctness"] == [2, 4]
    assert ("a", "reasoning", "skips B") in d.feedback.comments
    assert decide(R, p, [vote("a"), vote("b", "regenerate", POOR)]).outcome is Outcome.DISAGREEMENT


def test_flag_wins_even_before_k():
    d = decide(R, policy(overlap=3), [vote("a", "flag_question", POOR)])
    assert d.outcome is Outcome.FLAGGED and "a" in d.reason


def test_majority_and_ties():
    p = policy(overlap=3, rule=Rule.MAJORITY)
    assert decide(R, p, [vote("a"), vote("b"), vote("c", "regenerate", POOR)]).outcome is Outcome.ACCEPTED
    assert decide(R, p, [vote("a"), vote("b", "regenerate", POOR), vote("c", "regenerate", POOR)]).outcome \
        is Outcome.NEEDS_REVISION
    tie = policy(overlap=2, rule=Rule.MAJORITY)
    assert decide(R, tie, [vote("a"), vote("b", "regenerate", POOR)]).outcome is Outcome.DISAGREEMENT


def test_mean_score_rule():
    p = policy(rule=Rule.MEAN_SCORE, mean_threshold=4.0)
    hi = {n: 5 for n in GOOD}
    assert decide(R, p, [vote("a", scores=hi), vote("b", scores={**hi, "reasoning": 3})]).outcome is Outcome.ACCEPTED
    assert decide(R, p, [vote("a", "regenerate", POOR), vote("b", "regenerate", POOR)]).outcome is Outcome.NEEDS_REVISION


def test_extra_reviewer_settles_before_an_adjudicator():
    p = policy(settle=Settle.EXTRA_REVIEWER, max_extra_reviewers=1)
    split = [vote("a"), vote("b", "regenerate", POOR)]
    first = decide(R, p, split)
    assert first.outcome is Outcome.PENDING and first.reviews_needed == 1
    assert decide(R, p, split + [vote("c")], extra_requested=1).outcome is Outcome.DISAGREEMENT  # all_accept: still split
    assert decide(R, policy(settle=Settle.EXTRA_REVIEWER, rule=Rule.MAJORITY), split + [vote("c")],
                  extra_requested=1).outcome is Outcome.ACCEPTED


@pytest.mark.parametrize("rule", list(Rule))
def test_every_combination_of_two_reviews_has_an_outcome_and_accept_needs_a_pass(rule):
    kinds = [("accept", GOOD), ("accept", WEAK), ("regenerate", POOR), ("edit", WEAK), ("flag_question", GOOD)]
    for (v1, s1), (v2, s2) in itertools.product(kinds, repeat=2):
        d = decide(R, policy(rule=rule), [vote("a", v1, s1), vote("b", v2, s2)])
        assert d.outcome in set(Outcome) - {Outcome.PENDING}
        if d.outcome is Outcome.ACCEPTED and rule is not Rule.MEAN_SCORE:
            assert passes(R, vote("a", v1, s1)) or passes(R, vote("b", v2, s2))
        if d.outcome is Outcome.ACCEPTED:
            assert "regenerate" not in (v1, v2)
        if "flag_question" in (v1, v2):
            assert d.outcome is Outcome.FLAGGED


def test_event_log_replays_and_gaps_are_caught():
    log = [{"kind": "item.imported"},
           {"kind": "item.transition", "before": {"state": "imported"}, "after": {"state": "generating"}},
           {"kind": "item.strike"},
           {"kind": "item.transition", "before": {"state": "generating"}, "after": {"state": "screening"}}]
    assert replay(log) is ItemState.SCREENING
    with pytest.raises(ValueError, match="jumps"):
        replay(log + [{"kind": "item.transition", "before": {"state": "in_review"}, "after": {"state": "accepted"}}])
