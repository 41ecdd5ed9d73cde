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
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fractions import Fraction
from typing import Any

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


def exact_float_sum(parts: Iterable[Counter]) -> float:
    """Σ value·count over Counters of floats, rounded once: what float(exact_sum(...)) of the values' exact
    ratios gives, in numpy and math.fsum. Each product value·count is split exactly into a float and its
    rounding error (Dekker's two-product, Veltkamp's split), and fsum adds those exactly and rounds once."""
    values = np.array([x for c in parts for x in c], dtype=np.float64)
    if not len(values):
        return 0.0
    counts = np.array([n for c in parts for n in c.values()], dtype=np.float64)
    if not (np.isfinite(values).all() and (np.abs(values) < 1e290).all() and (counts < 2.0 ** 53).all()):
        return float(exact_sum((*x.as_integer_ratio(), n) for c in parts for x, n in c.items()))
    product = values * counts

    def split(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        c = 134217729.0 * a  # 2**27 + 1
        hi = c - (c - a)
        return hi, a - hi

    vh, vl = split(values)
    ch, cl = split(counts)
    error = ((vh * ch - product) + vh * cl + vl * ch) + vl * cl
    return math.fsum(np.concatenate([product, error]).tolist())


def with_reviewers(conn: Connection, project_id: int, raw: ReviewScan) -> ReviewScan:
    """The scan as reports read it: the tallies of the project's users (by id) with their names, roles and
    pseudonyms, the float sums worked out from the exact counts, totals over those users. `raw` is left
    as it is."""
    salt = project_salt(conn, project_id)
    reviewers: dict[int, ReviewerTally] = {}
    total_reviews, seconds_parts = 0, list[Counter]()
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
        seconds_parts.append(t.seconds)
    return ReviewScan(dimensions=raw.dimensions, scale=raw.scale, dim_patterns=raw.dim_patterns,
                      overall_patterns=raw.overall_patterns, verdict_patterns=raw.verdict_patterns,
                      pair_confusion=raw.pair_confusion, histograms=raw.histograms, reviewers=reviewers,
                      ratings=raw.ratings, total_reviews=total_reviews,
                      total_seconds=exact_float_sum(seconds_parts),
                      step_units=raw.step_units, intervals=raw.intervals)


def scan_rows(rows: Iterable[Sequence[Any]], *, dims: list[str], scale: list[int]) -> ReviewScan:
    """One pass over review rows (`stats.rated_review_rows` tuples: only the first eight fields are read),
    ordered so that the reviews of one version arrive together, by reviewer. Per row, Python only looks
    things up: a review's scores (and step marks) are decoded once per distinct stored text into the id of
    its score row, and the row's reviewer, score row, verdict, seconds and adjudication are appended to
    columns. Every UNIT_CHUNK versions the columns are counted with numpy (`_Counts.add`): score patterns,
    overall sums, verdict patterns, histograms, each review's leniency, the reviewers' tallies; reviewer
    pairs are collected as (a, b, score row of a, score row of b) and counted at the end. Memory is bounded
    by the chunk, the distinct patterns and the pairs.

    The result is *raw*: a tally for every reviewer id met (no names), everything an exact count — seconds
    as a Counter of the stored values, leniency as a Counter of exact fractions — so scans of parts can be
    added and subtracted exactly (`combine`); `with_reviewers` makes the report's scan of it."""
    index = {s: i for i, s in enumerate(scale)}
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

    counts = _Counts(len(dims), len(scale))
    cols = _Columns()
    unit_marks: list[tuple[tuple[int, str], ...]] = []
    current: Any = None
    unit = -1
    for row in rows:
        rationale_id = row[0]
        if rationale_id != current:
            if unit_marks and any(unit_marks):
                counts.step_units.update(step_judgments(unit_marks))
            unit_marks = []
            current = rationale_id
            unit += 1
            if unit == UNIT_CHUNK:
                counts.add(cols, cell_ids)
                cols, unit = _Columns(), 0
        kind = row[6]
        cols.unit.append(unit)
        cols.reviewer.append(row[1])
        cols.cell.append(cells(row[3]))
        cols.verdict.append(verdict_code.get(row[2], NO_VERDICT))
        cols.seconds.append(float("nan") if row[4] is None else float(row[4]))
        # 0: no adjudication; 1: adjudicated, the review's version kept; 2: adjudicated, not kept
        cols.adjudication.append(0 if kind not in ("adjudication", "excluded")
                                 else 1 if kind == "adjudication" and row[7] == rationale_id else 2)
        unit_marks.append(marks(row[5]))
    if unit_marks and any(unit_marks):
        counts.step_units.update(step_judgments(unit_marks))
    counts.add(cols, cell_ids)
    return counts.expand(dims, scale, cell_ids)


#: versions counted at a time (bounds the memory of the columns)
UNIT_CHUNK = 50_000
#: reviewer pairs counted at a time (bounds the memory of the pair tables)
PAIR_CHUNK = 100_000
#: past this common multiple of the reviews' counts of scores, leniencies are worked out in Python integers
EXACT_LCM = 1 << 24


@dataclass
class _Columns:
    """The rows of up to UNIT_CHUNK versions, a column per field (unit: the version's number in the chunk)."""

    unit: list[int] = field(default_factory=list)
    reviewer: list[int] = field(default_factory=list)
    cell: list[int] = field(default_factory=list)
    verdict: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    adjudication: list[int] = field(default_factory=list)


def _first_seen_counts(keys: np.ndarray, into: Counter) -> None:
    """Count the rows of `keys` (N, W; non-negative) into `into`, new keys in the order of their first row —
    the order a loop over the rows adding tuple(row) would give (the float sums downstream follow the keys'
    order). Each row is read as one number in a mixed radix where that fits in int64 (sorting numbers is
    several times faster than sorting rows), else rows are sorted as they are."""
    if not len(keys):
        return
    radix = (keys.max(axis=0) + 1).tolist()
    if math.prod(radix) < 1 << 62:
        place = np.cumprod([1] + radix[:-1], dtype=np.int64)
        _, first, times = np.unique(keys @ place, return_index=True, return_counts=True)
    else:
        _, first, times = np.unique(keys, axis=0, return_index=True, return_counts=True)
    order = np.argsort(first, kind="stable")
    first = first[order]
    for key, n in zip(map(tuple, keys[first].tolist()), times[order].tolist(), strict=True):
        into[key] += n


def _grouped(*columns: np.ndarray) -> list[tuple[tuple[Any, ...], int]]:
    """The distinct rows of the columns (as Python values) with how many times each occurs: each column is
    coded by its own distinct values and the codes combined into one number, which sorts fast."""
    codes, values = [], []
    for col in columns:
        uniq, code = np.unique(col, return_inverse=True)
        values.append(uniq.tolist())
        codes.append(code.astype(np.int64))
    key = codes[0]
    for col_values, code in zip(values[1:], codes[1:], strict=True):
        key = key * len(col_values) + code
    _, first, times = np.unique(key, return_index=True, return_counts=True)
    rows = [tuple(vals[c] for vals, c in zip(values, combo, strict=True))
            for combo in zip(*(code[first].tolist() for code in codes), strict=True)]
    return list(zip(rows, times.tolist(), strict=True))


class _Counts:
    """What the versions add up to (score patterns per dimension, overall sums, verdict patterns,
    histograms, ratings, the reviewers' tallies, the reviewer pairs): integer counts, so counting the
    versions in several chunks gives the same result, keys in the same order, as counting them at once."""

    def __init__(self, k: int, v: int) -> None:
        self.k, self.v = k, v
        self.dim_patterns: list[Counter[tuple[int, ...]]] = [Counter() for _ in range(k)]
        self.overall: Counter[tuple[int, ...]] = Counter()
        self.verdicts: Counter[tuple[int, ...]] = Counter()
        self.hist = np.zeros((k, v), dtype=np.int64)
        self.ratings = np.zeros(k, dtype=np.int64)
        self.step_units: Counter[tuple[int, int]] = Counter()
        self.tallies: dict[int, ReviewerTally] = {}
        self.pairs: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []

    def tally(self, reviewer_id: int) -> ReviewerTally:
        t = self.tallies.get(reviewer_id)
        if t is None:
            t = self.tallies[reviewer_id] = ReviewerTally(id=reviewer_id, username="", role="", specialties=[],
                                                          pseudonym="")
        return t

    def add(self, cols: _Columns, cell_ids: dict[tuple[int | None, ...], int]) -> None:
        if not cols.unit:
            return
        k, v = self.k, self.v
        table = _cell_table(cell_ids, k)
        unit = np.asarray(cols.unit, dtype=np.int64)
        cell = np.asarray(cols.cell, dtype=np.int64)
        verdict = np.asarray(cols.verdict, dtype=np.int64)
        units = int(unit[-1]) + 1
        grid = table[cell]  # (rows, k) scale index of each score, -1 where not scored
        scored = grid >= 0
        # histograms, ratings and each dimension's pattern (the counts over the scale of a version's scores)
        for d in range(k):
            ok = scored[:, d]
            self.hist[d] += np.bincount(grid[ok, d], minlength=v)
            self.ratings[d] += int(ok.sum())
            vec = np.bincount(unit[ok] * v + grid[ok, d], minlength=units * v).reshape(units, v)
            _first_seen_counts(vec[vec.any(axis=1)], self.dim_patterns[d])
        # overall: how many of a version's complete reviews (every dimension scored) sum to each total
        complete = scored.all(axis=1)
        width = k * (v - 1) + 1
        sums = np.bincount(unit[complete] * width + grid[complete].sum(axis=1), minlength=units * width)
        sums = sums.reshape(units, width)
        _first_seen_counts(sums[sums.any(axis=1)], self.overall)
        named = verdict != NO_VERDICT
        _first_seen_counts(np.bincount(unit[named] * len(VERDICTS) + verdict[named],
                                       minlength=units * len(VERDICTS)).reshape(units, len(VERDICTS)), self.verdicts)
        starts = np.flatnonzero(np.r_[True, unit[1:] != unit[:-1]])  # each version's first row (rows adjacent)
        self._reviewers(cols, unit, starts, verdict, grid, scored)
        self._pairs(unit, starts, np.asarray(cols.reviewer, dtype=np.int64), cell)

    def _reviewers(self, cols: _Columns, unit: np.ndarray, starts: np.ndarray, verdict: np.ndarray,
                   grid: np.ndarray, scored: np.ndarray) -> None:
        reviewer = np.asarray(cols.reviewer, dtype=np.int64)
        ids, slot = np.unique(reviewer, return_inverse=True)
        tallies = [self.tally(r) for r in ids.tolist()]
        reviews = np.bincount(slot, minlength=len(ids))
        accepts = np.bincount(slot[verdict == 0], minlength=len(ids))
        adjudication = np.asarray(cols.adjudication, dtype=np.int64)
        judged = adjudication > 0
        adjudicated = np.bincount(slot[judged], minlength=len(ids))
        agreed = np.bincount(slot[judged & ((verdict == 0) == (adjudication == 1))], minlength=len(ids))
        seconds = np.asarray(cols.seconds, dtype=np.float64)
        timed = ~np.isnan(seconds)
        num, den, lenient = _leniency_columns(unit, starts, grid, scored)
        for i, t in enumerate(tallies):
            t.reviews += int(reviews[i])
            t.accepts += int(accepts[i])
            t.adjudicated += int(adjudicated[i])
            t.adjudicator_agreed += int(agreed[i])
        if timed.any():
            for (i, sec), n in _grouped(slot[timed], seconds[timed]):
                tallies[i].seconds[sec] += n
        if lenient.any():
            for (i, p, q), n in _grouped(slot[lenient], num[lenient], den[lenient]):
                t = tallies[i]
                t.leniency[(p, q)] += n
                t.leniency_units += n

    def _pairs(self, unit: np.ndarray, starts: np.ndarray, reviewer: np.ndarray, cell: np.ndarray) -> None:
        """Every pair of reviews of one version (in row order: a before b) as (reviewer a, reviewer b, score
        row of a, score row of b)."""
        sizes = np.diff(np.r_[starts, len(unit)])
        for n in np.unique(sizes).tolist():
            if n < 2:
                continue
            at = starts[sizes == n]
            i, j = np.triu_indices(n, 1)
            left, right = (at[:, None] + i[None, :]).ravel(), (at[:, None] + j[None, :]).ravel()
            self.pairs.append((reviewer[left], reviewer[right], cell[left], cell[right]))

    def expand(self, dims: list[str], scale: list[int], cell_ids: dict[tuple[int | None, ...], int]) -> ReviewScan:
        empty = np.zeros(0, dtype=np.int64)
        parts = self.pairs or [(empty, empty, empty, empty)]
        pairs = tuple(np.concatenate([p[c] for p in parts]) for c in range(4))
        return _expand(dims=dims, scale=scale, totals=self, pairs=pairs,  # type: ignore[arg-type]
                       cell_table=_cell_table(cell_ids, len(dims)))


def _leniency_columns(unit: np.ndarray, starts: np.ndarray, grid: np.ndarray,
                      scored: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each row's leniency (`_leniencies`, the same fractions in lowest terms) as numerator and denominator
    columns, with the mask of the rows that have one. L is the lcm of every count of scores in the chunk: a
    common multiple of each version's counts, so the reduced fractions are `_leniencies`' own."""
    given = scored.sum(axis=1)
    total = np.where(scored, grid, 0).sum(axis=1)
    lcm = math.lcm(*{int(c) for c in np.unique(given).tolist() if c}) if given.any() else 1
    if lcm > EXACT_LCM:  # a rubric of very many dimensions: integers past int64 are possible, count in Python
        return _leniency_columns_exact(starts, grid)
    a = np.where(given > 0, total * lcm // np.maximum(given, 1), 0)
    peers = np.add.reduceat((given > 0).astype(np.int64), starts)[unit] - 1  # the version's other scoring reviews
    a_sum = np.add.reduceat(a, starts)
    lenient = (given > 0) & (peers >= 1)
    num = peers * a - (a_sum[unit] - a)
    den = np.where(lenient, peers * lcm, 1)
    g = np.gcd(num, den)
    return num // g, den // g, lenient


def _leniency_columns_exact(starts: np.ndarray, grid: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    num = np.zeros(len(grid), dtype=object)
    den = np.ones(len(grid), dtype=object)
    lenient = np.zeros(len(grid), dtype=bool)
    bounds = starts.tolist() + [len(grid)]
    for lo, hi in zip(bounds, bounds[1:]):
        rows = [tuple(None if c < 0 else c for c in row) for row in grid[lo:hi].tolist()]
        for r, frac in enumerate(_leniencies(rows)):
            if frac is not None:
                num[lo + r], den[lo + r], lenient[lo + r] = frac[0], frac[1], True
    return num, den, lenient


def _cell_table(cell_ids: dict[tuple[int | None, ...], int], k: int) -> np.ndarray:
    return np.array([[-1 if c is None else c for c in row] for row in cell_ids], dtype=np.int64).reshape(-1, k)


def _leniencies(grid: list[tuple[int | None, ...]]) -> tuple[tuple[int, int] | None, ...]:
    """Each review's mean score minus the mean of the other reviews' means (on scale indices), None where
    the review, or every other review, scored nothing: exact, as (numerator, denominator) in lowest terms,
    so sums of them add and subtract exactly. In integers: with L the lcm of the reviews' counts of scores
    and A_j = (sum of review j's scores) * L / (its count), review r's leniency among m scoring peers is
    (m * A_r - sum of the peers' A_j) / (m * L). (The reference the vectorized count in `_Counts` follows:
    any common multiple L gives the same fraction in lowest terms.)"""
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


def _expand(*, dims: list[str], scale: list[int], totals: _Counts,
            pairs: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], cell_table: np.ndarray) -> ReviewScan:
    k, v = len(dims), len(scale)
    dim_patterns, overall, verdicts, hist = totals.dim_patterns, totals.overall, totals.verdicts, totals.hist
    ratings, tallies, step_units = totals.ratings.tolist(), totals.tallies, totals.step_units
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


