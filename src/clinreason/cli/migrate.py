"""CLI verb `migrate-db`: copy the whole database (every project, and the accounts) into another, empty one,
e.g. from the single-machine SQLite file to a team's PostgreSQL. Added to the root app by `clinreason.cli`;
the work is `store/migrate.py`."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Optional

import typer

from clinreason.cli.common import ConfigOpt, DbOpt, _fail, _settings

verbs = typer.Typer()


@verbs.command("migrate-db")
def migrate_db(
    to: Annotated[str, typer.Option("--to", help="The target: SQLAlchemy URL or SQLite file; must be empty (no row "
                                                 "in any table)")],
    from_: Annotated[Optional[str], typer.Option("--from", help="The source (default: --db, i.e. CLINREASON_DB or "
                                                                "./clinreason.db)")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Rows read and written at a time")] = 1000,
    json_out: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON")] = False,
    db: DbOpt = None, config: ConfigOpt = None,
) -> None:
    """Copy a whole database (all projects, items, versions, reviews, decisions, events, accounts, calibration,
    caches) into an empty one: SQLite to PostgreSQL, back, or same-kind. The target's schema is created or
    upgraded and the rows copied in one transaction; ids are kept. Row counts and a content hash per table
    are compared on both sides; on any mismatch nothing is committed and the exit code is 1. Stop `serve`
    and `run` first: what they write during the copy is not in it."""
    from clinreason.store.migrate import MigrationError, display_url, migrate_database

    source = from_ or _settings(db, None, config).db_url
    show = (not json_out) and sys.stderr.isatty()

    def progress(table: str, rows: int) -> None:
        if show:
            sys.stderr.write(f"\r  copying {table}: {rows:,} rows\033[K")
            sys.stderr.flush()

    try:
        report = migrate_database(source, to, batch_size=batch_size, progress=progress)
    except MigrationError as exc:
        if show:
            sys.stderr.write("\r\033[K")
        if json_out:
            typer.echo(json.dumps({"source": display_url(source), "target": display_url(to), "ok": False,
                                   "committed": False, "error": str(exc)}, ensure_ascii=False, indent=2))
        _fail(str(exc))
    if show:
        sys.stderr.write("\r\033[K")
    if json_out:
        typer.echo(json.dumps(report.to_dict(), ensure_ascii=False, indent=2))
    else:
        typer.echo(f"{report.source} -> {report.target} (schema revision {report.revision})")
        typer.echo(f"{'table':<24} {'rows':>9}  {'source_hash':<16}  {'target_hash':<16}  ok")
        for t in report.tables:
            rows = f"{t.source_rows:,}" if t.source_rows == t.target_rows else f"{t.source_rows}/{t.target_rows}"
            typer.echo(f"{t.table:<24} {rows:>9}  {t.source_hash[:16]}  {t.target_hash[:16]}  "
                       f"{'ok' if t.ok else 'MISMATCH'}")
        if report.committed:
            typer.echo(f"copied {report.rows:,} rows in {len(report.tables) - 1} tables in {report.seconds:.1f} s; "
                       "committed" + (f"; {len(report.sequences)} id sequences set past the copied ids"
                                      if report.sequences else ""))
    if not report.committed:
        _fail(f"{len(report.mismatched)} table(s) differ after the copy ({', '.join(report.mismatched)}): rolled "
              "back, nothing was committed on the target")
