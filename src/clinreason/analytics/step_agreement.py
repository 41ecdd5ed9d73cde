"""Agreement between reviewers on step marks. Pure: no I/O.

The unit is one step of one rationale version; a reviewer *judged* it when they marked it `ok` or `error`
(an unmarked step is no judgment). Over the units judged by two reviewers or more:

- Krippendorff's α, nominal, on the two values ok / error (computed by `irr.alpha_from_patterns`, the
  project's own implementation; tests compare it with the `krippendorff` package);
- `both_flagged_share`: of the units at least one reviewer marked `error`, the share that a second reviewer
  marked `error` too — how often a flagged step is confirmed by someone else who judged it.

A unit is described by its counts (ok judgments, error judgments), so a project reduces to a small counter
of count pairs, gathered in the one pass over the reviews (`scan.scan_reviews`).
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Iterable, Sequence

from clinreason.analytics import irr

#: the nominal value domain, in this order: index 0 = ok, index 1 = error
STEP_VALUES = ("ok", "error")


def step_judgments(reviews: Iterable[Sequence[tuple[int, str]]]) -> Counter[tuple[int, int]]:
    """The reviews of one version, each as its (step, verdict) marks -> how many of its steps were judged
    with each (ok count, error count). A verdict other than ok/error is no judgment."""
    per_step: dict[int, list[int]] = {}
    for marks in reviews:
        for step, verdict in marks:
            if verdict not in STEP_VALUES:
                continue
            per_step.setdefault(step, [0, 0])[STEP_VALUES.index(verdict)] += 1
    return Counter((ok, error) for ok, error in per_step.values())


def step_agreement(units: Counter[tuple[int, int]] | dict[tuple[int, int], int]) -> dict[str, Any]:
    """`{"alpha_nominal", "units", "both_flagged_share"}` over the units judged at least twice; the figures
    are None where there is no such unit (α also where nothing varies, the share where nothing was flagged)."""
    pairable = {(ok, error): n for (ok, error), n in units.items() if ok + error >= 2 and n > 0}
    n_units = sum(pairable.values())
    if not n_units:
        return {"alpha_nominal": None, "units": 0, "both_flagged_share": None}
    alpha = irr.alpha_from_patterns(irr.Patterns.from_counter(pairable, [0, 1]), "nominal")
    flagged = sum(n for (_, error), n in pairable.items() if error >= 1)
    confirmed = sum(n for (_, error), n in pairable.items() if error >= 2)
    return {"alpha_nominal": irr.finite_or_none(alpha), "units": n_units,
            "both_flagged_share": confirmed / flagged if flagged else None}
