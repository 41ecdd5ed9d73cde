"""The simulator learns steps (issue #13): seeded wrong steps, reviewers who find them with their own
sensitivity and mark them through the real review path, and targeted vs blind regeneration."""

from __future__ import annotations

import json
import random

import pytest

from clinreason.domain.rubric import default_rubric
from clinreason.stages.simulate import (
    DEFAULT_REVIEWERS,
    STEP_DIMENSION,
    StepModel,
    _World,
    database_name,
    run_simulation,
)
from clinreason.store import db as dbm
from clinreason.store import items as item_store
from clinreason.store import projects, readmodels
from clinreason.store import rationales as rationale_store


def _world(seed: int = 1, **model) -> _World:
    return _World(default_rubric(), random.Random(seed), 0.8, StepModel(**model))


def _defective(world: _World, n: int) -> list:
    out = []
    while len(out) < n:
        truth = world.draft()
        if truth.wrong:
            out.append(truth)
    return out


def test_drafts_seed_wrong_steps_that_set_the_true_correctness():
    world = _world()
    drafts = [world.draft() for _ in range(500)]
    defective = [d for d in drafts if d.wrong]
    assert 0.3 < len(defective) / len(drafts) < 0.5  # 40 % of drafts are defective
    for d in drafts:
        assert 4 <= d.n_steps <= 7 and set(d.wrong) <= set(range(1, d.n_steps + 1))
        assert d.scores[STEP_DIMENSION] == 5 - len(d.wrong)
        assert world.good(d) is (not d.wrong and not world.rubric.failing_dimensions(d.scores))
    assert {len(d.wrong) for d in defective} == {1, 2, 3}
    assert {c for d in defective for c, _ in d.wrong.values()} <= set(world.rubric.step_error_names)


def _within(measured: float, p: float, n: int) -> bool:
    """Within four binomial standard deviations of the stated rate."""
    return abs(measured - p) <= 4 * (p * (1 - p) / n) ** 0.5 + 1e-9


@pytest.mark.parametrize("index", range(len(DEFAULT_REVIEWERS)), ids=[r.name for r in DEFAULT_REVIEWERS])
def test_reviewers_find_wrong_steps_at_their_stated_accuracy(index):
    who = DEFAULT_REVIEWERS[index]
    world = _world(seed=index)
    wrong = wrong_marked = correct = correct_marked = 0
    for truth in _defective(world, 400):  # a few hundred defective versions, ~670 wrong steps
        body = world.review(who, truth)
        assert [m["step"] for m in body["steps"]] == list(range(1, truth.n_steps + 1))  # every step judged
        errors = {m["step"] for m in body["steps"] if m["verdict"] == "error"}
        wrong += len(truth.wrong)
        wrong_marked += len(errors & set(truth.wrong))
        correct += truth.n_steps - len(truth.wrong)
        correct_marked += len(errors - set(truth.wrong))
        if not (who.slip and body["verdict"] == "accept"):  # a careless coin-toss accept lifts every score
            assert body["scores"][STEP_DIMENSION] == max(1, 5 - len(errors))  # the score follows what was found
    assert wrong > 500 and correct > 1200
    assert _within(wrong_marked / wrong, who.sensitivity, wrong), (wrong_marked / wrong, who.sensitivity)
    assert _within(1 - correct_marked / correct, who.specificity, correct), (1 - correct_marked / correct,
                                                                             who.specificity)


def test_targeted_regeneration_fixes_marked_steps_and_keeps_the_rest():
    world = _world(seed=3)  # p_fix 0.8, p_break 0.1
    fixed = tried = broken = falsely_marked = 0
    for truth in _defective(world, 600):
        marked = {min(truth.wrong)} | ({1} if 1 not in truth.wrong else set())  # one wrong step, maybe a sound one
        new = world.regenerate(truth, marked)
        for k in range(1, truth.n_steps + 1):
            if k not in marked:
                assert new.steps[k - 1] == truth.steps[k - 1]  # kept word for word
                assert (k in new.wrong) is (k in truth.wrong)  # an unmarked wrong step stays wrong
            else:
                assert new.steps[k - 1] != truth.steps[k - 1]
        k = min(truth.wrong)
        tried += 1
        fixed += k not in new.wrong
        if 1 not in truth.wrong:
            falsely_marked += 1
            broken += 1 in new.wrong
        assert new.scores[STEP_DIMENSION] == 5 - len(new.wrong)
    assert fixed / tried == pytest.approx(0.8, abs=0.05)
    assert broken / falsely_marked == pytest.approx(0.1, abs=0.04)


def test_blind_regeneration_rewrites_every_step_and_ignores_the_marks():
    world = _world(seed=4, regeneration="blind")  # p_fix_blind 0.5, p_break 0.1
    wrong = fixed = correct = broken = 0
    for truth in _defective(world, 600):
        new = world.regenerate(truth, set(truth.wrong))  # the marks are there; blind does not read them
        assert all(a != b for a, b in zip(truth.steps, new.steps, strict=True))
        wrong += len(truth.wrong)
        fixed += len(set(truth.wrong) - set(new.wrong))
        correct += truth.n_steps - len(truth.wrong)
        broken += len(set(new.wrong) - set(truth.wrong))
    assert fixed / wrong == pytest.approx(0.5, abs=0.04)
    assert broken / correct == pytest.approx(0.1, abs=0.02)


def test_step_model_rejects_what_it_cannot_simulate():
    with pytest.raises(ValueError, match="regeneration"):
        StepModel(regeneration="partial")
    with pytest.raises(ValueError, match="p_break"):
        StepModel(p_break=1.5)


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    """fixed-1 on the same 300 seeded items, targeted and blind (the default probabilities)."""
    folder = tmp_path_factory.mktemp("steps")
    return folder, {mode: run_simulation(policy="fixed-1", n_items=300, seed=7, workdir=folder,
                                         steps=StepModel(regeneration=mode))
                    for mode in ("targeted", "blind")}


def test_targeted_regeneration_needs_fewer_rounds_per_accepted_item_than_blind(both):
    _, runs = both
    t, b = runs["targeted"].to_dict(), runs["blind"].to_dict()
    assert t["steps"]["seeded_wrong_steps"] == b["steps"]["seeded_wrong_steps"] > 0  # the same first drafts
    assert t["rounds_per_accepted"] < b["rounds_per_accepted"]
    assert t["all_rounds_per_accepted"] < 0.9 * b["all_rounds_per_accepted"]
    assert t["reviews_per_accepted"] < 0.9 * b["reviews_per_accepted"]
    assert t["residual_defect_rate"] <= b["residual_defect_rate"]
    for d in (t, b):
        assert d["accepted"] + d["excluded"] == 300
        assert d["rounds_per_accepted"] >= 1 and d["all_rounds_per_accepted"] >= d["rounds_per_accepted"] * 0.99


def test_the_stored_reviews_carry_the_step_marks(both):
    folder, runs = both
    r = runs["targeted"]
    d = r.to_dict()
    assert d["steps"]["reviews_with_step_marks"] == d["reviews"] > 0
    # measured from the stored reviews against the truth: the stated accuracy, pooled over reviewers
    tallies = r.step_tallies.values()
    seen = sum(t.wrong_seen for t in tallies)
    expected = sum(t.wrong_seen * t.sensitivity for t in tallies) / seen
    assert seen > 150 and d["steps"]["sensitivity"] == pytest.approx(expected, abs=0.06)
    correct = sum(t.correct_seen for t in tallies)
    expected_spec = sum(t.correct_seen * t.specificity for t in tallies) / correct
    assert d["steps"]["specificity"] == pytest.approx(expected_spec, abs=0.01)
    engine = dbm.make_engine(str(folder / database_name("fixed-1", 7)))
    try:
        with engine.connect() as conn:
            errors = 0
            pid = projects.require_project(conn, name="simulation")["id"]
            for item in item_store.project_items(conn, project_id=pid)[:100]:
                steps_of = {v.id: len(v.steps) for v in rationale_store.versions_of(conn, item_id=item.id)}
                for review in readmodels.item_reviews(conn, item_id=item.id):
                    assert [m.step for m in review.marks] == list(range(1, steps_of[review.rationale_id] + 1))
                    errors += sum(m.is_error for m in review.marks)
                    for m in review.marks:
                        if m.is_error:
                            assert m.category and m.severity and m.note
            assert errors > 0
    finally:
        engine.dispose()


def test_same_seed_same_result_in_blind_mode(tmp_path):
    model = StepModel(regeneration="blind", p_fix_blind=0.4, p_break=0.2)
    a = run_simulation(policy="fixed-1", n_items=30, seed=11, workdir=tmp_path / "a", steps=model)
    b = run_simulation(policy="fixed-1", n_items=30, seed=11, workdir=tmp_path / "b", steps=model)
    assert json.dumps(a.to_dict(), sort_keys=True) == json.dumps(b.to_dict(), sort_keys=True)
    assert a.to_dict()["steps"]["regeneration"] == "blind" and a.to_dict()["steps"]["p_break"] == 0.2


def test_cli_takes_the_regeneration_mode_and_its_probabilities():
    from typer.testing import CliRunner

    from clinreason.cli import app

    out = CliRunner().invoke(app, ["simulate", "--policy", "fixed-1", "--items", "20", "--seed", "1", "--json",
                                   "--regeneration", "blind", "--p-fix-blind", "0.6", "--p-break", "0.05"])
    assert out.exit_code == 0, out.output
    d = json.loads(out.output)
    assert {"rounds_per_accepted", "all_rounds_per_accepted", "reviews_per_accepted"} <= d.keys()
    assert d["steps"]["regeneration"] == "blind" and d["steps"]["p_fix_blind"] == 0.6
    assert d["steps"]["p_break"] == 0.05 and d["steps"]["p_fix"] == 0.8
    bad = CliRunner().invoke(app, ["simulate", "--items", "5", "--regeneration", "sometimes"])
    assert bad.exit_code == 2
    bad = CliRunner().invoke(app, ["simulate", "--items", "5", "--p-fix", "1.2"])
    assert bad.exit_code == 2
