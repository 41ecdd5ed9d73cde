"""Verbs to try clinreason without a project of your own: `simulate` (the review-allocation and
step-regeneration simulator on a scratch database) and `demo` (end to end on the bundled samples). Added to the root app by `clinreason.cli`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from clinreason.cli.common import _fail

verbs = typer.Typer()


@verbs.command()
def simulate(
    policy: Annotated[str, typer.Option("--policy", help="fixed-1|fixed-2|fixed-3|adaptive")] = "adaptive",
    items_n: Annotated[int, typer.Option("--items", help="Synthetic items")] = 1000,
    reviewers: Annotated[int, typer.Option("--reviewers", help="Synthetic reviewers (a careless and a harsh one among them)")] = 8,
    seed: Annotated[int, typer.Option("--seed", help="Random seed (same seed, same run)")] = 0,
    signal: Annotated[float, typer.Option("--signal", help="How strongly screening signals track the hidden truth, 0-1")] = 0.8,
    regeneration: Annotated[str, typer.Option("--regeneration", help="targeted: fix the steps the reviewers marked, keep the rest; blind: rewrite the whole text, marks unused")] = "targeted",
    p_fix: Annotated[float, typer.Option("--p-fix", help="targeted: chance a marked wrong step is fixed")] = 0.8,
    p_fix_blind: Annotated[float, typer.Option("--p-fix-blind", help="blind: chance a wrong step is fixed by the rewrite")] = 0.5,
    p_break: Annotated[float, typer.Option("--p-break", help="chance a rewritten correct step becomes wrong (blind: every step is rewritten)")] = 0.1,
    json_out: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON")] = False,
    db: Annotated[Optional[str], typer.Option("--db", help="With --keep: write the simulated project into this database (SQLite path or URL, PostgreSQL URL), which must be empty, instead of a scratch file")] = None,
    keep: Annotated[bool, typer.Option("--keep", help="Keep the simulated project in --db, to look at it with `clinreason serve`/`export --db URL --project simulation`")] = False,
    project: Annotated[str, typer.Option("--project", help="With --keep: the simulated project's name")] = "simulation",
) -> None:
    """Review-allocation simulator: synthetic items with a hidden true quality and seeded wrong steps,
    synthetic reviewers who mark steps with their own sensitivity, and the real assignment, consensus,
    regeneration-round and adjudication code on a scratch database. Compare --regeneration targeted and
    blind on one seed (benchmarks/bench_steps.py runs both side by side). With --db URL --keep the
    simulated project is written into that (empty) database and kept there."""
    from clinreason.stages.simulate import POLICIES, REGENERATION_MODES, StepModel, TargetNotEmpty, run_simulation

    if policy not in POLICIES:
        _fail(f"--policy must be one of {', '.join(POLICIES)}", 2)
    if regeneration not in REGENERATION_MODES:
        _fail(f"--regeneration must be one of {', '.join(REGENERATION_MODES)}", 2)
    for flag, value in (("--p-fix", p_fix), ("--p-fix-blind", p_fix_blind), ("--p-break", p_break)):
        if not 0.0 <= value <= 1.0:
            _fail(f"{flag} must be a probability between 0 and 1, got {value}", 2)
    if keep != (db is not None):
        _fail("--db and --keep go together: --db URL --keep writes the simulated project into that empty database "
              "and keeps it (without them the simulation runs on a scratch database that is thrown away)", 2)
    if items_n < 1 or reviewers < 1:
        _fail("--items and --reviewers must be at least 1", 2)
    model = StepModel(regeneration=regeneration, p_fix=p_fix, p_fix_blind=p_fix_blind, p_break=p_break)
    try:
        result = run_simulation(policy=policy, n_items=items_n, n_reviewers=reviewers, seed=seed,
                                signal_strength=signal, steps=model, db_url=db, project=project)
    except TargetNotEmpty as exc:
        _fail(str(exc), 2)
    out = result.to_dict()
    if db is not None:
        out["kept"] = {"db": db, "project": project}
    if json_out:
        typer.echo(json.dumps(out, indent=2))
        return
    steps = out["steps"]
    typer.echo(f"{policy}, {regeneration} regeneration: {out['accepted']} accepted, {out['excluded']} excluded of "
               f"{out['items']} items; {out['reviews_per_accepted']} expert reviews per accepted item "
               f"({out['expert_minutes_per_accepted']} expert minutes); {out['rounds_per_accepted']} review rounds "
               f"until acceptance ({out['all_rounds_per_accepted']} rounds of all items per accepted item); "
               f"residual defect rate {out['residual_defect_rate']:.2%}; wrongly excluded {out['wrongly_excluded']}; "
               f"{out['rounds_per_item']} versions per item; wrong steps: {steps['seeded_wrong_steps']} seeded, "
               f"{steps['wrong_steps_left_in_accepted']} left in accepted versions, found by reviewers at "
               f"sensitivity {steps['sensitivity']}")
    if db is not None:
        typer.echo(f"kept in {db} as project '{project}': clinreason serve --db {db} --project {project}, "
                   f"clinreason export OUT --db {db} --project {project}")


@verbs.command()
def demo(
    workdir: Annotated[Path, typer.Option("--dir", help="Where the demo database and config go")] = Path("demo-run"),
    limit: Annotated[Optional[int], typer.Option("--limit", help="Draft at most N of the sample questions")] = None,
    serve: Annotated[Optional[bool], typer.Option("--serve/--no-serve", help="Then start the review app with seeded users (one-time passwords printed); default: when run from a terminal")] = None,
    port: Annotated[int, typer.Option("--port", help="Port of the review app")] = 8000,
) -> None:
    """End to end on the bundled sample questions: import, draft with the embedded model (or the
    configured endpoint), screen, one round of guided regeneration, status; then the review app with a
    seeded admin, two reviewers and an adjudicator, and the worker, until Ctrl+C."""
    from clinreason.demo import run_demo

    if serve is None:
        serve = sys.stdin.isatty() and sys.stdout.isatty()
    run_demo(workdir, limit=limit, serve=serve, port=port)
