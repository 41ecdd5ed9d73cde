"""Expert reviews spent per accepted item, fixed overlap vs adaptive allocation, by simulation.

    python benchmarks/bench_simulate.py [--items 5000] [--reviewers 8] [--seed 7] [--strong 0.8] [--weak 0.3]
                                        [--weak-items N] [--jobs 2] [--regeneration targeted|blind]
                                        [--policies fixed-1,fixed-2,fixed-3,adaptive] [--limit-s 60] [--json]

Runs the real assignment / consensus / regeneration / adjudication code on synthetic items whose true
quality is known (stages/simulate.py) and prints, side by side for fixed k=1, 2, 3 and adaptive (the
project defaults): expert reviews per accepted item (reviews plus adjudications), residual defect rate
(accepted items whose hidden quality fails the pass rule), items wrongly excluded. Target: adaptive uses
>= 35 % fewer expert reviews than fixed k=2 at a residual defect rate no higher than fixed k=2's. It
repeats the comparison with weak screening signals (how adaptive degrades). Policies run in parallel
processes (`--jobs`); each is deterministic for its seed. Drafts carry steps and reviewers mark them
(stages/simulate.py); regeneration is targeted at the marked steps unless `--regeneration blind`
(benchmarks/bench_steps.py compares the two).

Figures (benchmarks/_report.py; `--json` prints them as {"metric","value","limit","ratio"} lines and the
tables on stderr): per policy, the wall seconds one simulation of --items items took, beside --limit-s
(issue #16: 5,000 items in under 60 s per policy), and adaptive's saving of expert reviews against fixed-2
beside the 35 % target. The seconds are wall-clock in a process of its own (--jobs at once), so they
include whatever else the machine is doing; the CPU seconds are printed beside them. `--weak-items 0`
skips the degraded comparison.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import Report  # noqa: E402

from clinreason.stages.simulate import POLICIES, REGENERATION_MODES, StepModel, run_simulation  # noqa: E402


def _one(args: tuple[str, int, int, int, float, str]) -> tuple[dict, float, float]:
    policy, n, reviewers, seed, signal, regeneration = args
    started, cpu = time.perf_counter(), time.process_time()
    result = run_simulation(policy=policy, n_items=n, n_reviewers=reviewers, seed=seed, signal_strength=signal,
                            steps=StepModel(regeneration=regeneration))
    return result.to_dict(), time.perf_counter() - started, time.process_time() - cpu


def table(report: Report, n: int, reviewers: int, seed: int, signal: float, jobs: int, regeneration: str = "targeted",
          limit_s: float | None = None, policies: tuple[str, ...] = POLICIES) -> dict[str, dict]:
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        done = list(pool.map(_one, [(p, n, reviewers, seed, signal, regeneration) for p in policies]))
    report.note(f"\n{n} items, {reviewers} reviewers, seed {seed}, screening signal strength {signal}, "
                f"{regeneration} regeneration")
    report.note(f"{'policy':<10} {'reviews/accepted':>17} {'residual defects':>17} {'wrongly excluded':>17} "
                f"{'accepted':>9} {'adjudications':>14} {'versions/item':>14} {'min/accepted':>13} {'seconds':>8} "
                f"{'cpu s':>8}")
    rows = {}
    for policy, (r, seconds, cpu) in zip(policies, done, strict=True):
        rows[policy] = r
        report.note(f"{policy:<10} {r['reviews_per_accepted']:>17.3f} {r['residual_defect_rate']:>17.2%} "
                    f"{r['wrongly_excluded']:>17d} {r['accepted']:>9d} {r['adjudications']:>14d} "
                    f"{r['rounds_per_item']:>14.3f} {r['expert_minutes_per_accepted']:>13.2f} {seconds:>8.1f} "
                    f"{cpu:>8.1f}")
    if limit_s is not None:
        for policy, (_, seconds, _cpu) in zip(policies, done, strict=True):
            report.figure(f"simulate_{policy}_{n}_items_seconds", value=seconds, limit=limit_s,
                          higher_is_better=False, unit="s")
    if not {"adaptive", "fixed-2"} <= rows.keys():
        return rows
    a, f2 = rows["adaptive"], rows["fixed-2"]
    saving = 1 - a["reviews_per_accepted"] / f2["reviews_per_accepted"]
    met = saving >= 0.35 and a["residual_defect_rate"] <= f2["residual_defect_rate"]
    report.note(f"adaptive / fixed-2 expert reviews per accepted item: "
                f"{a['reviews_per_accepted'] / f2['reviews_per_accepted']:.3f}"
                f" ({saving:.1%} fewer; target >= 35 % fewer); residual defects {a['residual_defect_rate']:.2%} vs "
                f"{f2['residual_defect_rate']:.2%} (target: no higher) -> {'MET' if met else 'NOT MET'}")
    if limit_s is not None:
        report.figure(f"simulate_adaptive_review_saving_vs_fixed2_signal_{signal}", value=saving, limit=0.35,
                      higher_is_better=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=5000)
    ap.add_argument("--reviewers", type=int, default=8)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--strong", type=float, default=0.8, help="screening signal strength of the main comparison")
    ap.add_argument("--weak", type=float, default=0.3, help="signal strength of the degraded comparison")
    ap.add_argument("--weak-items", type=int, default=None, help="items in the degraded comparison (default: --items)")
    ap.add_argument("--jobs", type=int, default=2, help="policies simulated at once (processes)")
    ap.add_argument("--regeneration", choices=REGENERATION_MODES, default="targeted",
                    help="how the simulated LLM regenerates (benchmarks/bench_steps.py compares the two)")
    ap.add_argument("--limit-s", type=float, default=60.0, help="seconds one policy may take (issue #16: 60)")
    ap.add_argument("--policies", default=",".join(POLICIES), help="comma-separated, of " + ", ".join(POLICIES))
    report = Report.from_argv()
    args = ap.parse_args()
    policies = tuple(p.strip() for p in args.policies.split(",") if p.strip())
    if not policies or any(p not in POLICIES for p in policies):
        ap.error(f"--policies: a comma-separated list of {', '.join(POLICIES)}")
    table(report, args.items, args.reviewers, args.seed, args.strong, args.jobs, args.regeneration, args.limit_s,
          policies)
    weak_items = args.items if args.weak_items is None else args.weak_items
    if weak_items:
        table(report, weak_items, args.reviewers, args.seed, args.weak, args.jobs, args.regeneration, None, policies)


if __name__ == "__main__":
    main()
