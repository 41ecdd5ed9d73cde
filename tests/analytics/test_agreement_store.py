"""Agreement and reviewer/process statistics computed from the database (SQLite and PostgreSQL) equal the
reference libraries run on the same reviews."""

from __future__ import annotations

import math
import statistics
from collections import Counter, defaultdict

import numpy as np
import pytest

from analytics import reviewdata
from clinreason.analytics.agreement import agreement_report
from clinreason.analytics.stats import project_stats

krippendorff = pytest.importorskip("krippendorff")
sk_metrics = pytest.importorskip("sklearn.metrics")
inter_rater = pytest.importorskip("statsmodels.stats.inter_rater")

TOL = 1e-9


@pytest.fixture
def built(engine, project):
    return reviewdata.build(engine, project["id"], n_items=60, seed=5)


@pytest.fixture
def report(engine, project, built):
    with engine.connect() as conn:
        return agreement_report(conn, project_id=project["id"], resamples=200, min_overlap=5)


def test_alpha_per_dimension_equals_the_krippendorff_package_on_the_same_reviews(built, report):
    assert set(report["dimensions"]) == set(reviewdata.DIMS)
    for dim in reviewdata.DIMS:
        _, grid = reviewdata.matrix(built, dim)
        block = report["dimensions"][dim]
        for level in ("ordinal", "interval"):
            expected = krippendorff.alpha(reliability_data=grid, level_of_measurement=level,
                                          value_domain=[1, 2, 3, 4, 5])
            assert block[f"alpha_{level}"] == pytest.approx(expected, abs=TOL)
        pairable = sum(1 for col in np.array(grid).T if np.sum(~np.isnan(col)) >= 2)
        assert block["units"] == pairable
        lo, hi = block["ci95"]
        assert lo <= block["alpha_ordinal"] <= hi


def test_overall_alpha_is_on_the_sum_of_scores(built, report):
    by_unit = defaultdict(dict)
    for r in built.reviews:
        if len(r["scores"]) == len(reviewdata.DIMS):
            by_unit[r["rationale_id"]][r["reviewer"]] = sum(r["scores"].values())
    raters = sorted({r["reviewer"] for r in built.reviews})
    units = sorted(by_unit)
    grid = [[by_unit[u].get(who, math.nan) for u in units] for who in raters]
    expected = krippendorff.alpha(reliability_data=grid, level_of_measurement="interval")
    assert report["overall"]["alpha_interval"] == pytest.approx(expected, abs=TOL)


def test_verdict_fleiss_kappa_and_percent_agreement_equal_the_references(built, report):
    cats = ["accept", "edit", "regenerate", "flag_question"]
    per_unit = defaultdict(list)
    for r in built.reviews:
        per_unit[r["rationale_id"]].append(cats.index(r["verdict"]))
    sizes = Counter(len(v) for v in per_unit.values())
    modal = max(sizes, key=lambda n: (sizes[n], -n))
    table = [np.bincount(v, minlength=4) for v in per_unit.values() if len(v) == modal]
    verdict = report["verdict"]
    assert verdict["raters_per_unit"] == modal and verdict["fleiss_units"] == len(table)
    assert verdict["fleiss_kappa"] == pytest.approx(inter_rater.fleiss_kappa(np.array(table)), abs=TOL)
    shares = [sum(c * (c - 1) for c in np.bincount(v, minlength=4)) / (len(v) * (len(v) - 1))
              for v in per_unit.values()]
    assert verdict["percent_agreement"] == pytest.approx(float(np.mean(shares)), abs=TOL)
    assert verdict["units"] == len(per_unit)


def test_pairwise_weighted_kappa_equals_scikit_learn(engine, project, built, report):
    from clinreason.analytics.scan import project_salt, pseudonym

    with engine.connect() as conn:
        salt = project_salt(conn, project["id"])
    names = {pseudonym(salt, name): name for name in built.reviewer_ids}
    assert report["pairs"], "with 60 items and four reviewers, some pairs share enough versions"
    checked = 0
    for pair in report["pairs"]:
        a_name, b_name = (names[x] for x in pair["raters"])
        for dim, block in pair["dimensions"].items():
            mine = {r["rationale_id"]: r["scores"].get(dim) for r in built.reviews if r["reviewer"] == a_name}
            theirs = {r["rationale_id"]: r["scores"].get(dim) for r in built.reviews if r["reviewer"] == b_name}
            shared = sorted(u for u in set(mine) & set(theirs) if mine[u] is not None and theirs[u] is not None)
            a, b = [mine[u] for u in shared], [theirs[u] for u in shared]
            expected = sk_metrics.cohen_kappa_score(a, b, labels=[1, 2, 3, 4, 5], weights="quadratic")
            assert block["kappa_quadratic"] == pytest.approx(expected, abs=TOL)
            assert block["kappa_linear"] == pytest.approx(
                sk_metrics.cohen_kappa_score(a, b, labels=[1, 2, 3, 4, 5], weights="linear"), abs=TOL)
            assert block["units"] == len(shared)
            checked += 1
    assert checked >= 5


def test_report_is_deterministic_and_reviewers_are_anonymised(engine, project, built, report):
    with engine.connect() as conn:
        again = agreement_report(conn, project_id=project["id"], resamples=200, min_overlap=5)
    assert again == report
    text = repr(report)
    for name in built.reviewer_ids:
        assert name not in text
    assert all(r.startswith("R-") and len(r) == 10 for p in report["pairs"] for r in p["raters"])


def test_reviewer_statistics(engine, project, built):
    with engine.connect() as conn:
        stats = project_stats(conn, project_id=project["id"])
    rows = {r["username"]: r for r in stats["reviewers"]}
    for name in ("alice", "bob", "carol", "dave"):
        mine = [r for r in built.reviews if r["reviewer"] == name]
        row = rows[name]
        assert row["reviews"] == len(mine)
        assert row["median_seconds"] == pytest.approx(statistics.median(r["seconds_spent"] for r in mine))
        assert row["acceptance_rate"] == pytest.approx(sum(r["verdict"] == "accept" for r in mine) / len(mine),
                                                       abs=1e-6)
    # leniency sums to ~zero across reviewers weighted by shared units on two-reviewer versions only
    alice = rows["alice"]
    by_unit = defaultdict(dict)
    for r in built.reviews:
        by_unit[r["rationale_id"]][r["reviewer"]] = float(np.mean(list(r["scores"].values())))
    diffs = [u["alice"] - np.mean([m for who, m in u.items() if who != "alice"])
             for u in by_unit.values() if "alice" in u and len(u) > 1]
    assert alice["leniency"] == pytest.approx(float(np.mean(diffs)), abs=1e-6)
    assert alice["shared_units"] == len(diffs)


def test_process_statistics(engine, project, built):
    with engine.connect() as conn:
        stats = project_stats(conn, project_id=project["id"])["project"]
    accepted = built.accepted
    assert stats["accepted"] == len(accepted)
    rounds = Counter(len({r["rationale_id"] for r in built.reviews if r["item_id"] == i}) for i in accepted)
    assert stats["rounds"]["histogram"] == {str(k): v for k, v in sorted(rounds.items())}
    assert sum(stats["accepted_as"].values()) == len(accepted)
    adjudicated = sum(1 for i in accepted if built.decisions[i]["kind"] == "adjudication")
    assert stats["accepted_as"]["adjudication"] == adjudicated
    origin = {v["id"]: v["origin"] for vs in built.versions.values() for v in vs}
    edited = sum(1 for i in accepted if built.decisions[i]["kind"] == "consensus"
                 and origin[built.decisions[i]["rationale_id"]] == "edited")
    assert stats["accepted_as"]["edited"] == edited
    minutes = sum(r["seconds_spent"] for r in built.reviews) / 60
    assert stats["expert_minutes_per_accepted"] == pytest.approx(minutes / len(accepted), abs=1e-4)
    assert sum(v["items"] for v in stats["by_specialty"].values()) == len(built.item_ids)
    assert set(stats["by_source"]) == {"medqa", "cmexam"}
    assert stats["llm"]["tokens"]["prompt"] > 0


def test_empty_project_reports_nothing_rather_than_failing(engine, project):
    with engine.connect() as conn:
        report = agreement_report(conn, project_id=project["id"], resamples=50)
        stats = project_stats(conn, project_id=project["id"])
    assert report["dimensions"]["correctness"] == {**report["dimensions"]["correctness"], "alpha_ordinal": None,
                                                   "units": 0}
    assert report["verdict"]["fleiss_kappa"] is None
    assert stats["project"]["accepted"] == 0 and stats["reviewers"] == []
