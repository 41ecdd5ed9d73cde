"""Reliability of the witnesses: the Dawid–Skene fit over reviews and screening signals that adaptive
allocation decides with and the dashboard reports, and reviewers' results on calibration items.

A fit stands until the project's reviews grow by a tenth (at least 50). Each process keeps its last fit in
memory, and `keep_fit` stores it (`evidence_fits`, migration 0014) so that the next process — the next
`clinreason stats`, another web worker's dashboard — starts from it instead of reading every vote again. A
stored fit is used only if it was made with the project's current rubric and decodes; otherwise the next
fit replaces it."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from clinreason.analytics.kept import rubric_key
from clinreason.domain.allocation import EvidenceModel, Rates, ScreeningSignals, borderline, leniency_offsets, says_pass
from clinreason.domain.consensus import ReviewVote, passes
from clinreason.domain.reliability import estimate
from clinreason.domain.rubric import rubric_from_dict
from clinreason.store import calibration as probes
from clinreason.store import db as dbm
from clinreason.store import decisions as decision_store
from clinreason.store import evidencefits, projects
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
    rubric_key: str | None = None  # the rubric it was fitted with (None: not known, never stored)
    stored: bool = False  # whether evidence_fits holds it already

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
    return _fit(conn, project_id, projects.latest_rubric(conn, project_id=project_id))


def _fit(conn: Connection, project_id: int, rubric_body: dict[str, Any]) -> EvidenceModel:
    rubric = rubric_from_dict(rubric_body)
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
    or one counted inside a transaction that then rolled back, moves the next refit by that one review.

    A process with no fit of its own that still stands takes the stored one (`keep_fit`), carried forward the
    same way, when it was made with the current rubric."""
    key = _cache_key(conn.engine, project_id)
    cached = _EVIDENCE_CACHE.get(key)
    if cached is not None:
        _carry(conn, project_id, cached)
        if cached.covers(cached.count):
            return cached.model
    found = _stored_fit(conn, project_id)
    if found is not None and (cached is None or found.fitted_at >= cached.fitted_at):
        _EVIDENCE_CACHE[key] = found
        return found.model
    tally = review_store.project_review_tally(conn, project_id=project_id)
    count = tally.count
    if cached is not None and cached.covers(count):
        cached.count, cached.newest, cached.at_newest = count, tally.newest, tally.at_newest
        return cached.model
    rubric_body = projects.latest_rubric(conn, project_id=project_id)
    model = _fit(conn, project_id, rubric_body)
    _EVIDENCE_CACHE[key] = _Fitted(fitted_at=count, model=model, count=count, newest=tally.newest,
                                   at_newest=tally.at_newest, rubric_key=rubric_key(rubric_body))
    return model


def keep_fit(engine: Engine, project_id: int) -> bool:
    """Store this process's fit of the project for the processes after it, in a short write transaction of its
    own, unless it is stored already or the stored fit was made from more reviews; True if written. The fit
    is a cache of what the votes say, so a database that refuses the write (read-only, or busy past its
    timeout) changes nothing but the next process's wait."""
    fitted = _EVIDENCE_CACHE.get(_cache_key(engine, project_id))
    if fitted is None or fitted.stored or fitted.rubric_key is None:
        return False
    row = evidencefits.StoredFit(rubric_key=fitted.rubric_key, fitted_at=fitted.fitted_at, counted=fitted.count,
                                 newest=fitted.newest, at_newest=fitted.at_newest, body=encode_model(fitted.model))
    try:
        with dbm.transaction(engine) as conn:
            if not evidencefits.available(conn):
                return False
            there = evidencefits.load(conn, project_id=project_id)
            unusable = there is not None and (there.rubric_key != row.rubric_key or decode_model(there.body) is None)
            written = evidencefits.save(conn, project_id=project_id, fit=row, replace=unusable)
    except SQLAlchemyError:
        return False
    fitted.stored = True
    return written


def _cache_key(engine: Engine, project_id: int) -> tuple[str, int]:
    return engine.url.render_as_string(hide_password=True), project_id


def _carry(conn: Connection, project_id: int, fitted: _Fitted) -> None:
    """Bring `fitted`'s review count up to date from the reviews stamped at or after the newest it counted (all
    of them when it counted none: `newest` is None only then)."""
    tally = review_store.project_review_tally(conn, project_id=project_id, since=fitted.newest)
    fitted.count += tally.count - fitted.at_newest  # those at exactly `newest` were counted already
    if tally.newest is not None:
        fitted.newest, fitted.at_newest = tally.newest, tally.at_newest


def _stored_fit(conn: Connection, project_id: int) -> _Fitted | None:
    """The stored fit, its count carried forward, if it decodes, was made with the current rubric and still
    stands; None otherwise (or where the schema has no evidence_fits yet)."""
    if not evidencefits.available(conn):
        return None
    row = evidencefits.load(conn, project_id=project_id)
    if row is None:
        return None
    model = decode_model(row.body)
    if model is None or row.rubric_key != rubric_key(projects.latest_rubric(conn, project_id=project_id)):
        return None
    fitted = _Fitted(fitted_at=row.fitted_at, model=model, count=row.counted, newest=row.newest,
                     at_newest=row.at_newest, rubric_key=row.rubric_key, stored=True)
    _carry(conn, project_id, fitted)
    return fitted if fitted.covers(fitted.count) else None


def encode_model(model: EvidenceModel) -> str:
    """The fitted numbers as JSON (floats written as repr: they read back bit for bit)."""
    return json.dumps({"prevalence": float(model.prevalence),
                       "offsets": {name: float(v) for name, v in model.offsets.items()},
                       "sources": {name: [float(r.sensitivity), float(r.specificity)]
                                   for name, r in model.sources.items()}},
                      sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _probability(value: Any) -> bool:
    return isinstance(value, float) and 0.0 <= value <= 1.0


def decode_model(body: str) -> EvidenceModel | None:
    """What `encode_model` wrote, or None for a body that is not that (it is then refitted, not trusted)."""
    try:
        raw = json.loads(body)
    except (ValueError, TypeError):
        return None
    if not isinstance(raw, dict) or set(raw) != {"prevalence", "offsets", "sources"}:
        return None
    prevalence, offsets, sources = raw["prevalence"], raw["offsets"], raw["sources"]
    if not _probability(prevalence) or not isinstance(offsets, dict) or not isinstance(sources, dict):
        return None
    if not all(isinstance(v, float | int) and not isinstance(v, bool) and math.isfinite(v) for v in offsets.values()):
        return None
    if not all(isinstance(r, list) and len(r) == 2 and all(_probability(x) for x in r) for r in sources.values()):
        return None
    return EvidenceModel(prevalence=prevalence, offsets={k: float(v) for k, v in offsets.items()},
                         sources={k: Rates(r[0], r[1]) for k, r in sources.items()})


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
