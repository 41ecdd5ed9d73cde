"""Verbs to try clinreason without a project of your own: `simulate` (the review-allocation simulator on
a scratch database) and `demo` (end to end on the bundled samples). Added to the root app by `clinreason.cli`."""

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
    json_out: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON")] = False,
) -> None:
    """Review-allocation simulator: synthetic items with a hidden true quality, synthetic reviewers, and
    the real assignment, consensus, regeneration-round and adjudication code on a scratch database."""
    from clinreason.stages.simulate import POLICIES, run_simulation

    if policy not in POLICIES:
        _fail(f"--policy must be one of {', '.join(POLICIES)}", 2)
    result = run_simulation(policy=policy, n_items=items_n, n_reviewers=reviewers, seed=seed, signal_strength=signal)
    out = result.to_dict()
    if json_out:
        typer.echo(json.dumps(out, indent=2))
        return
    typer.echo(f"{policy}: {out['accepted']} accepted, {out['excluded']} excluded of {out['items']} items; "
               f"{out['reviews_per_accepted']} expert reviews per accepted item "
               f"({out['expert_minutes_per_accepted']} expert minutes); residual defect rate "
               f"{out['residual_defect_rate']:.2%}; wrongly excluded {out['wrongly_excluded']}; "
               f"{out['rounds_per_item']} versions per item")


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
