"""The reliability estimator recovers known reviewer accuracies from simulated reviews."""

import random

from clinreason.domain.reliability import estimate

TOLERANCE = 0.06  # absolute, on sensitivity and specificity, with ~600 reviews per reviewer


def _simulate(n_versions=1500, seed=3):
    rng = random.Random(seed)
    truth_sens = {"careful": 0.95, "average": 0.85, "careless": 0.65, "harsh": 0.70}
    truth_spec = {"careful": 0.92, "average": 0.80, "careless": 0.60, "harsh": 0.97}
    labels, truth = [], {}
    names = list(truth_sens)
    for v in range(n_versions):
        good = rng.random() < 0.7
        truth[f"v{v}"] = good
        for reviewer in rng.sample(names, 2):
            p = truth_sens[reviewer] if good else 1 - truth_spec[reviewer]
            labels.append((f"v{v}", reviewer, rng.random() < p))
    return labels, truth, truth_sens, truth_spec


def test_recovers_sensitivity_and_specificity_within_tolerance():
    labels, truth, sens, spec = _simulate()
    model = estimate(labels)
    for name in sens:
        r = model.reviewers[name]
        assert abs(r.sensitivity - sens[name]) < TOLERANCE, (name, r)
        assert abs(r.specificity - spec[name]) < TOLERANCE, (name, r)
    assert abs(model.prevalence - 0.7) < 0.05
    ranked = sorted(model.reviewers.values(), key=lambda r: r.accuracy)
    assert ranked[0].reviewer == "careless" and ranked[-1].reviewer == "careful"
    correct = sum((model.posterior[v] > 0.5) == good for v, good in truth.items())
    assert correct / len(truth) > 0.85  # better than any single reviewer but the careful one alone


def test_known_truths_are_held_and_anchor_the_estimate():
    labels, truth, _, _ = _simulate(n_versions=300, seed=9)
    known = {v: g for v, g in list(truth.items())[:100]}
    model = estimate(labels, known=known)
    assert all(model.posterior[v] == (1.0 if g else 0.0) for v, g in known.items())


def test_few_reviews_stay_near_the_prior():
    model = estimate([("v1", "new", True)])
    assert 0.6 < model.reviewers["new"].sensitivity < 0.95
    assert model.reliability("nobody") == 0.8
