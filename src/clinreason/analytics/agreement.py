"""Inter-rater agreement of a project, per rubric dimension and overall: Krippendorff's α (ordinal and
interval; any number of raters, missing ratings allowed), Cohen's weighted κ per reviewer pair with
enough overlap, Fleiss' κ on verdicts, percent agreement — each with a percentile-bootstrap 95 % CI
(units resampled, fixed seed) and its number of units. Step marks get their own block (`steps`):
Krippendorff's α (nominal) on ok/error over the steps two reviewers or more judged, and the share of
flagged steps a second reviewer flagged too (`analytics.step_agreement`).

The pairwise κ intervals (one per reviewer pair and dimension, `pair_resamples` draws each) come from a
Poisson bootstrap of each pair's confusion table (`irr.quadratic_kappa_bootstrap_rows`): each unit weighted
by a Poisson(1) draw, the table's own random stream seeded by (seed, reviewer a, reviewer b, dimension), so
they stay reproducible, cost the same at a million units as at a thousand, and a table's interval changes
only when that table does. The kept scan state keeps them (`ReviewScan.intervals`): a read works out the
intervals of the tables that changed since the state was stored, not all of them. Every other interval is
the multinomial unit bootstrap.

The unit is the rationale version (rationales.id): each version is rated by the reviewers assigned to it.
What `clinreason agreement --json` prints is `agreement_report(...)`, unrounded.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
from sqlalchemy import Connection

from clinreason.analytics import irr
from clinreason.analytics.kept import current_scan
from clinreason.analytics.scan import VERDICTS, IntervalMemo, ReviewScan
from clinreason.analytics.step_agreement import step_agreement
from clinreason.store.projects import latest_rubric

DEFAULT_RESAMPLES = 1000
DEFAULT_SEED = 20250509
DEFAULT_MIN_OVERLAP = 10
#: the per-pair kappa intervals are many (one per pair and dimension) and secondary: fewer resamples
DEFAULT_PAIR_RESAMPLES = 200


def _num(value: float) -> float | None:
    return irr.finite_or_none(value)


def _last(fn: Callable[[np.ndarray], Any]) -> Callable[[np.ndarray], Any]:
    """`fn`, remembering its result for the last array it was called with (the same object)."""
    seen: list[Any] = []

    def call(w: np.ndarray) -> Any:
        if not seen or seen[0] is not w:
            seen[:] = [w, fn(w)]
        return seen[1]

    return call


def _scores_block(counter: Counter, values: list[int], *, resamples: int, seed: int) -> dict[str, Any]:
    p = irr.Patterns.from_counter(counter, values).pairable() if counter else None
    if p is None or p.units == 0:
        return {"alpha_ordinal": None, "alpha_interval": None, "ci95": None, "ci95_interval": None,
                "percent_agreement": None, "percent_agreement_ci95": None, "units": 0}
    alphas = _last(lambda w: irr.alphas_from_patterns(p, ("ordinal", "interval"), w))
    ordinal = lambda w: alphas(w)[0]  # noqa: E731
    interval = lambda w: alphas(w)[1]  # noqa: E731
    agree = lambda w: irr.percent_agreement_from_patterns(p, w)  # noqa: E731
    # one set of draws for the three intervals: each is what its own bootstrap with this seed would give
    ci_ordinal, ci_interval, ci_agree = irr.bootstrap_cis(p, [ordinal, interval, agree], resamples=resamples,
                                                          seed=seed)
    return {
        "alpha_ordinal": _num(ordinal(p.weights)),
        "alpha_interval": _num(interval(p.weights)),
        "ci95": ci_ordinal,
        "ci95_interval": ci_interval,
        "percent_agreement": _num(agree(p.weights)),
        "percent_agreement_ci95": ci_agree,
        "units": p.units,
    }


def _verdict_block(counter: Counter, *, resamples: int, seed: int) -> dict[str, Any]:
    p = irr.Patterns.from_counter(counter, list(range(len(VERDICTS)))).pairable() if counter else None
    block: dict[str, Any] = {"categories": list(VERDICTS), "fleiss_kappa": None, "fleiss_ci95": None,
                             "fleiss_units": 0, "raters_per_unit": None, "percent_agreement": None,
                             "ci95": None, "units": 0}
    if p is None or p.units == 0:
        return block
    agree = lambda w: irr.percent_agreement_from_patterns(p, w)  # noqa: E731
    block.update(percent_agreement=_num(agree(p.weights)),
                 ci95=irr.bootstrap_ci(p, agree, resamples=resamples, seed=seed), units=p.units)
    # Fleiss' κ is defined for a fixed number of raters per unit: use the most common one (the overlap)
    per_n: Counter = Counter()
    for counts, w in zip(p.counts, p.weights):
        per_n[int(counts.sum())] += int(w)
    n = min(per_n, key=lambda m: (-per_n[m], m))
    keep = p.counts.sum(axis=1) == n
    fp = irr.Patterns(p.counts[keep], p.weights[keep], p.values)
    fleiss = lambda w: irr.fleiss_from_patterns(fp, w)  # noqa: E731
    block.update(fleiss_kappa=_num(fleiss(fp.weights)), fleiss_ci95=irr.bootstrap_ci(fp, fleiss, resamples=resamples,
                                                                                     seed=seed),
                 fleiss_units=fp.units, raters_per_unit=n)
    return block


def _pairs(scan: ReviewScan, *, min_overlap: int, resamples: int, seed: int) -> list[dict[str, Any]]:
    """Cohen's weighted κ for every reviewer pair sharing at least `min_overlap` versions: the estimates
    for every pair and dimension in one array operation, their 95 % CIs by the Poisson bootstrap of each table
    (`_pair_intervals`: from the scan's memo where the table is unchanged)."""
    k = len(scan.dimensions)
    chosen = []
    for (ra, rb), conf in sorted(scan.pair_confusion.items()):
        shared = int(conf.sum(axis=(1, 2)).max()) if conf.size else 0
        if shared >= min_overlap:
            chosen.append((ra, rb, shared, conf))
    if not chosen:
        return []
    cube = np.stack([conf for _, _, _, conf in chosen])  # (pairs, dims, V, V)
    quad = np.asarray(irr.kappa_from_confusion(cube, "quadratic")).reshape(len(chosen), k)
    lin = np.asarray(irr.kappa_from_confusion(cube, "linear")).reshape(len(chosen), k)
    cis = _pair_intervals(scan.intervals, [(ra, rb) for ra, rb, _, _ in chosen], cube, resamples=resamples, seed=seed)
    units = cube.sum(axis=(2, 3))
    out = []
    for p, (ra, rb, shared, _) in enumerate(chosen):
        names = [scan.reviewers[r].pseudonym if r in scan.reviewers else str(r) for r in (ra, rb)]
        dims: dict[str, Any] = {}
        for d, name in enumerate(scan.dimensions):
            dims[name] = {"kappa_quadratic": _num(float(quad[p, d])), "kappa_linear": _num(float(lin[p, d])),
                          "ci95": cis[p * k + d], "units": int(units[p, d])}
        out.append({"raters": names, "units": shared, "dimensions": dims})
    return out


def _pair_intervals(memo: IntervalMemo, pairs: list[tuple[int, int]], cube: np.ndarray, *, resamples: int,
                    seed: int) -> list[list[float] | None]:
    """The quadratic κ interval of each (pair, dimension) table of `cube` (pairs, dims, V, V), in that order:
    taken from `memo` where the table and the settings are those it was worked out for, the others computed
    in one call (each table's random stream is its own: the same interval either way) and put in `memo`."""
    k = cube.shape[1]
    settings = f"|{resamples}|{seed}".encode()
    keys, digests = [], []
    for p, (ra, rb) in enumerate(pairs):
        for d in range(k):
            keys.append((ra, rb, d))
            table = np.ascontiguousarray(cube[p, d], dtype=np.int64)
            digests.append(hashlib.blake2b(table.tobytes() + settings, digest_size=12).hexdigest())
    out: list[list[float] | None] = [None] * len(keys)
    missing = []
    for r, (key, digest) in enumerate(zip(keys, digests)):
        found = memo.get(key)
        if found is not None and found[0] == digest:
            out[r] = None if found[1] is None else list(found[1])
        else:
            missing.append(r)
    if missing:
        tables = cube.reshape((-1,) + cube.shape[2:])[missing]
        fresh = irr.quadratic_kappa_bootstrap_rows(tables, keys=[keys[r] for r in missing], resamples=resamples,
                                                   seed=seed)
        for r, interval in zip(missing, fresh):
            out[r] = interval
            memo.put(keys[r], digests[r], None if interval is None else list(interval))
    return out


def report_from_scan(scan: ReviewScan, *, resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED,
                     min_overlap: int = DEFAULT_MIN_OVERLAP, pair_resamples: int | None = None) -> dict[str, Any]:
    dimensions: dict[str, Any] = {}
    pair_resamples = min(resamples, DEFAULT_PAIR_RESAMPLES) if pair_resamples is None else pair_resamples
    pairs = _pairs(scan, min_overlap=min_overlap, resamples=pair_resamples, seed=seed)
    for d, name in enumerate(scan.dimensions):
        block = _scores_block(scan.dim_patterns[d], scan.scale, resamples=resamples, seed=seed)
        kappas = [p["dimensions"][name]["kappa_quadratic"] for p in pairs
                  if p["dimensions"][name]["kappa_quadratic"] is not None]
        block.update(ratings=scan.ratings[d], pairs=len(kappas),
                     kappa_quadratic_mean=float(np.mean(kappas)) if kappas else None)
        dimensions[name] = block
    overall = _scores_block(scan.overall_patterns, scan.overall_values, resamples=resamples, seed=seed)
    overall["basis"] = "sum of the dimension scores of each complete review"
    return {
        "unit": "rationale version",
        "reviews": scan.total_reviews,
        "reviewers": len(scan.reviewers),
        "scale": [scan.scale[0], scan.scale[-1]],
        "dimensions": dimensions,
        "overall": overall,
        "verdict": _verdict_block(scan.verdict_patterns, resamples=resamples, seed=seed),
        "steps": step_agreement(scan.step_units),
        "pairs": pairs,
        "bootstrap": {"resamples": resamples, "pair_resamples": pair_resamples, "seed": seed,
                      "interval": "percentile, 95 %",
                      "ci95_of": "alpha_ordinal (ci95_interval: alpha_interval)"},
        "min_pair_overlap": min_overlap,
    }


def agreement_report(conn: Connection, *, project_id: int, rubric_body: dict[str, Any] | None = None,
                     resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED,
                     min_overlap: int = DEFAULT_MIN_OVERLAP, pair_resamples: int | None = None,
                     scan: ReviewScan | None = None) -> dict[str, Any]:
    """What `clinreason agreement --json` prints. Pass `scan` to reuse a pass already made; without it, the
    kept scan state brought up to date in memory (`kept.current_scan`)."""
    if scan is None:
        body = rubric_body or latest_rubric(conn, project_id=project_id)
        scan = current_scan(conn, project_id=project_id, rubric_body=body)
    return report_from_scan(scan, resamples=resamples, seed=seed, min_overlap=min_overlap,
                            pair_resamples=pair_resamples)
