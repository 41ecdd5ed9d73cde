"""Inter-rater reliability in plain NumPy: Krippendorff's α (nominal, ordinal, interval), Cohen's weighted
κ, Fleiss' κ, pairwise percent agreement, and percentile-bootstrap confidence intervals.

Every statistic is computed from *patterns*: a unit (here, one rationale version) is described only by
how many raters gave each value (its count vector), and units with the same count vector contribute the
same to the statistic. A data set of a million units therefore reduces to a few dozen patterns with
multiplicities, and resampling units with replacement is a multinomial draw over the patterns — the same
bootstrap, at a cost independent of the number of units. Each `*_from_patterns` function accepts
multiplicities of shape (P,) or a batch (B, P) and returns a float (NaN where the statistic is undefined,
e.g. α when no rater ever disagreed *and* nothing varies) or an array (B,).

The reference implementations (the `krippendorff` package, scikit-learn's `cohen_kappa_score`,
statsmodels' `fleiss_kappa`) agree with these to 1e-12 on the same data; tests/analytics checks it.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

LEVELS = ("nominal", "ordinal", "interval")


@dataclass(frozen=True)
class Patterns:
    """Distinct count vectors (P, V) over an ordered value domain (V,), each with its multiplicity (P,)."""

    counts: np.ndarray
    weights: np.ndarray
    values: np.ndarray

    @classmethod
    def from_counter(cls, counter: Counter | dict, values: Sequence[float] | np.ndarray) -> "Patterns":
        keys = sorted(counter)  # deterministic order: the bootstrap draws depend on it
        v = len(values)
        counts = np.array(keys, dtype=np.float64).reshape(len(keys), v)
        weights = np.array([counter[k] for k in keys], dtype=np.float64)
        return cls(counts=counts, weights=weights, values=np.asarray(values, dtype=np.float64))

    def pairable(self) -> "Patterns":
        """Only the units rated by two raters or more (the others carry no information about agreement)."""
        keep = self.counts.sum(axis=1) >= 2
        return Patterns(self.counts[keep], self.weights[keep], self.values)

    @property
    def units(self) -> int:
        return int(self.weights.sum())


def patterns_from_matrix(data: Sequence[Sequence[float]], values: Sequence[float] | None = None) -> Patterns:
    """From a raters × units matrix (NaN = not rated), the layout `krippendorff.alpha` takes."""
    arr = np.asarray(data, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError("expected a raters × units matrix")
    observed = np.unique(arr[~np.isnan(arr)])
    domain = observed if values is None else np.asarray(values, dtype=np.float64)
    if not np.isin(observed, domain).all():
        raise ValueError("the data hold values outside the value domain")
    index = {float(v): i for i, v in enumerate(domain)}
    counter: Counter = Counter()
    for unit in arr.T:
        vec = [0] * len(domain)
        for x in unit[~np.isnan(unit)]:
            vec[index[float(x)]] += 1
        counter[tuple(vec)] += 1
    return Patterns.from_counter(counter, domain)


# --- Krippendorff's alpha -----------------------------------------------------------------------------

def _coincidences(p: Patterns, weights: np.ndarray) -> np.ndarray:
    """The coincidence matrix o (…, V, V): Σ_u (n_uc·n_uk − δ_ck·n_uc) / (m_u − 1) over pairable units."""
    m = p.counts.sum(axis=1)
    keep = m >= 2
    c = p.counts[keep]
    scale = weights[..., keep] / (m[keep] - 1.0)
    per_unit = c[:, :, None] * c[:, None, :] - np.einsum("pv,vw->pvw", c, np.eye(c.shape[1]))
    return np.einsum("...p,pvw->...vw", scale, per_unit)


def _distances(values: np.ndarray, n_v: np.ndarray, level: str) -> np.ndarray:
    """δ²(c, k) for every pair of domain values (…, V, V)."""
    v = len(values)
    if level == "nominal":
        return np.broadcast_to(1.0 - np.eye(v), n_v.shape[:-1] + (v, v))
    if level == "interval":
        d = (values[:, None] - values[None, :]) ** 2
        return np.broadcast_to(d, n_v.shape[:-1] + (v, v))
    if level == "ordinal":
        cum = np.concatenate([np.zeros(n_v.shape[:-1] + (1,)), np.cumsum(n_v, axis=-1)], axis=-1)
        lo = np.minimum.outer(np.arange(v), np.arange(v))
        hi = np.maximum.outer(np.arange(v), np.arange(v))
        between = cum[..., hi + 1] - cum[..., lo]  # Σ_{g=lo..hi} n_g
        half = (n_v[..., :, None] + n_v[..., None, :]) / 2.0
        return (between - half) ** 2
    raise ValueError(f"unknown level of measurement '{level}' (expected one of {', '.join(LEVELS)})")


def alpha_from_patterns(p: Patterns, level: str = "interval", weights: np.ndarray | None = None):
    """Krippendorff's α = 1 − D_o / D_e. NaN when the expected disagreement is zero (no variation)."""
    return alphas_from_patterns(p, (level,), weights)[0]


def alphas_from_patterns(p: Patterns, levels: Sequence[str], weights: np.ndarray | None = None) -> list[Any]:
    """`alpha_from_patterns` at each of `levels`, the coincidence matrices (the costly part) worked out once."""
    w = p.weights if weights is None else weights
    o = _coincidences(p, w)
    n_v = o.sum(axis=-1)
    n = n_v.sum(axis=-1)
    out: list[Any] = []
    for level in levels:
        d = _distances(p.values, n_v, level)
        observed = (o * d).sum(axis=(-2, -1))
        expected = (n_v[..., :, None] * n_v[..., None, :] * d).sum(axis=(-2, -1))
        with np.errstate(divide="ignore", invalid="ignore"):
            alpha = np.where((expected > 0) & (n > 1), 1.0 - (n - 1.0) * observed / expected, np.nan)
        out.append(float(alpha) if np.ndim(alpha) == 0 else alpha)
    return out


def krippendorff_alpha(data: Sequence[Sequence[float]], level: str = "interval",
                       values: Sequence[float] | None = None) -> float | None:
    """α of a raters × units matrix (NaN = missing), None where it is undefined (no pairable value varies)."""
    value = alpha_from_patterns(patterns_from_matrix(data, values), level)
    return None if math.isnan(value) else value


# --- percent agreement ----------------------------------------------------------------------------------

def percent_agreement_from_patterns(p: Patterns, weights: np.ndarray | None = None):
    """Mean over units (rated twice or more) of the share of rater pairs that gave the same value."""
    w = p.weights if weights is None else weights
    m = p.counts.sum(axis=1)
    keep = m >= 2
    agree = (p.counts[keep] * (p.counts[keep] - 1)).sum(axis=1) / (m[keep] * (m[keep] - 1))
    total = w[..., keep].sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(total > 0, (w[..., keep] * agree).sum(axis=-1) / total, np.nan)
    return float(share) if np.ndim(share) == 0 else share


def percent_agreement(data: Sequence[Sequence[float]]) -> float | None:
    value = percent_agreement_from_patterns(patterns_from_matrix(data))
    return None if math.isnan(value) else value


# --- Fleiss' kappa --------------------------------------------------------------------------------------

def fleiss_from_patterns(p: Patterns, weights: np.ndarray | None = None):
    """Fleiss' κ; every pattern must have the same number of raters n ≥ 2 (as statsmodels requires)."""
    w = p.weights if weights is None else weights
    m = p.counts.sum(axis=1)
    if len(m) == 0:
        return float("nan") if w.ndim == 1 else np.full(w.shape[0], np.nan)
    if not np.all(m == m[0]) or m[0] < 2:
        raise ValueError("Fleiss' kappa needs the same number (≥ 2) of raters for every unit")
    n = m[0]
    p_unit = ((p.counts ** 2).sum(axis=1) - n) / (n * (n - 1))
    units = w.sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        p_mean = (w * p_unit).sum(axis=-1) / units
        p_cat = (w[..., :, None] * p.counts).sum(axis=-2) / (units[..., None] * n)
        p_exp = (p_cat ** 2).sum(axis=-1)
        kappa = np.where(p_exp < 1.0, (p_mean - p_exp) / (1.0 - p_exp), np.nan)
    return float(kappa) if np.ndim(kappa) == 0 else kappa


def fleiss_kappa(table: Sequence[Sequence[int]]) -> float | None:
    """From a units × categories table of counts (statsmodels' layout)."""
    arr = np.asarray(table, dtype=np.float64)
    counter = Counter(tuple(int(x) for x in row) for row in arr)
    value = fleiss_from_patterns(Patterns.from_counter(counter, list(range(arr.shape[1]))))
    return None if math.isnan(value) else value


# --- Cohen's weighted kappa -----------------------------------------------------------------------------

def kappa_from_confusion(confusion: np.ndarray, weighting: str = "quadratic"):
    """Cohen's κ from a (…, V, V) confusion matrix over an ordered label set; weighting none|linear|quadratic."""
    conf = np.asarray(confusion, dtype=np.float64)
    v = conf.shape[-1]
    idx = np.arange(v)
    if weighting == "quadratic":
        w = (idx[:, None] - idx[None, :]) ** 2.0
    elif weighting == "linear":
        w = np.abs(idx[:, None] - idx[None, :]).astype(np.float64)
    elif weighting in ("none", "unweighted"):
        w = 1.0 - np.eye(v)
    else:
        raise ValueError(f"unknown weighting '{weighting}' (none|linear|quadratic)")
    total = conf.sum(axis=(-2, -1))
    rows, cols = conf.sum(axis=-1), conf.sum(axis=-2)
    with np.errstate(divide="ignore", invalid="ignore"):
        expected = rows[..., :, None] * cols[..., None, :] / total[..., None, None]
        denom = (w * expected).sum(axis=(-2, -1))
        kappa = np.where(denom > 0, 1.0 - (w * conf).sum(axis=(-2, -1)) / denom, np.nan)
    return float(kappa) if np.ndim(kappa) == 0 else kappa


def cohen_kappa(a: Sequence[float], b: Sequence[float], labels: Sequence[float],
                weighting: str = "quadratic") -> float | None:
    """κ of two raters over the same units; `labels` is the full ordered scale (weights use its positions)."""
    index = {float(x): i for i, x in enumerate(labels)}
    conf = np.zeros((len(labels), len(labels)))
    for x, y in zip(a, b, strict=True):
        conf[index[float(x)], index[float(y)]] += 1
    value = kappa_from_confusion(conf, weighting)
    return None if math.isnan(value) else value


def confusion_patterns(confusion: np.ndarray) -> Patterns:
    """A confusion matrix as patterns (one per cell) so it can be bootstrapped like the others."""
    v = confusion.shape[0]
    return Patterns(counts=np.eye(v * v), weights=np.asarray(confusion, dtype=np.float64).reshape(-1),
                    values=np.arange(v * v, dtype=np.float64))


# --- bootstrap ------------------------------------------------------------------------------------------

def bootstrap_ci(p: Patterns, statistic: Callable[[np.ndarray], object], *, resamples: int = 1000, seed: int = 0,
                 level: float = 0.95) -> list[float] | None:
    """Percentile bootstrap over units: each resample draws as many units as there are, with replacement
    (a multinomial over the patterns), with a fixed seed, so the interval is the same on every run.
    `statistic` maps multiplicities (B, P) to B values (NaN where undefined)."""
    return bootstrap_cis(p, [statistic], resamples=resamples, seed=seed, level=level)[0]


def bootstrap_cis(p: Patterns, statistics: Sequence[Callable[[np.ndarray], object]], *, resamples: int = 1000,
                  seed: int = 0, level: float = 0.95) -> list[list[float] | None]:
    """`bootstrap_ci` of several statistics of the same patterns from one set of draws (each maps the
    multiplicities (B, P) to B values). Each interval is the one `bootstrap_ci` gives for that statistic alone
    with the same seed — the draws depend on the patterns, resamples and seed only — for the cost of drawing
    once."""
    units = p.units
    if units < 2 or resamples < 1:
        return [None] * len(statistics)
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(units, p.weights / units, size=resamples).astype(np.float64)
    tail = (1.0 - level) / 2.0 * 100.0
    out: list[list[float] | None] = []
    for statistic in statistics:
        values = np.asarray(statistic(draws), dtype=np.float64).reshape(-1)
        values = values[np.isfinite(values)]
        if values.size == 0:
            out.append(None)
            continue
        lo, hi = np.percentile(values, [tail, 100.0 - tail])
        out.append([float(lo), float(hi)])
    return out


def bootstrap_ci_rows(weights: np.ndarray, statistic: Callable[[np.ndarray], np.ndarray], *, resamples: int = 1000,
                      seed: int = 0, level: float = 0.95) -> list[list[float] | None]:
    """`bootstrap_ci` for D independent sets of patterns at once: multiplicities (D, P), `statistic` maps
    draws (B, D, P) to (B, D). Used for the pairwise kappas (one row per rubric dimension)."""
    weights = np.asarray(weights, dtype=np.float64)
    units = weights.sum(axis=1)
    ok = units >= 2
    if resamples < 1 or not ok.any():
        return [None] * len(units)
    draws = _multinomial_rows(np.random.default_rng(seed), np.where(ok[:, None], weights, 0.0), resamples)
    values = np.asarray(statistic(draws), dtype=np.float64)
    tail = (1.0 - level) / 2.0 * 100.0
    out: list[list[float] | None] = []
    for d in range(len(units)):
        col = values[:, d]
        col = col[np.isfinite(col)]
        if not ok[d] or col.size == 0:
            out.append(None)
        else:
            lo, hi = np.percentile(col, [tail, 100.0 - tail])
            out.append([float(lo), float(hi)])
    return out


def quadratic_kappa_bootstrap_rows(confusion: np.ndarray, *, keys: Sequence[Sequence[int]] | None = None,
                                   resamples: int = 200, seed: int = 0, level: float = 0.95,
                                   chunk: int = 512) -> list[list[float] | None]:
    """Percentile CIs of Cohen's quadratic-weighted κ for many confusion tables (R, V, V) at once — the
    reviewer pairs × rubric dimensions — by the Poisson bootstrap: each unit of a table is weighted by an
    independent Poisson(1) draw, so each cell count is drawn as Poisson(its observed count). κ does not change
    when a table is scaled, so this is the usual large-sample stand-in for resampling a table's units with
    replacement; it needs one draw per non-empty cell (not one per unit). Each table has a random stream of
    its own, seeded by (`seed`, its key: `keys[r]`, by default its row number), so a table's interval depends
    on that table, its key and the settings alone — not on the other tables — and can be kept
    (`agreement._pairs` recomputes only the tables that changed). κ of each draw is worked out from the table's moments
    (N, Σ i, Σ i², Σ j, Σ j², Σ ij). A table of fewer than two units gets None, as `bootstrap_ci_rows` gives."""
    conf = np.asarray(confusion, dtype=np.float64)
    rows, v = conf.shape[0], conf.shape[-1]
    flat = conf.reshape(rows, v * v)
    units = flat.sum(axis=1)
    out: list[list[float] | None] = [None] * rows
    if resamples < 1 or rows == 0:
        return out
    i, j = np.divmod(np.arange(v * v, dtype=np.float64), v)
    features = np.stack([np.ones(v * v), i, i * i, j, j * j, i * j], axis=1)  # (V², 6)
    keys = [(r,) for r in range(rows)] if keys is None else keys
    if len(keys) != rows:
        raise ValueError(f"{len(keys)} keys for {rows} tables")
    tail = (1.0 - level) / 2.0 * 100.0
    for start in range(0, rows, chunk):
        block = flat[start:start + chunk]
        cols = np.flatnonzero(block.sum(axis=0) > 0)
        # a draw for each non-empty cell only (Poisson(0) is 0): a cell of count m stands for m identical
        # units, whose Poisson(1) weights sum to one Poisson(m) draw
        cells = block[:, cols]
        draws = np.zeros((resamples,) + cells.shape)
        for r in range(len(block)):
            used = np.flatnonzero(cells[r] > 0)
            if len(used):
                rng = np.random.default_rng([seed, *keys[start + r]])
                draws[:, r, used] = rng.poisson(cells[r, used], size=(resamples, len(used)))
        m = draws @ features[cols]  # (B, rows, 6)
        n, a1, a2, b1, b2, ab = (m[..., c] for c in range(6))
        with np.errstate(divide="ignore", invalid="ignore"):
            denom = a2 + b2 - 2.0 * a1 * b1 / n
            kappa = np.where(denom > 0, 1.0 - (a2 + b2 - 2.0 * ab) / denom, np.nan)
        finite = np.isfinite(kappa)
        whole = np.asarray(finite.all(axis=0))
        bounds = np.percentile(kappa[:, whole], [tail, 100.0 - tail], axis=0) if whole.any() else np.zeros((2, 0))
        position = np.cumsum(whole) - 1  # column of each fully finite row in `bounds`
        for r in range(len(block)):
            if units[start + r] < 2:
                continue
            if whole[r]:
                out[start + r] = [float(bounds[0, position[r]]), float(bounds[1, position[r]])]
                continue
            col = kappa[finite[:, r], r]
            if col.size:
                lo, hi = np.percentile(col, [tail, 100.0 - tail])
                out[start + r] = [float(lo), float(hi)]
    return out


def _multinomial_rows(rng: np.random.Generator, weights: np.ndarray, resamples: int) -> np.ndarray:
    """Multinomial draws (B, R, P) of weights.sum(1) units with probabilities weights / sum, as a chain of
    conditional binomials over the categories in use (vectorised over resamples and rows)."""
    rows, cats = weights.shape
    remaining_n = np.broadcast_to(weights.sum(axis=1), (resamples, rows)).astype(np.int64)
    remaining_p = weights.sum(axis=1)
    out = np.zeros((resamples, rows, cats))
    used = np.flatnonzero(weights.sum(axis=0) > 0)
    for j in used[:-1]:
        with np.errstate(divide="ignore", invalid="ignore"):
            p = np.clip(np.where(remaining_p > 0, weights[:, j] / remaining_p, 0.0), 0.0, 1.0)
        drawn = rng.binomial(remaining_n, p)
        out[:, :, j] = drawn
        remaining_n = remaining_n - drawn
        remaining_p = remaining_p - weights[:, j]
    if len(used):
        out[:, :, used[-1]] = remaining_n
    return out


def finite_or_none(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)
