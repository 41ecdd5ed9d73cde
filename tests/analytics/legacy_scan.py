"""The review scan as it was before issue #16 (one Python object per review, then per unit): kept, unchanged,
as the reference the fast `clinreason.analytics.scan` is compared with (tests/analytics/test_fast_paths.py).
The result types and the small helpers that did not change are imported from it.

One streaming pass over a project's reviews that gathers everything agreement and reviewer statistics
need, in memory that does not grow with the number of reviews (counts of patterns, of reviewer pairs, of
distinct durations).

The unit is the rationale *version* (rationales.id); the raters are the reviewers; the value is the score
a reviewer gave on one rubric dimension (and, for step agreement, the unit is one step of a version and the
value the reviewer's ok/error mark on it). Reviews arrive ordered by rationale id, so each unit is complete
when the next one starts.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Iterator, cast

import numpy as np
from sqlalchemy import Connection

from clinreason.analytics.scan import (
    VERDICTS,
    ReviewerTally,
    ReviewScan,
    project_salt,
    pseudonym,
    rubric_dimensions,
)
from clinreason.analytics.step_agreement import step_judgments
from clinreason.store import accounts
from clinreason.store import stats as stats_store
from clinreason.store.stats import RatedReview

STREAM_ROWS = stats_store.STREAM_ROWS


def _units(conn: Connection, project_id: int) -> Iterator[list[RatedReview]]:
    """The project's reviews grouped by version: they arrive ordered by rationale id."""
    unit: list[RatedReview] = []
    current = None
    for review in stats_store.rated_reviews(conn, project_id=project_id, batch=STREAM_ROWS):
        if review.rationale_id != current and unit:
            yield unit
            unit = []
        current = review.rationale_id
        unit.append(review)
    if unit:
        yield unit


def scan_reviews(conn: Connection, *, project_id: int, rubric_body: dict[str, Any]) -> ReviewScan:
    dims, scale = rubric_dimensions(rubric_body)
    k, v = len(dims), len(scale)
    index = {s: i for i, s in enumerate(scale)}
    salt = project_salt(conn, project_id)
    tallies: dict[int, ReviewerTally] = {}
    for user in sorted(accounts.list_users(conn), key=lambda u: u.id):
        tallies[user.id] = ReviewerTally(id=user.id, username=user.username, role=user.role,
                                         specialties=list(user.specialties),
                                         pseudonym=pseudonym(salt, user.username))
    dim_patterns: list[Counter[tuple[int, ...]]] = [Counter() for _ in dims]
    overall: Counter[tuple[int, ...]] = Counter()
    verdicts: Counter[tuple[int, ...]] = Counter()
    pairs: Counter[tuple[int, int, int, int, int]] = Counter()
    hist = [[0] * v for _ in dims]
    ratings = [0] * k
    overall_len = k * (v - 1) + 1
    total_reviews, total_seconds = 0, 0.0
    step_units: Counter[tuple[int, int]] = Counter()
    verdict_index = {name: i for i, name in enumerate(VERDICTS)}
    for unit in _units(conn, project_id):
        # the unit's scores as one row of scale indices per reviewer (None where a dimension is not scored)
        grid = []
        for row in unit:
            scores = row.scores
            cells = []
            for name in dims:
                value = scores.get(name)
                cells.append(index.get(value) if type(value) is int else None)
            grid.append(cells)
        for d in range(k):
            vec = [0] * v
            n = 0
            for cells in grid:
                c = cells[d]
                if c is not None:
                    vec[c] += 1
                    hist[d][c] += 1
                    n += 1
            if n:
                ratings[d] += n
                dim_patterns[d][tuple(vec)] += 1
        sums = [0] * overall_len
        complete = False
        for cells in grid:
            if None not in cells:
                sums[sum(cast(list[int], cells))] += 1
                complete = True
        if complete:
            overall[tuple(sums)] += 1
        vvec = [0] * len(VERDICTS)
        for row in unit:
            i = verdict_index.get(row.verdict)
            if i is not None:
                vvec[i] += 1
        verdicts[tuple(vvec)] += 1
        for a in range(len(unit)):
            ga = grid[a]
            for b in range(a + 1, len(unit)):
                gb = grid[b]
                ra, rb = unit[a].reviewer_id, unit[b].reviewer_id  # ordered by reviewer id: ra < rb
                for d in range(k):
                    x, y = ga[d], gb[d]
                    if x is not None and y is not None:
                        pairs[(ra, rb, d, x, y)] += 1
        step_units.update(step_judgments(row.step_verdicts for row in unit))
        n_rev, secs = _reviewer_tallies(tallies, unit, grid)
        total_reviews += n_rev
        total_seconds += secs
    confusion: dict[tuple[int, int], np.ndarray] = {}
    for (ra, rb, d, x, y), n in sorted(pairs.items()):
        if (ra, rb) not in confusion:
            confusion[(ra, rb)] = np.zeros((k, v, v), dtype=np.int64)
        confusion[(ra, rb)][d, x, y] = n
    return ReviewScan(dimensions=dims, scale=scale, dim_patterns=dim_patterns, overall_patterns=overall,
                      verdict_patterns=verdicts, pair_confusion=confusion,
                      histograms=np.array(hist, dtype=np.int64).reshape(k, v),
                      reviewers={rid: t for rid, t in tallies.items() if t.reviews}, ratings=ratings,
                      total_reviews=total_reviews, total_seconds=total_seconds, step_units=step_units)


def _reviewer_tallies(tallies: dict[int, ReviewerTally], unit: list[RatedReview], grid: list[list[int | None]]
                      ) -> tuple[int, float]:
    means = []
    for cells in grid:
        given = [c for c in cells if c is not None]
        means.append(sum(given) / len(given) if given else None)  # on scale indices: differences are the same
    reviews_seen, seconds = 0, 0.0
    for r, row in enumerate(unit):
        t = tallies.get(row.reviewer_id)
        if t is None:
            continue
        t.reviews += 1
        reviews_seen += 1
        t.accepts += row.verdict == "accept"
        if row.seconds_spent is not None:
            t.seconds[float(row.seconds_spent)] += 1
            seconds += float(row.seconds_spent)
        mine = means[r]
        if mine is not None:
            peers = [m for j, m in enumerate(means) if j != r and m is not None]
            if peers:
                t.leniency_sum += mine - sum(peers) / len(peers)
                t.leniency_units += 1
        if row.decision_kind in ("adjudication", "excluded"):
            # the adjudicator kept this version (accepted it) or not; the reviewer agreed if their verdict matched
            kept = row.decision_kind == "adjudication" and row.decided_rationale_id == row.rationale_id
            t.adjudicated += 1
            t.adjudicator_agreed += (row.verdict == "accept") == kept
    return reviews_seen, seconds
