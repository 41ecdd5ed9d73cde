"""The fast read paths of issue #16 give what the previous computation gave on the same data: the scan
(every count, histogram, pair table, reviewer tally), and so the agreement and reviewer reports, on a random
project with a fixed seed (SQLite and PostgreSQL). The pairwise κ intervals are the one figure drawn in a new
way (a Poisson bootstrap of each pair's tables): they are checked against the previous multinomial intervals
loosely, and for being reproducible."""

from __future__ import annotations

import numpy as np
import pytest

from analytics import legacy_scan, reviewdata
from clinreason.analytics import irr
from clinreason.analytics import scan as scan_module
from clinreason.analytics.agreement import _pairs, report_from_scan
from clinreason.analytics.scan import scan_reviews
from clinreason.analytics.stats import reviewer_table
from clinreason.store.projects import latest_rubric

REVIEWERS = [(f"rev{i}", "reviewer", [reviewdata.SPECIALTIES[i % 3]]) for i in range(7)] + [
    ("judge", "adjudicator", ["cardiology"])]


@pytest.fixture
def scans(engine, project):
    reviewdata.build(engine, project["id"], n_items=300, seed=16, reviewers=REVIEWERS, step_judge_rate=0.6)
    with engine.connect() as conn:
        body = latest_rubric(conn, project_id=project["id"])
        return (legacy_scan.scan_reviews(conn, project_id=project["id"], rubric_body=body),
                scan_reviews(conn, project_id=project["id"], rubric_body=body))


def test_the_scan_counts_exactly_what_the_previous_one_counted(scans):
    old, new = scans
    assert new.dimensions == old.dimensions and new.scale == old.scale
    assert new.dim_patterns == old.dim_patterns
    assert new.overall_patterns == old.overall_patterns and new.verdict_patterns == old.verdict_patterns
    assert new.step_units == old.step_units and sum(new.step_units.values()) > 0
    assert np.array_equal(new.histograms, old.histograms) and new.ratings == old.ratings
    assert list(new.pair_confusion) == list(old.pair_confusion) and len(new.pair_confusion) > 10
    for pair, table in old.pair_confusion.items():
        assert np.array_equal(new.pair_confusion[pair], table)
    # the float sums are now exact sums rounded once (the previous scan added floats one by one)
    assert new.total_reviews == old.total_reviews and new.total_seconds == pytest.approx(old.total_seconds, rel=1e-12)
    assert list(new.reviewers) == list(old.reviewers)
    for rid, tally in old.reviewers.items():  # reviews, accepts, seconds, leniency sums, adjudications
        mine = dict(vars(new.reviewers[rid]))
        assert sum(mine.pop("leniency").values()) == mine["leniency_units"]
        assert mine.pop("leniency_sum") == pytest.approx(tally.leniency_sum, rel=1e-12, abs=1e-12)
        theirs = {k: v for k, v in vars(tally).items() if k not in ("leniency", "leniency_sum")}
        assert mine == theirs, rid
    assert reviewer_table(new) == reviewer_table(old)


def test_a_scan_folded_in_small_parts_counts_the_same_in_the_same_order(engine, project, scans, monkeypatch):
    """The scan bounds its memory by counting the versions UNIT_CHUNK at a time and reviewer pairs
    PAIR_CHUNK at a time; with both tiny (many chunks) the result is the
    same, down to the order of the patterns' keys (which the float sums downstream follow)."""
    _, whole = scans
    monkeypatch.setattr(scan_module, "UNIT_CHUNK", 7)
    monkeypatch.setattr(scan_module, "PAIR_CHUNK", 13)
    with engine.connect() as conn:
        parts = scan_reviews(conn, project_id=project["id"], rubric_body=latest_rubric(conn, project_id=project["id"]))
    for name in ("overall_patterns", "verdict_patterns", "step_units"):
        assert list(getattr(parts, name).items()) == list(getattr(whole, name).items()), name
    assert [list(c.items()) for c in parts.dim_patterns] == [list(c.items()) for c in whole.dim_patterns]
    assert np.array_equal(parts.histograms, whole.histograms) and parts.ratings == whole.ratings
    assert list(parts.pair_confusion) == list(whole.pair_confusion)
    assert all(np.array_equal(parts.pair_confusion[p], t) for p, t in whole.pair_confusion.items())
    assert report_from_scan(parts, resamples=300) == report_from_scan(whole, resamples=300)


def _old_pairs(scan, *, min_overlap, resamples, seed):
    """The previous per-pair computation (multinomial bootstrap, one fresh stream per pair)."""
    out, v = [], len(scan.scale)
    quadratic = lambda w: irr.kappa_from_confusion(w.reshape(w.shape[:-1] + (v, v)), "quadratic")  # noqa: E731
    for (ra, rb), conf in sorted(scan.pair_confusion.items()):
        shared = int(conf.sum(axis=(1, 2)).max()) if conf.size else 0
        if shared < min_overlap:
            continue
        flat = conf.reshape(len(scan.dimensions), v * v).astype(np.float64)
        cis = irr.bootstrap_ci_rows(flat, quadratic, resamples=resamples, seed=seed)
        quad = np.atleast_1d(irr.kappa_from_confusion(conf, "quadratic"))
        lin = np.atleast_1d(irr.kappa_from_confusion(conf, "linear"))
        out.append({"units": shared, "dimensions": {
            name: {"kappa_quadratic": irr.finite_or_none(float(quad[d])), "kappa_linear": irr.finite_or_none(float(lin[d])),
                   "ci95": cis[d], "units": int(conf[d].sum())} for d, name in enumerate(scan.dimensions)}})
    return out


def test_the_agreement_report_is_the_previous_one_but_for_the_pair_intervals(scans):
    old, new = scans
    before = report_from_scan(old, resamples=300, min_overlap=5)
    after = report_from_scan(new, resamples=300, min_overlap=5)
    pairs_before, pairs_after = before.pop("pairs"), after.pop("pairs")
    assert after == before  # α, κ, percent agreement and their bootstrap intervals: identical
    reference = _old_pairs(old, min_overlap=5, resamples=200, seed=20250509)
    assert len(pairs_after) == len(reference) == len(pairs_before) > 10
    wide = 0
    for mine, ref in zip(pairs_after, reference):
        assert mine["units"] == ref["units"]
        for name, block in mine["dimensions"].items():
            want = ref["dimensions"][name]
            assert block["kappa_quadratic"] == want["kappa_quadratic"]
            assert block["kappa_linear"] == want["kappa_linear"]
            assert block["units"] == want["units"]
            if want["ci95"] is None or block["kappa_quadratic"] is None:
                continue
            lo, hi = block["ci95"]
            assert lo <= hi
            # same meaning: the new interval covers much of the previous one and is about as wide
            width = want["ci95"][1] - want["ci95"][0]
            overlap = min(hi, want["ci95"][1]) - max(lo, want["ci95"][0])
            assert overlap >= 0.5 * width - 1e-9
            wide += (hi - lo) > 1.6 * width + 0.05
    assert wide <= len(pairs_after)  # no systematic widening
    assert _pairs(new, min_overlap=5, resamples=200, seed=7) == _pairs(new, min_overlap=5, resamples=200, seed=7)


def test_the_evidence_fit_is_the_previous_one(engine, project, scans):
    from clinreason.analytics import reliability
    from clinreason.domain.allocation import EvidenceModel, Rates, borderline, leniency_offsets, says_pass
    from clinreason.domain.reliability import estimate
    from clinreason.domain.rubric import rubric_from_dict
    from clinreason.store import calibration as probes
    from clinreason.store import decisions as decision_store
    from clinreason.store import reviews as review_store

    pid = project["id"]
    with engine.connect() as conn:  # the previous fit_evidence, as it was
        rubric = rubric_from_dict(latest_rubric(conn, project_id=pid))
        by_version: dict = {}
        for rationale_id, vote in review_store.project_votes(conn, project_id=pid):
            if vote.verdict != "flag_question" and not borderline(rubric, vote):
                by_version.setdefault(rationale_id, []).append(vote)
        offsets = leniency_offsets(by_version)
        labels = [(rid, v.reviewer, says_pass(rubric, v, offsets.get(v.reviewer, 0.0)))
                  for rid, votes in by_version.items() for v in votes]
        known = {d.rationale_id: True for d in decision_store.project_decisions(conn, project_id=pid,
                                                                                kind="adjudication")
                 if d.rationale_id is not None}
        known.update(probes.truths(conn, project_id=pid))
        labels += reliability._signal_labels(conn, pid, {rid for rid, _, _ in labels})
        fit = estimate(labels, known=known, max_iter=50, tol=1e-4)
        before = EvidenceModel(prevalence=fit.prevalence, offsets=offsets,
                               sources={r: Rates(rel.sensitivity, rel.specificity) for r, rel in fit.reviewers.items()})
        after = reliability.fit_evidence(conn, pid)
    assert after == before and after.sources
