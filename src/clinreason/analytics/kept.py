"""The review scan of a project kept in the database (`scan_states`) and brought up to date from what arrived
since, so agreement, stats, the dashboard and the dataset card do not read every review on every call.

Why this is exact: reviews and decisions are immutable and append-only (migration 0004), and everything the
scan collects (`scan.scan_rows`) is a count — score patterns, pair confusion cubes, histograms, ratings, the
reviewers' tallies, including the Counter of stored seconds and the Counter of exact (fractional) leniencies;
the float sums a report prints are worked out from those counts at the end (`scan.with_reviewers`). A
version's contribution depends only on its own reviews and its item's decision. So when reviews or decisions
arrive, each *affected* version (one a new review belongs to, or a reviewed version of an item a new decision
decided) has its contribution as of the stored state subtracted — recomputed from the rows that state
included, still in the database — and its contribution now added.

What is new: reviews have string ids, so arrival is told by created_at. A state keeps, for reviews and for
decisions, a watermark T — the read's own clock less LAG: every row created at or before T is counted — and
the ids of the counted rows created after T. A row counts as included if its id is among those, or its
created_at is at or before T. So the ids kept are those of the last LAG of activity, whatever was imported
or reviewed before (a bulk import stamped in one second is out of the set ten minutes later). A transaction
that commits a row more than LAG after the row's created_at (a writer stalled for over ten minutes between
stamping and committing, or a writer whose clock is that far behind the reader's) is therefore missed by the
kept state until it is rebuilt (`refresh(..., rebuild=True)`, or `clinreason agreement`/`stats` after a
rubric change). The state is rebuilt from a full scan whenever it is missing, of another format version,
made with another rubric, or does not decode or add up (a negative count).

A state is persisted only from `refresh`, which reads in `store.db.read_snapshot` (one consistent view, so the
counts and the watermarks describe the same rows) and then writes in a short transaction of its own, only if
the stored revision is still the one it started from (a concurrent writer's state is kept, not overwritten).
`current_scan` brings the stored state up to date in memory on the caller's connection and writes nothing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import zlib
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeGuard, TypeVar

import numpy as np
import orjson
from sqlalchemy import Connection, Engine

from clinreason.analytics.scan import (
    IntervalMemo,
    ReviewerTally,
    ReviewScan,
    rubric_dimensions,
    scan_rows,
    with_reviewers,
)
from clinreason.store import db as dbm
from clinreason.store import scanstate
from clinreason.store import stats as stats_store
from clinreason.store.projects import latest_rubric

#: the body's format version: a state of another version is rebuilt (2: the watermark is the read's clock
#: less LAG, no longer the newest row's created_at)
FORMAT = 2
#: how long after its created_at a review or decision may still commit and be counted (see the module text)
LAG = timedelta(minutes=10)


class CorruptState(ValueError):
    """A stored state that does not decode, or does not add up: rebuilt from a full scan."""


def read_clock(conn: Connection) -> datetime:
    """The instant a read takes as "now" for its watermarks (the machine's clock; tests replace it)."""
    return datetime.now(UTC)


@dataclass
class Marks:
    """`at`: every row created at or before it is counted (None: nothing read yet); `recent`: the ids of the
    counted rows created after it, with their created_at."""

    at: datetime | None = None
    recent: dict[Any, datetime] = field(default_factory=dict)

    def included(self, row_id: Any, created_at: datetime) -> bool:
        return row_id in self.recent or (self.at is not None and created_at <= self.at)

    def since(self) -> datetime | None:
        return self.at

    def advanced(self, arrivals: Iterable[scanstate.Arrival], *, now: datetime) -> Marks:
        """The marks once `arrivals` (rows not counted before) are counted, at a read made at `now`."""
        settled = now - LAG
        if self.at is not None and self.at > settled:  # never backwards (a clock set back)
            settled = self.at
        recent = {i: t for i, t in self.recent.items() if t > settled}
        recent.update((a.id, a.created_at) for a in arrivals if a.created_at > settled)
        return Marks(at=settled, recent=recent)


@dataclass
class KeptState:
    raw: ReviewScan  # what scan.scan_rows returns: exact counts, a tally per reviewer id
    reviews: Marks
    decisions: Marks


@dataclass
class Update:
    """What `bring_up_to_date` found: the report's scan, the state behind it, the stored revision it started
    from (None: none stored or not usable) and whether it differs from what is stored."""

    scan: ReviewScan
    state: KeptState
    base_revision: int | None
    changed: bool
    rebuilt: bool
    rubric_key: str
    #: False where the schema has no scan_states yet (a database before migration 0012): nothing to save
    storable: bool = True

    @property
    def worth_saving(self) -> bool:
        """Whether storing it would keep something new: the counts moved, or a report put intervals in the memo."""
        return self.changed or self.state.raw.intervals.added > 0


def rubric_key(rubric_body: dict[str, Any]) -> str:
    text = json.dumps(rubric_body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


# --- exact arithmetic on raw scans -----------------------------------------------------------------------

def _add_counter(into: Counter, part: Counter, sign: int) -> None:
    for key, n in part.items():
        value = into.get(key, 0) + sign * n
        if value < 0:
            raise CorruptState("a count fell below zero")
        if value:
            into[key] = value
        else:
            into.pop(key, None)


def combine(into: ReviewScan, part: ReviewScan, sign: int) -> None:
    """Add (sign 1) or subtract (sign -1) the raw scan `part` to/from the raw scan `into`, in place. Keys
    whose count comes to zero are dropped, so the result equals a scan of the rows themselves."""
    if into.dimensions != part.dimensions or into.scale != part.scale:
        raise CorruptState("the scans are of different rubrics")
    for d in range(len(into.dimensions)):
        _add_counter(into.dim_patterns[d], part.dim_patterns[d], sign)
    _add_counter(into.overall_patterns, part.overall_patterns, sign)
    _add_counter(into.verdict_patterns, part.verdict_patterns, sign)
    _add_counter(into.step_units, part.step_units, sign)
    into.histograms = into.histograms + sign * part.histograms
    into.ratings = [a + sign * b for a, b in zip(into.ratings, part.ratings, strict=True)]
    if (into.histograms < 0).any() or min(into.ratings, default=0) < 0:
        raise CorruptState("a count fell below zero")
    for pair, cube in part.pair_confusion.items():
        found = into.pair_confusion.get(pair)
        cube = sign * cube if found is None else found + sign * cube
        if (cube < 0).any():
            raise CorruptState("a pair count fell below zero")
        if cube.any():
            into.pair_confusion[pair] = cube
        else:
            into.pair_confusion.pop(pair, None)
    for rid, t in part.reviewers.items():
        mine = into.reviewers.get(rid)
        if mine is None:
            mine = into.reviewers[rid] = ReviewerTally(id=rid, username="", role="", specialties=[], pseudonym="")
        for name in ("reviews", "accepts", "leniency_units", "adjudicated", "adjudicator_agreed"):
            value = getattr(mine, name) + sign * getattr(t, name)
            if value < 0:
                raise CorruptState("a tally fell below zero")
            setattr(mine, name, value)
        _add_counter(mine.seconds, t.seconds, sign)
        _add_counter(mine.leniency, t.leniency, sign)
        if not mine.reviews:
            if mine.accepts or mine.leniency_units or mine.adjudicated or mine.seconds or mine.leniency:
                raise CorruptState("a reviewer without reviews has counts")
            del into.reviewers[rid]
    into.total_reviews += sign * part.total_reviews


# --- the stored body ---------------------------------------------------------------------------------------

def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _marks_out(marks: Marks) -> list[Any]:
    return [_iso(marks.at), [[i, t.isoformat()] for i, t in sorted(marks.recent.items(), key=lambda x: str(x[0]))]]


def _marks_in(raw: Any) -> Marks:
    at, recent = raw
    return Marks(at=None if at is None else _utc(datetime.fromisoformat(at)),
                 recent={i: _utc(datetime.fromisoformat(t)) for i, t in recent})


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise CorruptState("a naive watermark")
    return value


def encode(state: KeptState) -> str:
    """The state as base64 of zlib-compressed JSON (never pickle: the body is data, read back as data; text,
    so `migrate-db` copies and checks it like any other column)."""
    raw = state.raw
    body = {
        "format": FORMAT, "dimensions": raw.dimensions, "scale": raw.scale,
        "dim_patterns": [[[list(key), n] for key, n in c.items()] for c in raw.dim_patterns],
        "overall": [[list(key), n] for key, n in raw.overall_patterns.items()],
        "verdicts": [[list(key), n] for key, n in raw.verdict_patterns.items()],
        "steps": [[list(key), n] for key, n in raw.step_units.items()],
        "histograms": raw.histograms.tolist(), "ratings": list(raw.ratings),
        "pairs": [_pair_out(a, b, cube) for (a, b), cube in sorted(raw.pair_confusion.items())],
        "reviewers": [[t.id, t.reviews, t.accepts, t.leniency_units, t.adjudicated, t.adjudicator_agreed,
                       [list(t.seconds), list(t.seconds.values())],
                       [[p for p, _ in t.leniency], [q for _, q in t.leniency], list(t.leniency.values())]]
                      for t in raw.reviewers.values()],
        "reviews_mark": _marks_out(state.reviews), "decisions_mark": _marks_out(state.decisions),
        "intervals": [[a, b, d, digest, *(ci or (None, None))]
                      for (a, b, d), (digest, ci) in sorted(raw.intervals.items()) if (a, b) in raw.pair_confusion],
    }
    try:  # orjson: the same compact JSON text (numbers read back the same), several times faster
        text = orjson.dumps(body)
    except TypeError:  # an integer past 64 bits (a leniency of a rubric of very many dimensions)
        text = json.dumps({**body, "wide": True}, separators=(",", ":")).encode()
    return base64.b64encode(zlib.compress(text, 1)).decode("ascii")


def _pair_out(a: int, b: int, cube: np.ndarray) -> list[Any]:
    flat = cube.reshape(-1)
    cells = np.flatnonzero(flat)
    return [int(a), int(b), cells.tolist(), flat[cells].tolist()]


def _counter(pairs: Any, length: int) -> Counter:
    out: Counter = Counter()
    for key, n in pairs:
        key = tuple(int(x) for x in key)
        if len(key) != length or type(n) is not int or n <= 0 or key in out:
            raise CorruptState("a malformed pattern")
        out[key] = n
    return out


def _loads(text: bytes) -> Any:
    """orjson reads an integer past 64 bits as a float; a body that holds one says so ("wide", written by
    the stdlib) and is read by the stdlib, which keeps it exact."""
    body = orjson.loads(text)
    return json.loads(text) if isinstance(body, dict) and body.get("wide") is True else body


def decode(blob: str, *, dims: list[str], scale: list[int]) -> KeptState:
    """The state `encode` wrote, checked against the rubric's dimensions and scale; CorruptState if it does
    not decode or does not add up."""
    try:
        body = _loads(zlib.decompress(base64.b64decode(blob.encode("ascii"), validate=True)))
        if body["format"] != FORMAT or body["dimensions"] != dims or body["scale"] != scale:
            raise CorruptState("another format or rubric")
        k, v = len(dims), len(scale)
        hist = np.array(body["histograms"], dtype=np.int64)
        if hist.shape != (k, v) or (hist < 0).any():
            raise CorruptState("malformed histograms")
        ratings = [int(x) for x in body["ratings"]]
        if len(ratings) != k:
            raise CorruptState("malformed ratings")
        pairs: dict[tuple[int, int], np.ndarray] = {}
        for a, b, cells, counts in body["pairs"]:
            cube = np.zeros(k * v * v, dtype=np.int64)
            at, n = np.asarray(cells, dtype=np.int64), np.asarray(counts, dtype=np.int64)
            if at.shape != n.shape or at.ndim != 1 or (n <= 0).any() or (at < 0).any() or len(np.unique(at)) != len(at):
                raise CorruptState("a malformed pair count")
            cube[at] = n  # an index out of range raises IndexError
            pairs[(int(a), int(b))] = cube.reshape(k, v, v)
        reviewers: dict[int, ReviewerTally] = {}
        for rid, reviews, accepts, units, adjudicated, agreed, seconds, leniency in body["reviewers"]:
            t = ReviewerTally(id=int(rid), username="", role="", specialties=[], pseudonym="", reviews=int(reviews),
                              accepts=int(accepts), leniency_units=int(units), adjudicated=int(adjudicated),
                              adjudicator_agreed=int(agreed))
            values, counts = seconds
            nums, dens, times = leniency
            if len(values) != len(counts) or not len(nums) == len(dens) == len(times):
                raise CorruptState("a malformed tally")
            if not all(type(n) is int and n > 0 for n in counts) or not all(type(n) is int and n > 0 for n in times):
                raise CorruptState("a malformed tally count")
            t.seconds = Counter(dict(zip(map(float, values), counts)))
            t.leniency = Counter(dict(zip(zip(map(int, nums), map(int, dens)), times)))
            if len(t.seconds) != len(values) or len(t.leniency) != len(nums) or any(q <= 0 for q in dens):
                raise CorruptState("a malformed tally")
            if t.reviews <= 0 or sum(t.leniency.values()) != t.leniency_units or sum(t.seconds.values()) > t.reviews:
                raise CorruptState("a tally does not add up")
            reviewers[t.id] = t
        raw = ReviewScan(dimensions=list(dims), scale=list(scale),
                         dim_patterns=[_counter(c, v) for c in body["dim_patterns"]],
                         overall_patterns=_counter(body["overall"], k * (v - 1) + 1),
                         verdict_patterns=_counter(body["verdicts"], 4), pair_confusion=pairs, histograms=hist,
                         reviewers=dict(sorted(reviewers.items())), ratings=ratings,
                         total_reviews=sum(t.reviews for t in reviewers.values()),
                         step_units=_counter(body["steps"], 2))
        if len(raw.dim_patterns) != k or [int(h.sum()) for h in hist] != ratings:
            raise CorruptState("the counts do not add up")
        raw.intervals = _intervals_in(body.get("intervals", []), k)  # absent from states stored before the memo
        return KeptState(raw=raw, reviews=_marks_in(body["reviews_mark"]),
                         decisions=_marks_in(body["decisions_mark"]))
    except CorruptState:
        raise
    except (KeyError, TypeError, ValueError, IndexError, zlib.error, binascii.Error, OverflowError,
            ZeroDivisionError, UnicodeError, AttributeError) as exc:
        raise CorruptState(f"the stored scan state does not decode: {exc}") from exc


def _intervals_in(rows: Any, k: int) -> IntervalMemo:
    memo = IntervalMemo()
    for a, b, d, digest, lo, hi in rows:
        if not (type(a) is int and type(b) is int and type(d) is int and 0 <= d < k and isinstance(digest, str)) \
                or (lo is None) != (hi is None) or (a, b, d) in memo:
            raise CorruptState("a malformed interval")
        memo[(a, b, d)] = (digest, None if lo is None else [float(lo), float(hi)])
    return memo


# --- building and advancing ------------------------------------------------------------------------------

def build(conn: Connection, *, project_id: int, dims: list[str], scale: list[int]) -> KeptState:
    """A state from a full scan, with the watermarks of what that scan read (read it in one snapshot)."""
    now = read_clock(conn)
    raw = scan_rows(stats_store.rated_review_rows(conn, project_id=project_id), dims=dims, scale=scale)
    since = now - LAG
    reviews = Marks().advanced(scanstate.reviews_since(conn, project_id=project_id, after=since), now=now)
    decisions = Marks().advanced(scanstate.decisions_since(conn, project_id=project_id, after=since), now=now)
    return KeptState(raw=raw, reviews=reviews, decisions=decisions)


def since_marks(conn: Connection, *, project_id: int,
                state: KeptState) -> tuple[list[scanstate.Arrival], list[scanstate.Arrival]]:
    """The reviews and the decisions created after the state's watermarks, counted by it or not."""
    return (scanstate.reviews_since(conn, project_id=project_id, after=state.reviews.since()),
            scanstate.decisions_since(conn, project_id=project_id, after=state.decisions.since()))


def advance(conn: Connection, *, project_id: int, state: KeptState,
            since: tuple[list[scanstate.Arrival], list[scanstate.Arrival]] | None = None) -> bool:
    """Bring `state` up to date in place with the reviews and decisions that arrived since its watermarks
    (`since`: what `since_marks` read on `conn`, where the caller has it); False when nothing had arrived and
    the marks are as stored (nothing worth writing)."""
    now = read_clock(conn)
    found_reviews, found_decisions = since_marks(conn, project_id=project_id, state=state) if since is None \
        else since
    new_reviews = [a for a in found_reviews if a.id not in state.reviews.recent]
    new_decisions = [a for a in found_decisions if a.id not in state.decisions.recent]
    if not new_reviews and not new_decisions:
        reviews, decisions = state.reviews.advanced([], now=now), state.decisions.advanced([], now=now)
        # ids that aged out of the window: storing the narrower marks spares the next reads fetching them
        shrank = len(reviews.recent) < len(state.reviews.recent) or len(decisions.recent) < len(state.decisions.recent)
        if shrank:
            state.reviews, state.decisions = reviews, decisions
        return shrank
    affected = {a.key for a in new_reviews}
    affected |= scanstate.reviewed_versions_of_items(conn, (a.key for a in new_decisions))
    dims, scale = state.raw.dimensions, state.raw.scale
    rows = list(scanstate.version_rows(conn, affected))
    before = []
    for row in rows:  # the rows the stored state counted, with the decision it knew of
        if not state.reviews.included(row[8], row[9]):
            continue
        if row[10] is not None and not state.decisions.included(row[10], row[11]):
            row = (*row[:6], None, None, *row[8:])
        before.append(row)
    combine(state.raw, scan_rows(before, dims=dims, scale=scale), -1)
    combine(state.raw, scan_rows(rows, dims=dims, scale=scale), 1)
    state.reviews = state.reviews.advanced(new_reviews, now=now)
    state.decisions = state.decisions.advanced(new_decisions, now=now)
    return True


def usable(stored: scanstate.StoredState | None, key: str) -> TypeGuard[scanstate.StoredState]:
    """Whether a stored state can be brought up to date (else it is rebuilt): of this format and rubric."""
    return stored is not None and stored.format == FORMAT and stored.rubric_key == key


def bring_up_to_date(conn: Connection, *, project_id: int, rubric_body: dict[str, Any] | None = None,
                     rebuild: bool = False) -> Update:
    """The stored state brought up to date on `conn` (or rebuilt), in memory; nothing is written."""
    body = rubric_body or latest_rubric(conn, project_id=project_id)
    dims, scale = rubric_dimensions(body)
    key = rubric_key(body)
    storable = scanstate.available(conn)
    stored = None if rebuild or not storable else scanstate.load(conn, project_id=project_id)
    base = None if stored is None else stored.revision
    state: KeptState | None = None
    changed = rebuilt = False
    if usable(stored, key):
        try:
            state = decode(stored.body, dims=dims, scale=scale)
            changed = advance(conn, project_id=project_id, state=state)
        except CorruptState:
            state = None
    if state is None:
        state = build(conn, project_id=project_id, dims=dims, scale=scale)
        changed = rebuilt = True
    if rebuild and storable:  # the stored revision still guards the write
        found = scanstate.load(conn, project_id=project_id)
        base = None if found is None else found.revision
    return Update(scan=with_reviewers(conn, project_id, state.raw), state=state, base_revision=base,
                  changed=changed, rebuilt=rebuilt, rubric_key=key, storable=storable)


def current_scan(conn: Connection, *, project_id: int, rubric_body: dict[str, Any] | None = None) -> ReviewScan:
    """The report's scan from the kept state, brought up to date in memory on `conn` (nothing written); a
    full scan where no usable state is stored. Equal to `scan.scan_reviews` on the same rows."""
    return bring_up_to_date(conn, project_id=project_id, rubric_body=rubric_body).scan


def save(engine: Engine, *, project_id: int, update: Update) -> bool:
    """Persist an update in a short write transaction of its own, only if the stored revision is still the
    one it started from; True if written."""
    if not update.storable:
        return False
    blob = encode(update.state)
    with dbm.transaction(engine) as conn:
        return scanstate.save(conn, project_id=project_id, rubric_key=update.rubric_key, format=FORMAT, body=blob,
                              reviews_mark=update.state.reviews.at, decisions_mark=update.state.decisions.at,
                              expected_revision=update.base_revision)


T = TypeVar("T")


def refresh(engine: Engine, *, project_id: int, rubric_body: dict[str, Any] | None = None,
            rebuild: bool = False) -> ReviewScan:
    """The report's scan, with the kept state brought up to date in one read snapshot (no write turn held
    meanwhile) and then persisted if it changed (optimistically: see `save`)."""
    return refresh_and(engine, project_id=project_id, rubric_body=rubric_body, rebuild=rebuild,
                       use=lambda conn, scan: scan)


def refresh_and(engine: Engine, *, project_id: int, use: Callable[[Connection, ReviewScan], T],
                rubric_body: dict[str, Any] | None = None, rebuild: bool = False) -> T:
    """`refresh`, with `use(conn, scan)` run in the same snapshot before the state is stored, so that the
    intervals a report works out (`agreement._pairs`) are kept along with the counts; what `use` returns."""
    with dbm.read_snapshot(engine) as conn:
        update = bring_up_to_date(conn, project_id=project_id, rubric_body=rubric_body, rebuild=rebuild)
        result = use(conn, update.scan)
    if update.worth_saving:
        save(engine, project_id=project_id, update=update)
    return result
