"""Targeted vs blind regeneration, by simulation: what step marks save.

    python benchmarks/bench_steps.py [--items 1000] [--policies fixed-2,adaptive] [--seed 7] [--reviewers 8]
                                     [--p-fix 0.8] [--p-fix-blind 0.5] [--p-break 0.1] [--jobs 2] [--json-out OUT]
                                     [--json]

For each policy, runs the simulator (stages/simulate.py: the real assignment, consensus, regeneration-round
and adjudication code; simulated reviewers mark seeded wrong steps with their own sensitivity) twice on the
same seeded items: once with *targeted* regeneration (each step the reviewers marked is fixed with
probability p_fix, every other step kept) and once with *blind* regeneration (the whole text rewritten,
marks unused: a wrong step fixed with p_fix_blind, a correct one broken with p_break). Prints, side by
side: review rounds until acceptance (mean over accepted items), review rounds of all items per accepted
item (excluded items' rounds included), expert reviews per accepted item (reviews + adjudications),
residual defect rate, exclusions, and the blind / targeted ratios. Both modes run in the same invocation
(in parallel processes, `--jobs`), so the ratios are measured under the same machine load; each run is
deterministic for its seed. The simulation's assumptions are in stages/simulate.py's docstring.
`--json-out OUT` writes every figure to OUT; `--json` (as `make bench` passes it to every benchmark) keeps
stdout for JSON lines (this benchmark has no limit to report, so it prints none) and the tables go to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import Report  # noqa: E402

from clinreason.stages.simulate import POLICIES, REGENERATION_MODES, StepModel, run_simulation  # noqa: E402

FIGURES = (("rounds_per_accepted", "rounds until acceptance"), ("all_rounds_per_accepted", "rounds/accepted (all)"),
           ("reviews_per_accepted", "expert reviews/accepted"))


def _one(args: tuple[str, str, int, int, int, float, float, float]) -> tuple[dict[str, Any], float]:
    policy, mode, n, reviewers, seed, p_fix, p_fix_blind, p_break = args
    started = time.perf_counter()
    model = StepModel(regeneration=mode, p_fix=p_fix, p_fix_blind=p_fix_blind, p_break=p_break)
    result = run_simulation(policy=policy, n_items=n, n_reviewers=reviewers, seed=seed, steps=model)
    return result.to_dict(), time.perf_counter() - started


def compare(policies: list[str], n: int, reviewers: int, seed: int, p_fix: float, p_fix_blind: float,
            p_break: float, jobs: int, report: Report | None = None) -> dict[str, dict[str, Any]]:
    say = (report or Report()).note
    runs = [(p, m, n, reviewers, seed, p_fix, p_fix_blind, p_break) for p in policies for m in REGENERATION_MODES]
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        done = list(pool.map(_one, runs))
    say(f"\n{n} items, {reviewers} reviewers, seed {seed}; targeted: p_fix {p_fix}, p_break {p_break} "
          f"(a falsely marked step); blind: p_fix_blind {p_fix_blind}, p_break {p_break} (every correct step)")
    say(f"{'policy':<9} {'regeneration':<12} {'rounds until acc.':>17} {'rounds/acc. (all)':>17} "
          f"{'reviews/accepted':>16} {'residual defects':>16} {'accepted':>8} {'excluded':>8} {'adjudications':>13} "
          f"{'step sensitivity':>16} {'seconds':>8}")
    out: dict[str, dict[str, Any]] = {}
    for (policy, mode, *_), (r, seconds) in zip(runs, done, strict=True):
        out.setdefault(policy, {})[mode] = r
        say(f"{policy:<9} {mode:<12} {r['rounds_per_accepted']:>17.3f} {r['all_rounds_per_accepted']:>17.3f} "
              f"{r['reviews_per_accepted']:>16.3f} {r['residual_defect_rate']:>16.2%} {r['accepted']:>8d} "
              f"{r['excluded']:>8d} {r['adjudications']:>13d} {r['steps']['sensitivity']:>16.3f} {seconds:>8.1f}")
    for policy, modes in out.items():
        t, b = modes["targeted"], modes["blind"]
        ratios = {key: round(b[key] / t[key], 4) for key, _ in FIGURES}
        modes["ratio_blind_over_targeted"] = ratios
        say(f"{policy}: blind / targeted  " + "; ".join(f"{label} {t[key]:.3f} vs {b[key]:.3f} = {ratios[key]:.3f}"
                                                       for key, label in FIGURES)
              + f"; residual defects {t['residual_defect_rate']:.2%} vs {b['residual_defect_rate']:.2%}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=1000)
    ap.add_argument("--policies", default="fixed-2,adaptive", help=f"comma-separated, of {', '.join(POLICIES)}")
    ap.add_argument("--reviewers", type=int, default=8)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--p-fix", type=float, default=0.8, help="targeted: chance a marked wrong step is fixed")
    ap.add_argument("--p-fix-blind", type=float, default=0.5, help="blind: chance a wrong step is fixed")
    ap.add_argument("--p-break", type=float, default=0.1, help="chance a rewritten correct step becomes wrong")
    ap.add_argument("--jobs", type=int, default=2, help="simulations at once (processes)")
    ap.add_argument("--json-out", type=Path, default=None, help="also write every figure to this JSON file")
    report = Report.from_argv()
    args = ap.parse_args()
    policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    unknown = [p for p in policies if p not in POLICIES]
    if unknown:
        ap.error(f"unknown policy {unknown[0]!r} (known: {', '.join(POLICIES)})")
    out = compare(policies, args.items, args.reviewers, args.seed, args.p_fix, args.p_fix_blind, args.p_break,
                  args.jobs, report)
    if args.json_out:
        args.json_out.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
