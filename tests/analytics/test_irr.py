"""The agreement statistics against the reference implementations (krippendorff, scikit-learn,
statsmodels), to 1e-9, including missing ratings and constant columns; plus properties."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clinreason.analytics import irr

krippendorff = pytest.importorskip("krippendorff")
sk_metrics = pytest.importorskip("sklearn.metrics")
inter_rater = pytest.importorskip("statsmodels.stats.inter_rater")

NAN = float("nan")
TOL = 1e-9


def reference_alpha(data, level):
    try:
        with np.errstate(all="ignore"):  # the package divides 0 by 0 when nothing varies
            value = krippendorff.alpha(reliability_data=data, level_of_measurement=level)
    except ValueError:  # "there has to be more than one value in the domain"
        return None
    return None if math.isnan(value) else float(value)


# Krippendorff (2011), "Computing Krippendorff's alpha-reliability", the 4 raters × 12 units example
KRIPPENDORFF_EXAMPLE = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, NAN, NAN, NAN],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, NAN, 3],
    [NAN, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, NAN],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, NAN],
]


@pytest.mark.parametrize("level", ["nominal", "ordinal", "interval"])
def test_alpha_matches_the_published_example_and_the_krippendorff_package(level):
    mine = irr.krippendorff_alpha(KRIPPENDORFF_EXAMPLE, level)
    assert mine == pytest.approx(reference_alpha(KRIPPENDORFF_EXAMPLE, level), abs=TOL)
    published = {"nominal": 0.743, "ordinal": 0.815, "interval": 0.849}[level]
    assert round(mine, 3) == published


@pytest.mark.parametrize("seed", range(60))
def test_alpha_matches_the_reference_with_missing_ratings(seed):
    rng = np.random.default_rng(seed)
    raters, units = int(rng.integers(2, 7)), int(rng.integers(2, 60))
    data = rng.integers(1, 6, size=(raters, units)).astype(float)
    data[rng.random((raters, units)) < rng.uniform(0, 0.6)] = NAN
    for level in ("ordinal", "interval", "nominal"):
        expected = reference_alpha(data, level)
        mine = irr.krippendorff_alpha(data, level)
        if expected is None:
            assert mine is None
        else:
            assert mine == pytest.approx(expected, abs=TOL), (level, data.tolist())


def test_alpha_with_constant_columns_is_perfect_agreement():
    # every unit rated identically by all who rated it (constant columns), values differ between units
    data = [[1, 2, 3, 5, NAN, 4], [1, 2, 3, 5, 2, 4], [NAN, 2, 3, 5, 2, NAN]]
    for level in ("ordinal", "interval"):
        assert irr.krippendorff_alpha(data, level) == pytest.approx(reference_alpha(data, level), abs=TOL)
        assert irr.krippendorff_alpha(data, level) == pytest.approx(1.0, abs=TOL)


def test_alpha_mixing_constant_and_disagreeing_columns():
    data = [[4, 4, 4, 4, 5, 1], [4, 4, 4, 4, 3, 2], [4, NAN, 4, 4, 5, NAN]]
    for level in ("ordinal", "interval", "nominal"):
        assert irr.krippendorff_alpha(data, level) == pytest.approx(reference_alpha(data, level), abs=TOL)


def test_alpha_is_undefined_when_nothing_varies_not_a_crash():
    data = [[3, 3, 3, NAN], [3, 3, NAN, 3]]
    assert reference_alpha(data, "interval") is None
    assert irr.krippendorff_alpha(data, "interval") is None
    assert irr.krippendorff_alpha(data, "ordinal") is None


def test_units_rated_once_carry_no_information():
    base = [[1, 2, 3, 4], [1, 3, 3, 5]]
    padded = [row + [NAN, NAN] for row in base]
    padded[0][-2], padded[1][-1] = 2.0, 5.0  # two units rated by one rater only
    for level in ("ordinal", "interval"):
        assert irr.krippendorff_alpha(padded, level) == pytest.approx(reference_alpha(padded, level), abs=TOL)
        assert irr.krippendorff_alpha(padded, level) == pytest.approx(irr.krippendorff_alpha(base, level), abs=TOL)


@pytest.mark.parametrize("seed", range(40))
@pytest.mark.parametrize("weighting", ["linear", "quadratic", "none"])
def test_weighted_kappa_matches_scikit_learn(seed, weighting):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 80))
    a = rng.integers(1, 6, size=n)
    b = np.clip(a + rng.integers(-1, 2, size=n), 1, 5)
    expected = sk_metrics.cohen_kappa_score(a, b, labels=[1, 2, 3, 4, 5],
                                            weights=None if weighting == "none" else weighting)
    assert irr.cohen_kappa(a, b, [1, 2, 3, 4, 5], weighting) == pytest.approx(expected, abs=TOL)


def test_weighted_kappa_uses_the_whole_scale_not_only_the_observed_values():
    a, b = [1, 2, 5, 5, 2, 1], [1, 5, 5, 2, 2, 2]  # 3 and 4 unused: positions matter
    expected = sk_metrics.cohen_kappa_score(a, b, labels=[1, 2, 3, 4, 5], weights="quadratic")
    assert irr.cohen_kappa(a, b, [1, 2, 3, 4, 5]) == pytest.approx(expected, abs=TOL)
    assert irr.cohen_kappa(a, b, [1, 2, 3, 4, 5]) != pytest.approx(
        sk_metrics.cohen_kappa_score(a, b, weights="quadratic"), abs=1e-3)


def test_kappa_with_a_constant_rater():
    a, b = [4, 4, 4, 4, 4, 4], [3, 4, 5, 4, 4, 2]
    expected = sk_metrics.cohen_kappa_score(a, b, labels=[1, 2, 3, 4, 5], weights="quadratic")
    assert irr.cohen_kappa(a, b, [1, 2, 3, 4, 5]) == pytest.approx(expected, abs=TOL)
    with warnings.catch_warnings(), np.errstate(all="ignore"):  # both constant and equal: 0/0, NaN there, None here
        warnings.simplefilter("ignore")
        assert math.isnan(sk_metrics.cohen_kappa_score([4, 4, 4], [4, 4, 4], labels=[1, 2, 3, 4, 5],
                                                       weights="quadratic"))
    assert irr.cohen_kappa([4, 4, 4], [4, 4, 4], [1, 2, 3, 4, 5]) is None


@pytest.mark.parametrize("seed", range(40))
def test_fleiss_kappa_matches_statsmodels(seed):
    rng = np.random.default_rng(seed)
    raters, units = int(rng.integers(2, 6)), int(rng.integers(3, 80))
    data = rng.choice(4, size=(units, raters), p=[0.6, 0.2, 0.15, 0.05])
    table, _ = inter_rater.aggregate_raters(data, n_cat=4)  # a category may never be used: a zero column
    assert irr.fleiss_kappa(table) == pytest.approx(inter_rater.fleiss_kappa(table, method="fleiss"), abs=TOL)


def test_fleiss_with_a_constant_category_column():
    table = [[2, 0, 0], [1, 1, 0], [0, 2, 0], [2, 0, 0], [1, 1, 0]]
    assert irr.fleiss_kappa(table) == pytest.approx(inter_rater.fleiss_kappa(table), abs=TOL)


def test_percent_agreement_is_the_share_of_agreeing_rater_pairs():
    data = [[1, 2, 3, 4, NAN], [1, 2, 4, 4, 5], [NAN, 2, 3, 1, 5]]
    # unit 1: 1 of 1 pair; unit 2: 3 of 3; unit 3: 1 of 3; unit 4: 1 of 3; unit 5: 1 of 1
    assert irr.percent_agreement(data) == pytest.approx((1 + 1 + 1 / 3 + 1 / 3 + 1) / 5, abs=TOL)
    two = [[1, 2, 3, 4], [1, 3, 3, 4]]
    assert irr.percent_agreement(two) == pytest.approx(np.mean(np.array(two[0]) == np.array(two[1])), abs=TOL)


def test_bootstrap_ci_is_deterministic_and_brackets_the_estimate():
    rng = np.random.default_rng(3)
    truth = rng.integers(1, 6, size=200)
    data = np.vstack([np.clip(truth + rng.integers(-1, 2, size=200), 1, 5) for _ in range(3)]).astype(float)
    p = irr.patterns_from_matrix(data).pairable()
    stat = lambda w: irr.alpha_from_patterns(p, "ordinal", w)  # noqa: E731
    first = irr.bootstrap_ci(p, stat, resamples=500, seed=11)
    assert first == irr.bootstrap_ci(p, stat, resamples=500, seed=11)
    lo, hi = first
    assert lo < irr.krippendorff_alpha(data, "ordinal") < hi
    assert 0.0 < hi - lo < 0.3


@settings(max_examples=150, deadline=None)
@given(
    raters=st.integers(min_value=2, max_value=6),
    units=st.lists(st.one_of(st.none(), st.integers(min_value=1, max_value=5)), min_size=2, max_size=40),
)
def test_identical_raters_have_alpha_one(raters, units):
    """Whatever the data, raters who always agree have α = 1 (when the values vary at all)."""
    rated = [u for u in units if u is not None]
    row = [NAN if u is None else float(u) for u in units]
    data = [row] * raters
    if len(set(rated)) < 2:
        assert irr.krippendorff_alpha(data, "interval") is None  # undefined, reported as such
        return
    for level in ("nominal", "ordinal", "interval"):
        assert irr.krippendorff_alpha(data, level) == pytest.approx(1.0, abs=TOL)
    assert irr.percent_agreement(data) == pytest.approx(1.0, abs=TOL)
    assert irr.cohen_kappa(rated, rated, [1, 2, 3, 4, 5]) == pytest.approx(1.0, abs=TOL)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=50).map(lambda x: x / 10), min_size=1, max_size=30))
def test_median_from_counts_equals_statistics_median(values):
    import statistics
    from collections import Counter

    from clinreason.analytics.scan import counter_median

    assert counter_median(Counter(values)) == statistics.median(values)
