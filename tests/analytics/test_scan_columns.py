"""The scan counts a chunk of versions with numpy (`scan._Counts`); these check the parts of it that the
project-level comparisons (test_fast_paths.py) reach only on typical data: every review's exact leniency
against the per-version reference `_leniencies`, on versions where some reviews score only some dimensions
or none, in both integer paths; and reviewers met in a later chunk only."""

from __future__ import annotations

import json
import random
from collections import Counter
from fractions import Fraction

import pytest

from clinreason.analytics import scan as scan_module

DIMS = ["correctness", "reasoning", "sufficiency"]
SCALE = [1, 2, 3, 4, 5]


def _rows(seed: int, versions: int = 400) -> list[tuple]:
    rng = random.Random(seed)
    rows = []
    for v in range(versions):
        for reviewer in sorted(rng.sample(range(1, 9), rng.choice([1, 2, 2, 3, 4]))):
            scores = {d: rng.choice(SCALE) for d in DIMS if rng.random() < 0.8}
            if rng.random() < 0.05:
                scores = {"correctness": "high"}  # not an int: not a score
            verdict = rng.choice(["accept", "edit", "regenerate", "flag_question", "other"])
            seconds = None if rng.random() < 0.1 else round(rng.uniform(5, 300), 1)
            kind = rng.choice([None, None, "adjudication", "excluded"])
            rows.append((f"r{v:05d}", reviewer, verdict, json.dumps(scores), seconds, None, kind,
                         f"r{v:05d}" if rng.random() < 0.5 else None))
    return rows


def _expected(rows: list[tuple]) -> dict[int, Counter]:
    """Each reviewer's leniencies, worked out per version by the reference function."""
    index = {s: i for i, s in enumerate(SCALE)}
    by_version: dict[str, list[tuple]] = {}
    for row in rows:
        by_version.setdefault(row[0], []).append(row)
    out: dict[int, Counter] = {}
    for reviews in by_version.values():
        grid = []
        for row in reviews:
            scores = json.loads(row[3])
            grid.append(tuple(index[scores[d]] if type(scores.get(d)) is int else None for d in DIMS))
        for row, frac in zip(reviews, scan_module._leniencies(grid)):
            if frac is not None:
                out.setdefault(row[1], Counter())[frac] += 1
    return out


@pytest.mark.parametrize("exact", [False, True], ids=["int64", "python-integers"])
def test_every_review_leniency_is_the_reference_fraction(monkeypatch, exact):
    if exact:
        monkeypatch.setattr(scan_module, "EXACT_LCM", 0)
    monkeypatch.setattr(scan_module, "UNIT_CHUNK", 37)
    rows = _rows(seed=3)
    result = scan_module.scan_rows(rows, dims=DIMS, scale=SCALE)
    want = _expected(rows)
    assert {r: t.leniency for r, t in result.reviewers.items() if t.leniency} == want
    for r, t in result.reviewers.items():
        assert t.leniency_units == sum(want.get(r, Counter()).values())
        # fractions in lowest terms with a positive denominator: sums add and subtract exactly
        assert all(q > 0 and Fraction(p, q).denominator == q for p, q in t.leniency)


def test_chunks_and_reviewer_tallies_do_not_depend_on_the_chunk_size(monkeypatch):
    rows = _rows(seed=5)
    whole = scan_module.scan_rows(rows, dims=DIMS, scale=SCALE)
    monkeypatch.setattr(scan_module, "UNIT_CHUNK", 1)
    parts = scan_module.scan_rows(rows, dims=DIMS, scale=SCALE)
    for name in ("overall_patterns", "verdict_patterns"):
        assert list(getattr(parts, name).items()) == list(getattr(whole, name).items())
    assert [list(c.items()) for c in parts.dim_patterns] == [list(c.items()) for c in whole.dim_patterns]
    assert (parts.histograms == whole.histograms).all() and parts.ratings == whole.ratings
    assert parts.reviewers == whole.reviewers and list(parts.pair_confusion) == list(whole.pair_confusion)
    assert all((parts.pair_confusion[p] == t).all() for p, t in whole.pair_confusion.items())
    reviews = Counter(row[1] for row in rows)
    assert {r: t.reviews for r, t in whole.reviewers.items()} == dict(reviews)
    accepts = Counter(row[1] for row in rows if row[2] == "accept")
    assert {r: t.accepts for r, t in whole.reviewers.items() if t.accepts} == dict(accepts)
    timed = Counter((row[1], float(row[4])) for row in rows if row[4] is not None)
    assert {(r, s): n for r, t in whole.reviewers.items() for s, n in t.seconds.items()} == dict(timed)
    adjudicated = Counter(row[1] for row in rows if row[6] in ("adjudication", "excluded"))
    assert {r: t.adjudicated for r, t in whole.reviewers.items() if t.adjudicated} == dict(adjudicated)
    agreed = Counter(row[1] for row in rows if row[6] in ("adjudication", "excluded")
                     and (row[2] == "accept") == (row[6] == "adjudication" and row[7] == row[0]))
    assert {r: t.adjudicator_agreed for r, t in whole.reviewers.items() if t.adjudicator_agreed} == dict(agreed)


def test_a_kept_state_with_integers_past_64_bits_reads_back_exactly(monkeypatch):
    """A leniency of a rubric of very many dimensions can be a fraction of integers past 64 bits; the kept
    state stores and reads it exactly (orjson cannot write such integers and reads them as floats)."""
    from clinreason.analytics import kept

    monkeypatch.setattr(scan_module, "EXACT_LCM", 0)
    raw = scan_module.scan_rows(_rows(seed=7, versions=20), dims=DIMS, scale=SCALE)
    tally = next(iter(raw.reviewers.values()))
    wide = (3 ** 50, 2 ** 70 + 1)
    tally.leniency[wide] += 1
    tally.leniency_units += 1
    state = kept.KeptState(raw=raw, reviews=kept.Marks(), decisions=kept.Marks())
    back = kept.decode(kept.encode(state), dims=DIMS, scale=SCALE)
    assert back.raw.reviewers[tally.id].leniency == tally.leniency
    assert all(type(p) is int and type(q) is int for p, q in back.raw.reviewers[tally.id].leniency)
    # an ordinary state is written by orjson and reads back the same
    del tally.leniency[wide]
    tally.leniency_units -= 1
    again = kept.decode(kept.encode(state), dims=DIMS, scale=SCALE)
    assert again.raw.reviewers == raw.reviewers and again.raw.overall_patterns == raw.overall_patterns


def test_the_float_sum_of_seconds_is_the_exact_sum_rounded_once():
    """`exact_float_sum` (numpy and fsum) against the sum of exact fractions, on values whose float sum
    added one by one drifts: many repeats of tenths of a second, huge and tiny magnitudes together."""
    rng = random.Random(11)
    parts = []
    for _ in range(30):
        c = Counter()
        for _ in range(400):
            c[round(rng.uniform(0, 900), 1)] += rng.randint(1, 5000)
        c[1e15 + 0.5] += 3
        c[1e-9] += 7
        parts.append(c)
    exact = float(sum((Fraction(x) * n for c in parts for x, n in c.items()), Fraction(0)))
    assert scan_module.exact_float_sum(parts) == exact
    naive = 0.0
    for c in parts:
        for x, n in c.items():
            naive += x * n
    assert naive != exact  # the data is one where adding floats one by one does drift
    assert scan_module.exact_float_sum([]) == 0.0
    huge = [Counter({1e300: 3, 1.0: 1})]  # past the split's range: the exact fractions themselves
    assert scan_module.exact_float_sum(huge) == float(Fraction(1e300) * 3 + 1)
