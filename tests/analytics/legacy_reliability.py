"""The Dawid–Skene fit as it was before issue #16 vectorised it (a plain loop over every vote), kept as the
reference `domain.reliability.estimate` must equal bit for bit."""

from __future__ import annotations

from collections import defaultdict

from clinreason.domain.reliability import ReliabilityModel, ReviewerReliability


def estimate(labels: list[tuple[str, str, bool]], *, known: dict[str, bool] | None = None, max_iter: int = 200,
             tol: float = 1e-6, prior_strength: float = 2.0, prior_accuracy: float = 0.8) -> ReliabilityModel:
    """Fit Dawid–Skene on (version, reviewer, said_pass) triples.

    `known`: versions whose truth is settled (adjudicated, calibration items) — held fixed.
    `prior_strength` pseudo-counts at `prior_accuracy` keep a reviewer with few reviews from being
    estimated at 0 or 1 (a Beta prior on sensitivity and specificity)."""
    known = known or {}
    by_version: dict[str, list[tuple[str, bool]]] = defaultdict(list)
    reviewers: set[str] = set()
    for version, reviewer, said in labels:
        by_version[version].append((reviewer, said))
        reviewers.add(reviewer)
    # initialise posteriors with the majority vote (ties: 0.5), known truths fixed
    post: dict[str, float] = {}
    for version, votes in by_version.items():
        post[version] = (1.0 if known[version] else 0.0) if version in known else \
            sum(s for _, s in votes) / len(votes)
    sens: dict[str, float] = {}
    spec: dict[str, float] = {}
    prevalence = 0.5
    a = prior_strength * prior_accuracy
    b = prior_strength * (1 - prior_accuracy)
    iterations = 0
    for iterations in range(1, max_iter + 1):
        # M step
        tp: dict[str, float] = defaultdict(float)
        pos: dict[str, float] = defaultdict(float)
        tn: dict[str, float] = defaultdict(float)
        neg: dict[str, float] = defaultdict(float)
        for version, votes in by_version.items():
            g = post[version]
            for reviewer, said in votes:
                pos[reviewer] += g
                neg[reviewer] += 1 - g
                if said:
                    tp[reviewer] += g
                else:
                    tn[reviewer] += 1 - g
        for r in reviewers:
            sens[r] = (tp[r] + a) / (pos[r] + a + b)
            spec[r] = (tn[r] + a) / (neg[r] + a + b)
        prevalence = min(max(sum(post.values()) / len(post), 1e-6), 1 - 1e-6) if post else 0.5
        # E step
        change = 0.0
        for version, votes in by_version.items():
            if version in known:
                continue
            like_good, like_bad = prevalence, 1 - prevalence
            for reviewer, said in votes:
                like_good *= sens[reviewer] if said else 1 - sens[reviewer]
                like_bad *= (1 - spec[reviewer]) if said else spec[reviewer]
            new = like_good / (like_good + like_bad) if like_good + like_bad > 0 else 0.5
            change = max(change, abs(new - post[version]))
            post[version] = new
        if change < tol:
            break
    counts: dict[str, int] = defaultdict(int)
    for _, reviewer, _ in labels:
        counts[reviewer] += 1
    return ReliabilityModel(
        reviewers={r: ReviewerReliability(r, sens[r], spec[r], counts[r]) for r in sorted(reviewers)},
        prevalence=prevalence, posterior=post, iterations=iterations)
