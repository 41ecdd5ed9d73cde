"""CLI verbs for calibration items: `clinreason calibration mark|list|unmark`. The group is added to the
root app by `clinreason.cli`; the work is in stages/calibration.py."""

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from clinreason.cli.common import ConfigOpt, DbOpt, ProjectOpt, _context, _fail

calibration_app = typer.Typer(help="Calibration items: versions of known truth slipped into reviewers' queues "
                                   "(at review.calibration_rate) to measure each reviewer.", no_args_is_help=True)


@calibration_app.command("mark")
def mark(
    item_id: Annotated[str, typer.Argument(help="The item to make a calibration item")],
    expect: Annotated[str, typer.Option("--expect", help="good|bad: the known truth about the version")],
    version: Annotated[Optional[int], typer.Option("--version", help="The version (default: the latest)")] = None,
    note: Annotated[str, typer.Option("--note", help="e.g. which error was seeded")] = "",
    seeded: Annotated[Optional[Path], typer.Option("--seeded-text", help="A file whose text is stored as a new "
                                                   "version first (e.g. the latest with an error seeded in)")] = None,
    db: DbOpt = None, project: ProjectOpt = None, config: ConfigOpt = None,
) -> None:
    """Make an item a calibration item: it leaves the normal flow and is served to reviewers, unmarked."""
    from clinreason.stages import calibration
    from clinreason.store import db as store_db

    ctx = _context(db, project, config)
    text = None
    if seeded is not None:
        try:
            text = seeded.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            _fail(f"{seeded}: cannot read the seeded text ({exc})")
    try:
        with store_db.transaction(ctx.engine) as conn:
            done = calibration.mark(conn, project_id=ctx.project_row()["id"], item_id=item_id, expect=expect,
                                    actor="cli", version=version, note=note, seeded_text=text)
    except calibration.CalibrationError as exc:
        _fail(str(exc))
    typer.echo(f"item {done['item_id']} is a calibration item: version {done['version']} is known {expect}")


@calibration_app.command("list")
def listing(json_out: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON")] = False,
            db: DbOpt = None, project: ProjectOpt = None, config: ConfigOpt = None) -> None:
    """Calibration items, and each reviewer's calibration results."""
    from clinreason.stages import calibration

    ctx = _context(db, project, config)
    with ctx.engine.connect() as conn:
        pid = ctx.project_row()["id"]
        report: dict[str, Any] = {"items": calibration.listing(conn, project_id=pid),
                  "reviewers": calibration.results(conn, project_id=pid)}
    if json_out:
        typer.echo(json.dumps(report, ensure_ascii=False, indent=2))
        return
    for row in report["items"]:
        typer.echo(f"{row['item_id']}  v{row['version']}  known {row['expect']:<4}  {row['reviews']} review(s)"
                   + (f"  {row['note']}" if row["note"] else ""))
    if not report["items"]:
        typer.echo("no calibration items")
    for name, r in sorted(report["reviewers"].items()):
        typer.echo(f"{name}: {r['correct']} of {r['reviews']} calibration reviews match the known truth")


@calibration_app.command("unmark")
def unmark(item_id: Annotated[str, typer.Argument(help="The calibration item to withdraw")],
           db: DbOpt = None, project: ProjectOpt = None, config: ConfigOpt = None) -> None:
    """Withdraw a calibration item: it returns to review as any other item."""
    from clinreason.stages import calibration
    from clinreason.store import db as store_db

    ctx = _context(db, project, config)
    try:
        with store_db.transaction(ctx.engine) as conn:
            calibration.unmark(conn, project_id=ctx.project_row()["id"], item_id=item_id, actor="cli")
    except calibration.CalibrationError as exc:
        _fail(str(exc))
    typer.echo(f"item {item_id} is back in review")
