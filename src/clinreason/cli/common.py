"""What every CLI verb shares: the --db/--project/--config options, the error exit, and opening the
store for a project. The verb modules of `clinreason.cli` import from here."""

from __future__ import annotations

from typing import Annotated, NoReturn, Optional

import typer

from clinreason.config import ConfigError, resolve_settings

DbOpt = Annotated[Optional[str], typer.Option("--db", help="SQLAlchemy URL or SQLite file (env CLINREASON_DB; default ./clinreason.db)")]
ProjectOpt = Annotated[Optional[str], typer.Option("--project", help="Project name (env CLINREASON_PROJECT; default 'default')")]
ConfigOpt = Annotated[Optional[str], typer.Option("--config", help="Project config file (env CLINREASON_CONFIG; default ./clinreason.toml)")]


def print_json(value: object) -> None:
    """A report as `json.dumps(value, ensure_ascii=False, indent=2)` would print it, encoded by orjson (the
    stdlib encodes indented JSON in Python: a fifth of a second for the agreement report of a large
    project). Where orjson cannot encode a value (an integer past 64 bits), the stdlib does."""
    import json

    import orjson

    try:
        text = orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        text = json.dumps(value, ensure_ascii=False, indent=2)
    typer.echo(text)


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _settings(db: str | None, project: str | None, config: str | None):
    try:
        return resolve_settings(db=db, project=project, config=config)
    except ConfigError as exc:
        _fail(str(exc))


def _context(db: str | None, project: str | None, config: str | None):
    from clinreason.app import NotInitialised, open_context
    from clinreason.store.common import NotFoundError

    settings = _settings(db, project, config)
    try:
        ctx = open_context(settings)
        ctx.project_row()
    except (NotInitialised, NotFoundError) as exc:
        _fail(str(exc))
    if ctx.config_drift:
        typer.echo(f"note: {settings.config_path} differs from project '{ctx.project}' as stored in the database "
                   f"({'; '.join(ctx.config_drift[:3])}{' ...' if len(ctx.config_drift) > 3 else ''}); the stored "
                   "configuration is used: run `clinreason init` to apply the file", err=True)
    return ctx
