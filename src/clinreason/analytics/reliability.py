"""Reliability of the witnesses: the Dawid–Skene fit over reviews and screening signals that adaptive
allocation decides with and the dashboard reports, and reviewers' results on calibration items."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from clinreason.domain.allocation import EvidenceModel, Rates, ScreeningSignals, borderline, leniency_offsets, says_pass
from clinreason.domain.consensus import ReviewVote, passes
from clinreason.domain.reliability import estimate
from clinreason.domain.rubric import rubric_from_dict
from clinreason.store import calibration as probes
from clinreason.store import decisions as decision_store
from clinreason.store import projects
from clinreason.store import reviews as review_store
from clinreason.store import stats as stats_store


@dataclass
class _Fitted:
    """A fitted model and the project's review count, kept up to date from the reviews stamped since."""

    fitted_at: int  # the reviews counted when the model was fitted
    model: EvidenceModel
    count: int  # the reviews counted now
    newest: datetime | None  # the newest created_at counted
    at_newest: int  # how many of the counted reviews carry exactly that instant

    def covers(self, count: int) -> bool:
        """Whether the fit still stands at `count` reviews: fewer than a tenth (at least 50) more than it saw."""
        return self.fitted_at <= count < self.fitted_at + max(50, self.fitted_at // 10)


# (database, project) -> the last fit
_EVIDENCE_CACHE: dict[tuple[str, int], _Fitted] = {}


def _signal_labels(conn: Connection, project_id: int, rationale_ids: set[str]) -> list[tuple[str, str, bool]]:
    """The screening signals of the reviewed versions as witnesses, in the shape the estimator takes."""
    by_version = review_store.reviewed_check_rows(conn, project_id=project_id)
    return [(rid, source, said) for rid, rows in by_version.items() if rid in rationale_ids
            for source, said in ScreeningSignals.from_checks(rows).labels()]


def fit_evidence(conn: Connection, project_id: int) -> EvidenceModel:
    """Fit Dawid–Skene on every non-borderline review of the project and on the screening signals of
    the reviewed versions; versions an adjudicator accepted, and calibration versions, are known truths."""
    rubric = rubric_from_dict(projects.latest_rubric(conn, project_id=project_id))
    by_version: dict[str, list[ReviewVote]] = {}
    scores_of: dict[str, dict[str, Any]] = {}  # stored text -> the scores, decoded once (never mutated)
    skip: dict[tuple[str, str], bool] = {}  # (verdict, text) -> flag_question or borderline
    for rationale_id, reviewer, verdict, raw in stats_store.project_vote_rows(conn, project_id=project_id):
        left_out = skip.get((verdict, raw))
        if left_out is None:  # the first review with this verdict and these scores
            scores = scores_of.get(raw)
            if scores is None:
                scores = scores_of[raw] = dict(stats_store.decode_json(raw) or {})
            left_out = skip[(verdict, raw)] = verdict == "flag_question" or borderline(
                rubric, ReviewVote(reviewer, verdict, scores))
        if not left_out:
            by_version.setdefault(rationale_id, []).append(ReviewVote(reviewer, verdict, scores_of[raw]))
    if not by_version:
        return EvidenceModel()
    offsets = leniency_offsets(by_version)
    said: dict[tuple[str, str, int], bool] = {}  # (reviewer, verdict, id of the scores) -> says_pass
    labels = []
    for rid, votes in by_version.items():
        for v in votes:
            key = (v.reviewer, v.verdict, id(v.scores))
            found = said.get(key)
            if found is None:
                found = said[key] = says_pass(rubric, v, offsets.get(v.reviewer, 0.0))
            labels.append((rid, v.reviewer, found))
    known = {d.rationale_id: True for d in decision_store.project_decisions(conn, project_id=project_id,
                                                                            kind="adjudication")
             if d.rationale_id is not None}
    known.update(probes.truths(conn, project_id=project_id))
    labels += _signal_labels(conn, project_id, {rid for rid, _, _ in labels})
    fit = estimate(labels, known=known, max_iter=50, tol=1e-4)
    return EvidenceModel(prevalence=fit.prevalence, offsets=offsets,
                         sources={r: Rates(rel.sensitivity, rel.specificity) for r, rel in fit.reviewers.items()})


def evidence_model(conn: Connection, project_id: int) -> EvidenceModel:
    """The project's fitted evidence model, refitted whenever the reviews have grown by a tenth (at least
    50) since the last fit: cheap enough to call on every submission. Between fits the review count is
    carried forward from the reviews stamped at or after the newest one counted (an index range, not a count
    of every review); each refit counts them all again. Reviews are never deleted, so the carried count is
    exact for one writer; a review another process commits with an earlier stamp than one already counted,
    or one counted inside a transaction that then rolled back, moves the next refit by that one review."""
    key = (conn.engine.url.render_as_string(hide_password=True), project_id)
    cached = _EVIDENCE_CACHE.get(key)
    if cached is not None and cached.newest is not None:
        tally = review_store.project_review_tally(conn, project_id=project_id, since=cached.newest)
        cached.count += tally.count - cached.at_newest  # those at exactly `newest` were counted already
        if tally.newest is not None:
            cached.newest, cached.at_newest = tally.newest, tally.at_newest
        if cached.covers(cached.count):
            return cached.model
    tally = review_store.project_review_tally(conn, project_id=project_id)
    count = tally.count
    if cached is not None and cached.covers(count):
        cached.count, cached.newest, cached.at_newest = count, tally.newest, tally.at_newest
        return cached.model
    model = fit_evidence(conn, project_id)
    _EVIDENCE_CACHE[key] = _Fitted(fitted_at=count, model=model, count=count, newest=tally.newest,
                                   at_newest=tally.at_newest)
    return model


def calibration_results(conn: Connection, *, project_id: int) -> dict[str, dict[str, Any]]:
    """Per reviewer (username): calibration reviews, how many matched the known truth, and the misses."""
    rubric = rubric_from_dict(projects.latest_rubric(conn, project_id=project_id))
    out: dict[str, dict[str, Any]] = {}
    for name, verdict, scores, expect, item_id in probes.probe_reviews(conn, project_id=project_id):
        said_pass = passes(rubric, ReviewVote(name, verdict, scores))
        entry = out.setdefault(name, {"reviews": 0, "correct": 0, "missed": []})
        entry["reviews"] += 1
        if said_pass == (expect == "good"):
            entry["correct"] += 1
        else:
            entry["missed"].append(item_id)
    return out
