"""`clinreason demo`: the pipeline end to end on the bundled sample questions, on embedded defaults."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import typer

from clinreason.config import DEFAULT_CONFIG_TOML, resolve_settings


def samples_dir() -> Path:
    return Path(str(resources.files("clinreason") / "samples"))


def run_demo(workdir: Path) -> None:
    from clinreason.app import initialise
    from clinreason.stages.ingest import import_path
    from clinreason.store import repository as repo

    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "clinreason.toml"
    if not config_path.exists():
        config_path.write_text(DEFAULT_CONFIG_TOML, encoding="utf-8")
    db_path = workdir / "clinreason.db"
    settings = resolve_settings(db=f"sqlite:///{db_path}", project="default", config=str(config_path))
    ctx, created, _ = initialise(settings, actor="demo")
    typer.echo(f"[1/2] database {db_path} ready (project 'default' {'created' if created else 'reused'})")

    summary = import_path(ctx.engine, project="default", path=samples_dir(), fmt="auto", actor="demo")
    typer.echo(f"[2/2] imported the bundled samples: {summary.added} new items from {len(summary.files)} files "
               f"({summary.duplicates} duplicates, {summary.flagged} flagged)")
    with ctx.engine.connect() as conn:
        counts = repo.status_counts(conn, project_id=repo.require_project(conn, name="default")["id"])
    typer.echo(json.dumps({k: counts[k] for k in ("items", "rationales", "reviews", "by_state", "by_source")},
                          ensure_ascii=False))
    typer.echo("drafting and screening are not built yet: this demo stops after import + status.")
    typer.echo(f"look next: clinreason status --db {db_path}")
    ctx.engine.dispose()
