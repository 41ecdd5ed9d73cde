"""Reviewer reliability from the reviews already collected: a Dawid–Skene model on binary verdicts
(pass / fail), fitted by EM. Each reviewer has a sensitivity (says pass when the version is good) and a
specificity (says fail when it is bad); each version a posterior probability of being good. Adjudicator
decisions and calibration items, when known, pin a version's truth and anchor the estimates.

Array arithmetic (NumPy) over every vote: a million votes fit in well under a second."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True, slots=True)
class ReviewerReliability:
    reviewer: str
    sensitivity: float  # P(says pass | good)
    specificity: float  # P(says fail | bad)
    reviews: int

    @property
    def accuracy(self) -> float:
        """Balanced accuracy: the mean of sensitivity and specificity."""
        return (self.sensitivity + self.specificity) / 2


@dataclass
class ReliabilityModel:
    reviewers: dict[str, ReviewerReliability]
    prevalence: float  # share of good versions
    posterior: dict[str, float] = field(default_factory=dict)  # version -> P(good)
    iterations: int = 0

    def reliability(self, reviewer: str, *, prior: float = 0.8) -> float:
        found = self.reviewers.get(reviewer)
        return found.accuracy if found else prior


def estimate(labels: list[tuple[str, str, bool]], *, known: dict[str, bool] | None = None, max_iter: int = 200,
             tol: float = 1e-6, prior_strength: float = 2.0, prior_accuracy: float = 0.8) -> ReliabilityModel:
    """Fit Dawid–Skene on (version, reviewer, said_pass) triples.

    `known`: versions whose truth is settled (adjudicated, calibration items) — held fixed.
    `prior_strength` pseudo-counts at `prior_accuracy` keep a reviewer with few reviews from being
    estimated at 0 or 1 (a Beta prior on sensitivity and specificity).

    Vectorised with NumPy, and bit for bit the plain loop it replaced: every sum is taken in the loop's order
    (versions in order of first appearance, each one's votes in label order) by `np.bincount`, which adds its
    weights one after another, and each version's likelihood is the same chain of products (its votes in
    order)."""
    known = known or {}
    version_index: dict[str, int] = {}
    reviewer_index: dict[str, int] = {}
    vi = np.empty(len(labels), dtype=np.int64)
    ri = np.empty(len(labels), dtype=np.int64)
    said = np.empty(len(labels), dtype=bool)
    for n, (version, reviewer, s) in enumerate(labels):
        vi[n] = version_index.setdefault(version, len(version_index))
        ri[n] = reviewer_index.setdefault(reviewer, len(reviewer_index))
        said[n] = s
    order = np.argsort(vi, kind="stable")  # by version (first appearance), each version's votes in label order
    vi, ri, said = vi[order], ri[order], said[order]
    n_versions, n_reviewers = len(version_index), len(reviewer_index)
    versions = list(version_index)
    # initialise posteriors with the majority vote (ties: 0.5), known truths fixed
    per_version = np.bincount(vi, minlength=n_versions)
    post = np.bincount(vi, weights=said, minlength=n_versions) / np.maximum(per_version, 1)
    is_known = np.array([v in known for v in versions], dtype=bool)
    if is_known.any():
        post[is_known] = [1.0 if known[v] else 0.0 for v, k in zip(versions, is_known, strict=True) if k]
    free = ~is_known
    # each vote's place among its version's votes: the likelihoods multiply column by column
    starts = np.concatenate([[0], np.cumsum(per_version)[:-1]]) if n_versions else np.zeros(0, dtype=np.int64)
    place = np.arange(len(vi)) - starts[vi]
    width = int(place.max()) + 1 if len(place) else 0
    columns = [(at, vi[at]) for at in (np.flatnonzero(place == k) for k in range(width))]
    sens = np.zeros(n_reviewers)
    spec = np.zeros(n_reviewers)
    prevalence = 0.5
    a = prior_strength * prior_accuracy
    b = prior_strength * (1 - prior_accuracy)
    iterations = 0
    for iterations in range(1, max_iter + 1):
        # M step
        g = post[vi]
        pos = np.bincount(ri, weights=g, minlength=n_reviewers)
        neg = np.bincount(ri, weights=1 - g, minlength=n_reviewers)
        tp = np.bincount(ri[said], weights=g[said], minlength=n_reviewers)
        tn = np.bincount(ri[~said], weights=(1 - g)[~said], minlength=n_reviewers)
        sens = (tp + a) / (pos + a + b)
        spec = (tn + a) / (neg + a + b)
        if n_versions:
            total = float(np.bincount(np.zeros(n_versions, dtype=np.int64), weights=post)[0])  # in order, as sum()
            prevalence = min(max(total / n_versions, 1e-6), 1 - 1e-6)
        else:
            prevalence = 0.5
        # E step
        good_factor = np.where(said, sens[ri], 1 - sens[ri])
        bad_factor = np.where(said, 1 - spec[ri], spec[ri])
        like_good = np.full(n_versions, prevalence)
        like_bad = np.full(n_versions, 1 - prevalence)
        for at, whose in columns:  # each version's k-th vote, k = 0, 1, …: the loop's order of products
            like_good[whose] *= good_factor[at]
            like_bad[whose] *= bad_factor[at]
        evidence = like_good + like_bad
        with np.errstate(divide="ignore", invalid="ignore"):
            new = np.where(evidence > 0, like_good / evidence, 0.5)
        change = float(np.abs(new[free] - post[free]).max()) if free.any() else 0.0
        post[free] = new[free]
        if change < tol:
            break
    counts = np.bincount(ri, minlength=n_reviewers)
    names = sorted(reviewer_index)
    return ReliabilityModel(
        reviewers={r: ReviewerReliability(r, float(sens[reviewer_index[r]]), float(spec[reviewer_index[r]]),
                                          int(counts[reviewer_index[r]])) for r in names},
        prevalence=prevalence, posterior=dict(zip(versions, post.tolist(), strict=True)), iterations=iterations)
