"""One streaming pass over a project's reviews that gathers everything agreement and reviewer statistics
need, in memory that does not grow with the number of reviews (counts of patterns, of reviewer pairs, of
distinct durations).

The unit is the rationale *version* (rationales.id); the raters are the reviewers; the value is the score
a reviewer gave on one rubric dimension (and, for step agreement, the unit is one step of a version and the
value the reviewer's ok/error mark on it). Reviews arrive ordered by rationale id, so each unit is complete
when the next one starts.
"""

from __future__ import annotations

import hashlib
import math
from array import array
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fractions import Fraction
from typing import Any, cast

import numpy as np
from sqlalchemy import Connection

from clinreason.analytics.step_agreement import step_judgments
from clinreason.domain.rubric import rubric_from_dict
from clinreason.store import accounts
from clinreason.store import stats as stats_store
from clinreason.store.common import NotFoundError
from clinreason.store.projects import get_project_by_id

VERDICTS = ("accept", "edit", "regenerate", "flag_question")
NO_VERDICT = 7  # the code of a verdict outside VERDICTS in a version's shape
STREAM_ROWS = stats_store.STREAM_ROWS


def project_salt(conn: Connection, project_id: int) -> str:
    """Project name + creation instant: stable for the life of the database, unknown outside it."""
    project = get_project_by_id(conn, project_id=project_id)
    if project is None:
        raise NotFoundError(f"project {project_id} does not exist")
    name, created = project["name"], project["created_at"]
    if isinstance(created, datetime):
        created = created.replace(tzinfo=UTC) if created.tzinfo is None else created.astimezone(UTC)
        created = created.strftime("%Y%m%dT%H%M%S.%f")
    return f"{name}\x00{created}"


def pseudonym(salt: str, username: str) -> str:
    """The anonymised reviewer id published in exports and cards: "R-" + 8 hex characters."""
    return "R-" + hashlib.sha256(f"clinreason-reviewer\x00{salt}\x00{username}".encode()).hexdigest()[:8]


@dataclass
class ReviewerTally:
    id: int
    username: str
    role: str
    specialties: list[str]
    pseudonym: str
    reviews: int = 0
    accepts: int = 0
    #: seconds spent per review -> how many reviews took that long (stored to 0.1 s, so this stays small)
    seconds: Counter = field(default_factory=Counter)
    leniency_sum: float = 0.0
    leniency_units: int = 0
    adjudicated: int = 0
    adjudicator_agreed: int = 0
    #: each review's exact leniency as (numerator, denominator) -> how many (leniency_sum: their sum, a float)
    leniency: Counter = field(default_factory=Counter)


class IntervalMemo(dict[tuple[int, int, int], tuple[str, list[float] | None]]):
    """The pairwise kappa intervals already worked out: (reviewer a, reviewer b, dimension) -> (digest of the
    confusion table and of the bootstrap's settings, the interval). Kept with the scan state, so a read
    recomputes only the tables that changed (`agreement._pairs`); `added` counts the entries put in since
    the memo was read, so that a caller knows there is something new worth storing."""

    added: int = 0

    def put(self, key: tuple[int, int, int], digest: str, interval: list[float] | None) -> None:
        self[key] = (digest, interval)
        self.added += 1


@dataclass
class ReviewScan:
    """What the pass collects. `dim_patterns[d]` maps a count vector over the scale to its multiplicity."""

    dimensions: list[str]
    scale: list[int]
    dim_patterns: list[Counter]
    overall_patterns: Counter
    verdict_patterns: Counter
    pair_confusion: dict[tuple[int, int], np.ndarray]
    histograms: np.ndarray  # (dims, scale) how often each score was given
    reviewers: dict[int, ReviewerTally]
    ratings: list[int]
    total_reviews: int = 0
    total_seconds: float = 0.0
    #: (ok judgments, error judgments) of one step of one version -> how many steps were judged so
    step_units: Counter = field(default_factory=Counter)
    #: derived, not a count: left out of comparisons, passed along as the same object by `with_reviewers`
    intervals: IntervalMemo = field(default_factory=IntervalMemo, compare=False, repr=False)

    @property
    def overall_values(self) -> list[int]:
        k = len(self.dimensions)
        return list(range(k * self.scale[0], k * self.scale[-1] + 1))


def counter_median(counts: Counter) -> float | None:
    """The median of a multiset given as value -> multiplicity (as statistics.median would return it)."""
    total = sum(counts.values())
    if not total:
        return None
    lo_rank, hi_rank = (total - 1) // 2, total // 2
    seen, lo = 0, None
    for value in sorted(counts):
        seen += counts[value]
        if lo is None and lo_rank < seen:
            lo = value
        if hi_rank < seen:
            return value if lo == value else (lo + value) / 2
    return lo


def rubric_dimensions(rubric_body: dict[str, Any]) -> tuple[list[str], list[int]]:
    rubric = rubric_from_dict(rubric_body)
    return rubric.names, list(range(rubric.scale_min, rubric.scale_max + 1))


def scan_reviews(conn: Connection, *, project_id: int, rubric_body: dict[str, Any]) -> ReviewScan:
    """One pass over the project's reviews (see `scan_rows`), with the reviewers' names and pseudonyms."""
    dims, scale = rubric_dimensions(rubric_body)
    raw = scan_rows(stats_store.rated_review_rows(conn, project_id=project_id, batch=STREAM_ROWS),
                    dims=dims, scale=scale)
    return with_reviewers(conn, project_id, raw)


def exact_sum(parts: Iterable[tuple[int, int, int]]) -> Fraction:
    """Σ n·p/q over (p, q, n), exactly (numerators added per denominator: the denominators are few)."""
    by_den: dict[int, int] = {}
    for p, q, n in parts:
        by_den[q] = by_den.get(q, 0) + p * n
    return sum((Fraction(v, q) for q, v in by_den.items()), Fraction(0))


def with_reviewers(conn: Connection, project_id: int, raw: ReviewScan) -> ReviewScan:
    """The scan as reports read it: the tallies of the project's users (by id) with their names, roles and
    pseudonyms, the float sums worked out from the exact counts, totals over those users. `raw` is left
    as it is."""
    salt = project_salt(conn, project_id)
    reviewers: dict[int, ReviewerTally] = {}
    total_reviews, seconds_parts = 0, list[tuple[int, int, int]]()
    for user in sorted(accounts.list_users(conn), key=lambda u: u.id):
        t = raw.reviewers.get(user.id)
        if t is None or not t.reviews:
            continue
        reviewers[user.id] = ReviewerTally(
            id=user.id, username=user.username, role=user.role, specialties=list(user.specialties),
            pseudonym=pseudonym(salt, user.username), reviews=t.reviews, accepts=t.accepts,
            seconds=Counter(t.seconds), leniency_sum=float(exact_sum((p, q, n) for (p, q), n in t.leniency.items())),
            leniency_units=t.leniency_units, adjudicated=t.adjudicated, adjudicator_agreed=t.adjudicator_agreed,
            leniency=Counter(t.leniency))
        total_reviews += t.reviews
        seconds_parts.extend((*x.as_integer_ratio(), n) for x, n in t.seconds.items())
    return ReviewScan(dimensions=raw.dimensions, scale=raw.scale, dim_patterns=raw.dim_patterns,
                      overall_patterns=raw.overall_patterns, verdict_patterns=raw.verdict_patterns,
                      pair_confusion=raw.pair_confusion, histograms=raw.histograms, reviewers=reviewers,
                      ratings=raw.ratings, total_reviews=total_reviews,
                      total_seconds=float(exact_sum(seconds_parts)),
                      step_units=raw.step_units, intervals=raw.intervals)


def scan_rows(rows: Iterable[Sequence[Any]], *, dims: list[str], scale: list[int]) -> ReviewScan:
    """One pass over review rows (`stats.rated_review_rows` tuples: only the first eight fields are read),
    ordered so that the reviews of one version arrive together, by reviewer. The per-row work is cut to
    dictionary look-ups: a review's scores (and step marks) are decoded once per distinct stored text, the
    reviewer-independent part of a version (its score patterns, overall sums, verdicts, score histogram, the
    leniency of each review) is worked out once per distinct shape of version and counted, and reviewer pairs
    are counted per distinct pair of score rows; the counts are expanded into a `ReviewScan` at the end.

    The result is *raw*: a tally for every reviewer id met (no names), everything an exact count — seconds
    as a Counter of the stored values, leniency as a Counter of exact fractions — so scans of parts can be
    added and subtracted exactly (`combine`); `with_reviewers` makes the report's scan of it."""
    k = len(dims)
    index = {s: i for i, s in enumerate(scale)}
    tallies: dict[int, ReviewerTally] = {}
    verdict_code = {name: i for i, name in enumerate(VERDICTS)}  # any other verdict: NO_VERDICT
    # a review's score row (scale indices, None where a dimension is not scored) is interned as an id
    cell_ids: dict[tuple[int | None, ...], int] = {}
    id_of: dict[Any, int] = {}  # stored scores text -> id of its score row

    def cells(raw: Any) -> int:
        found = id_of.get(raw)
        if found is None:
            scores = stats_store.decode_json(raw) or {}
            row = []
            for name in dims:
                value = scores.get(name)
                row.append(index.get(value) if type(value) is int else None)
            found = cell_ids.setdefault(tuple(row), len(cell_ids))
            if len(id_of) < 200_000:
                id_of[raw] = found
        return found

    marks_of: dict[Any, tuple[tuple[int, str], ...]] = {}

    def marks(raw: Any) -> tuple[tuple[int, str], ...]:
        if raw is None:
            return ()
        found = marks_of.get(raw)
        if found is None:
            found = stats_store.step_verdicts(stats_store.decode_json(raw))
            if len(marks_of) < 200_000:
                marks_of[raw] = found
        return found

    def tally(reviewer_id: int) -> ReviewerTally:
        t = tallies.get(reviewer_id)
        if t is None:
            t = tallies[reviewer_id] = ReviewerTally(id=reviewer_id, username="", role="", specialties=[],
                                                     pseudonym="")
        return t

    # a version's shape: (score row id << 3 | verdict code) of each of its reviews, in reviewer order
    shapes: Counter[tuple[int, ...]] = Counter()
    folded = _Folded(k, len(scale))
    lenient_of: dict[tuple[int, ...], tuple[tuple[int, int] | None, ...]] = {}  # shape -> each review's leniency
    rows_by_id: list[tuple[int | None, ...]] = []
    # reviewer pairs within a version (a < b) and the ids of their score rows
    pair_a, pair_b, pair_ca, pair_cb = array("q"), array("q"), array("q"), array("q")
    step_units: Counter[tuple[int, int]] = Counter()
    unit_key: list[int] = []
    unit_rows: list[tuple] = []
    unit_marks: list[tuple[tuple[int, str], ...]] = []
    current: Any = None

    def close_unit() -> None:
        shape = tuple(unit_key)
        shapes[shape] += 1
        if len(rows_by_id) < len(cell_ids):
            rows_by_id.extend(list(cell_ids)[len(rows_by_id):])
        if len(shapes) >= SHAPE_FOLD:  # memory bounded by the distinct shapes, not the versions
            folded.fold(shapes, rows_by_id)
            shapes.clear()
        lenient = lenient_of.get(shape)
        if lenient is None:
            lenient = _leniencies([rows_by_id[x >> 3] for x in shape])
            if len(lenient_of) < 200_000:  # a memo, bounded like the decoded texts
                lenient_of[shape] = lenient
        n = len(unit_rows)
        if n > 1:
            for a in range(n):
                ra, ca = unit_rows[a][0], unit_key[a] >> 3
                for b in range(a + 1, n):
                    pair_a.append(ra)
                    pair_b.append(unit_rows[b][0])
                    pair_ca.append(ca)
                    pair_cb.append(unit_key[b] >> 3)
        if any(unit_marks):
            step_units.update(step_judgments(unit_marks))
        r = 0
        for reviewer_id, verdict, seconds, kind, decided, rationale_id in unit_rows:
            t = tallies.get(reviewer_id) or tally(reviewer_id)
            t.reviews += 1
            t.accepts += verdict == "accept"
            if seconds is not None:
                t.seconds[float(seconds)] += 1
            mine = lenient[r]
            if mine is not None:
                t.leniency[mine] += 1
                t.leniency_units += 1
            if kind in ("adjudication", "excluded"):
                kept = kind == "adjudication" and decided == rationale_id
                t.adjudicated += 1
                t.adjudicator_agreed += (verdict == "accept") == kept
            r += 1

    for row in rows:
        rationale_id = row[0]
        if rationale_id != current and unit_rows:
            close_unit()
            unit_key, unit_rows, unit_marks = [], [], []
        current = rationale_id
        unit_key.append(cells(row[3]) << 3 | verdict_code.get(row[2], NO_VERDICT))
        unit_marks.append(marks(row[5]))
        unit_rows.append((row[1], row[2], row[4], row[6], row[7], rationale_id))
    if unit_rows:
        close_unit()
    pairs = (np.frombuffer(pair_a, dtype=np.int64), np.frombuffer(pair_b, dtype=np.int64),
             np.frombuffer(pair_ca, dtype=np.int64), np.frombuffer(pair_cb, dtype=np.int64))
    table = np.array([[-1 if c is None else c for c in row] for row in cell_ids], dtype=np.int64).reshape(-1, k)
    folded.fold(shapes, rows_by_id)
    return _expand(dims=dims, scale=scale, folded=folded, pairs=pairs, cell_table=table, tallies=tallies,
                   step_units=step_units)


#: reviewer pairs counted at a time (bounds the memory of the pair tables)
PAIR_CHUNK = 100_000
#: distinct version shapes held before they are folded into the counts
SHAPE_FOLD = 50_000


def _leniencies(grid: list[tuple[int | None, ...]]) -> tuple[tuple[int, int] | None, ...]:
    """Each review's mean score minus the mean of the other reviews' means (on scale indices), None where
    the review, or every other review, scored nothing: exact, as (numerator, denominator) in lowest terms,
    so sums of them add and subtract exactly. In integers: with L the lcm of the reviews' counts of scores
    and A_j = (sum of review j's scores) * L / (its count), review r's leniency among m scoring peers is
    (m * A_r - sum of the peers' A_j) / (m * L)."""
    sums, counts = [], []
    for cells in grid:
        given = [c for c in cells if c is not None]
        sums.append(sum(given))
        counts.append(len(given))
    scored = [c for c in counts if c]
    out: list[tuple[int, int] | None] = []
    if len(scored) < 2:
        return (None,) * len(grid)
    lcm = math.lcm(*scored)
    a = [s * (lcm // c) if c else 0 for s, c in zip(sums, counts)]
    total, m = sum(a), len(scored) - 1
    for r, c in enumerate(counts):
        if not c:
            out.append(None)
            continue
        num, den = m * a[r] - (total - a[r]), m * lcm
        g = math.gcd(num, den)
        out.append((num // g, den // g))
    return tuple(out)


class _Folded:
    """What the versions' shapes add up to (score patterns per dimension, overall sums, verdict patterns,
    histograms, ratings): integer counts, so folding the shapes in several parts gives the same result,
    keys in the same order, as folding them all at once."""

    def __init__(self, k: int, v: int) -> None:
        self.k, self.v = k, v
        self.dim_patterns: list[Counter[tuple[int, ...]]] = [Counter() for _ in range(k)]
        self.overall: Counter[tuple[int, ...]] = Counter()
        self.verdicts: Counter[tuple[int, ...]] = Counter()
        self.hist = [[0] * v for _ in range(k)]
        self.ratings = [0] * k

    def fold(self, shapes: Counter, rows_by_id: list[tuple[int | None, ...]]) -> None:
        k, v = self.k, self.v
        dim_patterns, overall, verdicts, hist, ratings = (self.dim_patterns, self.overall, self.verdicts,
                                                          self.hist, self.ratings)
        overall_len = k * (v - 1) + 1
        for shape, times in shapes.items():
            grid = [rows_by_id[x >> 3] for x in shape]
            for d in range(k):
                vec = [0] * v
                n = 0
                for row in grid:
                    c = row[d]
                    if c is not None:
                        vec[c] += 1
                        n += 1
                if n:
                    for c, m in enumerate(vec):
                        hist[d][c] += m * times
                    ratings[d] += n * times
                    dim_patterns[d][tuple(vec)] += times
            sums = [0] * overall_len
            complete = False
            for row in grid:
                if None not in row:
                    sums[sum(cast(tuple[int, ...], row))] += 1
                    complete = True
            if complete:
                overall[tuple(sums)] += times
            vvec = [0] * len(VERDICTS)
            for x in shape:
                if x & 7 != NO_VERDICT:
                    vvec[x & 7] += 1
            verdicts[tuple(vvec)] += times


def _expand(*, dims: list[str], scale: list[int], folded: _Folded,
            pairs: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], cell_table: np.ndarray,
            tallies: dict[int, ReviewerTally], step_units: Counter) -> ReviewScan:
    k, v = len(dims), len(scale)
    dim_patterns, overall, verdicts, hist, ratings = (folded.dim_patterns, folded.overall, folded.verdicts,
                                                      folded.hist, folded.ratings)
    confusion: dict[tuple[int, int], np.ndarray] = {}
    ra, rb, ca, cb = pairs
    if len(ra):
        base = int(rb.max()) + 1
        uniq, pidx = np.unique(ra * base + rb, return_inverse=True)
        pair_ids = [(int(c) // base, int(c) % base) for c in uniq]
        # counted a chunk of pairs at a time: the index arrays of all pairs at once would be several
        # hundred MB at a million versions
        size = len(pair_ids) * k * v * v
        counts = np.zeros(size, dtype=np.int64)
        present = np.zeros(len(pair_ids), dtype=bool)
        offsets = np.arange(k)[None, :]
        for lo in range(0, len(ra), PAIR_CHUNK):
            chunk = pidx[lo:lo + PAIR_CHUNK]
            ga, gb = cell_table[ca[lo:lo + PAIR_CHUNK]], cell_table[cb[lo:lo + PAIR_CHUNK]]
            ok = (ga >= 0) & (gb >= 0)
            flat = ((chunk.reshape(-1, 1) * k + offsets) * v + ga) * v + gb
            counts += np.bincount(flat[ok], minlength=size)
            present[chunk[ok.any(axis=1)]] = True
        cube = counts.reshape(len(pair_ids), k, v, v)
        for i, pair in enumerate(pair_ids):
            if present[i]:
                confusion[pair] = cube[i].copy()
    return ReviewScan(dimensions=dims, scale=scale, dim_patterns=dim_patterns, overall_patterns=overall,
                      verdict_patterns=verdicts, pair_confusion=confusion,
                      histograms=np.array(hist, dtype=np.int64).reshape(k, v),
                      reviewers=dict(sorted(tallies.items())), ratings=ratings,
                      total_reviews=sum(t.reviews for t in tallies.values()), total_seconds=0.0,
                      step_units=step_units)


