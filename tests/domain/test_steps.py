"""Step-level verification, pure parts: validating marks (every failure names its field), the taxonomy,
how consensus respects marks, aligning two versions' steps, and `marked_steps_revised`."""

import pytest

from clinreason.config import ReviewConfig
from clinreason.domain.checks import check_marked_steps_revised
from clinreason.domain.consensus import Outcome, ReviewVote, decide
from clinreason.domain.rubric import RubricError, default_rubric, rubric_from_dict
from clinreason.domain.steps import (
    DEFAULT_STEP_ERRORS,
    Severity,
    StepMark,
    StepMarkError,
    StepVerdict,
    change_summary,
    step_changes,
    validate_marks,
)

R = default_rubric()
CATS = R.step_error_names
GOOD = {"correctness": 5, "reasoning": 4, "sufficiency": 4, "terminology": 5, "clinical_value": 4}
POOR = {n: 2 for n in GOOD}


def err(step, category="factual_error", severity="major", note="wrong", **extra):
    return {"step": step, "verdict": "error", "category": category, "severity": severity, "note": note, **extra}


def test_default_taxonomy_has_the_eight_categories_in_both_languages():
    assert CATS == ["factual_error", "unsafe", "outdated_guideline", "logical_leap", "missing_finding",
                    "misread_stem", "terminology", "irrelevant"]
    for c in R.step_errors:
        assert c.description("en") and c.description("zh") and c.description("en") != c.description("zh")
    assert R.to_dict()["step_errors"] == DEFAULT_STEP_ERRORS


def test_a_projects_own_taxonomy_and_its_errors():
    own = rubric_from_dict({**R.to_dict(), "step_errors": {"dosing": "wrong dose", "lab": {"zh": "化验解读错误"}}})
    assert own.step_error_names == ["dosing", "lab"]
    assert own.step_error("lab").description("en") == "化验解读错误"  # falls back to the language it has
    with pytest.raises(RubricError, match=r"rubric.step_errors.Bad Name"):
        rubric_from_dict({**R.to_dict(), "step_errors": {"Bad Name": "x"}})
    with pytest.raises(RubricError, match=r"rubric.step_errors.dosing"):
        rubric_from_dict({**R.to_dict(), "step_errors": {"dosing": 3}})


def test_valid_marks_are_cleaned_and_sorted():
    marks = validate_marks([err(3, "unsafe", "critical", "  beta-blocker contraindicated ", correction="Use X."),
                            {"step": 1, "verdict": "ok"}], n_steps=4, categories=CATS)
    assert [m.step for m in marks] == [1, 3]
    assert marks[0] == StepMark(1, StepVerdict.OK)
    assert marks[1].note == "beta-blocker contraindicated" and marks[1].severity is Severity.CRITICAL
    assert marks[1].correction == "Use X."
    assert StepMark.from_dict(marks[1].to_dict()) == marks[1]
    assert validate_marks(None, n_steps=3, categories=CATS) == []


@pytest.mark.parametrize("raw, field, words", [
    ([{"step": 5, "verdict": "ok"}], "steps[0].step", "out of range"),
    ([{"step": 0, "verdict": "ok"}], "steps[0].step", "out of range"),
    ([{"step": "2", "verdict": "ok"}], "steps[0].step", "expected a step number"),
    ([{"step": True, "verdict": "ok"}], "steps[0].step", "expected a step number"),
    ([{"step": 1, "verdict": "ok"}, {"step": 1, "verdict": "ok"}], "steps[1].step", "marked twice"),
    ([{"step": 1, "verdict": "maybe"}], "steps[0].verdict", "'ok' or 'error'"),
    ([err(1, category="made_up")], "steps[0].category", "unknown category"),
    ([err(1, category=None)], "steps[0].category", "required"),
    ([err(1, severity="fatal")], "steps[0].severity", "minor, major or critical"),
    ([err(1, severity=None)], "steps[0].severity", "required"),
    ([err(1, note="   ")], "steps[0].note", "required"),
    ([{"step": 1, "verdict": "error", "category": "unsafe", "severity": "major"}], "steps[0].note", "required"),
    ([err(1, correction=5)], "steps[0].correction", "expected text"),
    ([{"step": 1, "verdict": "ok", "severity": "major"}], "steps[0].severity", "only a step marked 'error'"),
    ([{"step": 1, "verdict": "ok", "colour": "red"}], "steps[0].colour", "not a field"),
    (["step 1"], "steps[0]", "expected an object"),
    ({"step": 1}, "steps", "expected a list"),
])
def test_a_bad_mark_names_its_field(raw, field, words):
    with pytest.raises(StepMarkError) as exc:
        validate_marks(raw, n_steps=4, categories=CATS)
    assert exc.value.field == field and words in exc.value.message


def vote(name, verdict="accept", scores=GOOD, steps=()):
    return ReviewVote(name, verdict, scores, {}, tuple(StepMark.from_dict(s) for s in steps))


def policy(**settings):
    return ReviewConfig(**settings).policy()


def test_a_marked_step_sends_back_a_version_both_reviewers_accepted():
    votes = [vote("a", steps=[err(2)]), vote("b", steps=[{"step": 2, "verdict": "ok"}])]
    d = decide(R, policy(), votes)
    assert d.outcome is Outcome.NEEDS_REVISION and "step" in d.reason
    assert [(who, m.step) for who, m in d.feedback.step_marks] == [("a", 2)]
    # configurable: without revise_on_step_error a minor/major mark does not override the scores
    assert decide(R, policy(revise_on_step_error=False), votes).outcome is Outcome.ACCEPTED


def test_a_critical_mark_blocks_acceptance_whatever_the_scores():
    votes = [vote("a", steps=[err(3, "unsafe", "critical")]), vote("b")]
    for settings in ({}, {"revise_on_step_error": False}, {"rule": "majority"}, {"rule": "mean_score"}):
        d = decide(R, policy(**settings), votes)
        assert d.outcome is Outcome.NEEDS_REVISION, settings
        assert "critical" in d.reason and "blocked" in d.reason
    # block_on_severity moves the bar: major blocks at "major", nothing blocks at "none"
    major = [vote("a", steps=[err(1, severity="major")]), vote("b")]
    assert decide(R, policy(block_on_severity="major", revise_on_step_error=False), major).outcome is Outcome.NEEDS_REVISION
    assert decide(R, policy(block_on_severity="none", revise_on_step_error=False), votes).outcome is Outcome.ACCEPTED


def test_marks_wait_for_the_reviews_and_leave_flags_alone():
    assert decide(R, policy(overlap=2), [vote("a", steps=[err(1, severity="critical")])]).outcome is Outcome.PENDING
    flagged = decide(R, policy(), [vote("a", "flag_question", steps=[err(1)]), vote("b")])
    assert flagged.outcome is Outcome.FLAGGED
    # ok marks only: nothing changes
    ok = [vote("a", steps=[{"step": 1, "verdict": "ok"}]), vote("b")]
    assert decide(R, policy(), ok).outcome is Outcome.ACCEPTED
    # a disagreement with a marked step needs revision rather than an adjudicator
    split = [vote("a", steps=[err(2)]), vote("b", "regenerate", POOR)]
    assert decide(R, policy(), split).outcome is Outcome.NEEDS_REVISION


def test_step_changes_align_kept_changed_added_and_removed_steps():
    old = ["Identify the findings.", "Beta-blockers first.", "Rule out B.", "Answer A."]
    new = ["Identify the findings", "Calcium-channel blockers first.", "Rule out B.", "Rule out C.", "Answer A."]
    changes = step_changes(old, new)
    assert [(c.kind, c.old, c.new) for c in changes] == [
        ("unchanged", 1, 1), ("changed", 2, 2), ("unchanged", 3, 3), ("added", None, 4), ("unchanged", 4, 5)]
    assert change_summary(changes) == {"changed": [2], "added": [4], "removed": []}
    assert change_summary(step_changes(old, old[:2])) == {"changed": [], "added": [], "removed": [3, 4]}


def test_marked_steps_revised_fails_on_a_marked_step_that_reappears_unchanged():
    marked = [(2, "Beta-blockers first.")]
    kept = check_marked_steps_revised(marked, ["Identify.", "beta-blockers  first"], parent_version=1)
    assert not kept.passed and "step 2: Beta-blockers first." in kept.detail and "v1" in kept.detail
    fixed = check_marked_steps_revised(marked, ["Identify.", "Calcium-channel blockers first."], parent_version=1)
    assert fixed.passed
