"""CLI verbs for the web app: `clinreason serve`, `clinreason openapi` and `clinreason users add|list|token|deactivate`.
Added to the root app by `clinreason.cli`; heavy imports stay inside the functions."""

import sys
from datetime import timedelta
from typing import Annotated, Any, Optional

import typer

from clinreason.cli.common import ConfigOpt, DbOpt, ProjectOpt, _context, _fail

verbs = typer.Typer()


@verbs.command()
def serve(
    host: Annotated[str, typer.Option("--host", help="Interface to bind (default: this machine only)")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port")] = 8000,
    worker: Annotated[Optional[bool], typer.Option("--worker/--no-worker", help="Run the drafting/screening worker in this process (default: on with SQLite, off with PostgreSQL, where `clinreason run` workers do it)")] = None,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Web server processes; more than one serves more reviewers at once (sign-ins, CSRF tokens and login limits live in the database, so any process serves any request). Use PostgreSQL for more than one")] = 1,
    db: DbOpt = None, project: ProjectOpt = None, config: ConfigOpt = None,
) -> None:
    """Run the review app and JSON API (docs at /openapi.json), and on a single machine the worker too,
    so a reviewer's `regenerate` verdict gets its next version within seconds. Put it behind https
    for anything but localhost."""
    import os

    import uvicorn

    from clinreason.web.app import create_app
    from clinreason.web.background import BackgroundWorker
    from clinreason.web.protocol import HTTP_PROTOCOL

    ctx = _context(db, project, config)
    if workers > 1:
        # each web process builds its own app from the environment (uvicorn starts them afresh)
        os.environ.update(CLINREASON_DB=ctx.settings.db_url, CLINREASON_PROJECT=ctx.project,
                          CLINREASON_CONFIG=str(ctx.settings.config_path.resolve()))
        web_app: Any = "clinreason.web.app:app_from_environment"
        create_app(ctx.settings, engine=ctx.engine)  # refuse a bad project or database here, once
    else:
        web_app = create_app(ctx.settings, engine=ctx.engine)
    run_worker = worker if worker is not None else ctx.engine.dialect.name == "sqlite"
    background = BackgroundWorker(ctx) if run_worker else None
    if background is not None:
        background.start()
        typer.echo(f"worker running in this process with {background.model_id}")
    processes = f" in {workers} processes" if workers > 1 else ""
    typer.echo(f"clinreason review app for project '{ctx.project}' on http://{host}:{port}/{processes} "
               "(Ctrl+C stops it)")
    try:
        # X-Forwarded-* are believed from `[web] trusted_proxies` only (web/proxies.py), never by uvicorn,
        # whose own middleware would take them from any process on 127.0.0.1
        # TCP_NODELAY on every connection (web/protocol.py): uvicorn's workers would leave Nagle on
        uvicorn.run(web_app, host=host, port=port, log_level="info", proxy_headers=False, server_header=False,
                    workers=workers if workers > 1 else None, factory=workers > 1, http=HTTP_PROTOCOL)
    finally:
        if background is not None:
            background.stop()


@verbs.command()
def openapi(
    indent: Annotated[int, typer.Option("--indent", min=0, help="Spaces per level (0: one line)")] = 2,
) -> None:
    """Print the JSON API's OpenAPI document, the one `serve` answers at /openapi.json (info.version is
    this package's version), without a database or a server: `clinreason openapi > openapi.json`, then
    open it in a local viewer or generate a client from it."""
    import json

    from clinreason.web.app import openapi_document

    typer.echo(json.dumps(openapi_document(), indent=indent or None, ensure_ascii=False))


users_app = typer.Typer(help="Manage the people who review: add, list, API tokens.", no_args_is_help=True)


def _password(password_stdin: bool) -> str:
    if password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return typer.prompt("Password", hide_input=True, confirmation_prompt=True)


@users_app.command("add")
def users_add(
    name: Annotated[str, typer.Argument(help="User name (1-100 ASCII letters, digits, . _ - @)")],
    role: Annotated[str, typer.Option("--role", help="reviewer|adjudicator|admin")],
    specialty: Annotated[Optional[list[str]], typer.Option("--specialty", help="Specialty (repeatable); items of this specialty are offered first")] = None,
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the password from the first line of stdin instead of prompting")] = False,
    lang: Annotated[Optional[str], typer.Option("--lang", help="The review app's language for this user: zh|en (unset: the browser's, then the project's)")] = None,
    db: DbOpt = None, project: ProjectOpt = None, config: ConfigOpt = None,
) -> None:
    """Add a user; the password is prompted (or read from stdin) and stored as an argon2 hash."""
    from clinreason.store import db as store_db
    from clinreason.web import auth

    ctx = _context(db, project, config)
    try:
        auth.validate_account(username=name, role=role, specialties=list(specialty or []), password=None)
        if lang is not None and lang not in auth.LANGUAGES:
            raise auth.AccountError("--lang", f"expected one of {', '.join(auth.LANGUAGES)}, got {lang!r}")
        password = _password(password_stdin)
        project_id = ctx.project_row()["id"]
        with store_db.transaction(ctx.engine) as conn:
            auth.create_user(conn, username=name, role=role, password=password, specialties=list(specialty or []),
                             actor="cli", project_id=project_id, language=lang)
    except auth.AccountError as exc:
        _fail(str(exc))
    typer.echo(f"added {role} '{name}'" + (f" ({', '.join(specialty)})" if specialty else ""))


@users_app.command("list")
def users_list(db: DbOpt = None, project: ProjectOpt = None, config: ConfigOpt = None) -> None:
    """List users with their role, specialties and whether they are active."""
    from clinreason.web import auth

    ctx = _context(db, project, config)
    with ctx.engine.connect() as conn:
        rows = auth.list_users(conn)
    if not rows:
        typer.echo("no users yet: add one with `clinreason users add NAME --role admin`")
    for u in rows:
        state = "" if u.active else "  (inactive)"
        typer.echo(f"{u.username:<24} {u.role:<12} {u.language or '-':<3} {', '.join(u.specialties)}{state}")


@users_app.command("token")
def users_token(
    name: Annotated[str, typer.Argument(help="User name")],
    days: Annotated[Optional[int], typer.Option("--days", help="Expire after this many days (default: never; revoke by deactivating the user)")] = None,
    db: DbOpt = None, project: ProjectOpt = None, config: ConfigOpt = None,
) -> None:
    """Print a new personal API token for NAME (send it as 'Authorization: Bearer <token>')."""
    from clinreason.store import db as store_db
    from clinreason.store.common import now
    from clinreason.web import auth

    ctx = _context(db, project, config)
    project_id = ctx.project_row()["id"]
    with store_db.transaction(ctx.engine) as conn:
        user = auth.get_user(conn, username=name)
        if user is None:
            _fail(f"no user named '{name}' (see `clinreason users list`)")
        expires = now() + timedelta(days=days) if days else None
        token = auth.create_token(conn, user_id=user.id, project_id=project_id, kind="personal",
                                  name="cli", expires_at=expires)
    typer.echo(token)


@users_app.command("deactivate")
def users_deactivate(
    name: Annotated[str, typer.Argument(help="User name")],
    db: DbOpt = None, project: ProjectOpt = None, config: ConfigOpt = None,
) -> None:
    """Lock a user out (their sessions and tokens stop working); their reviews stay."""
    from clinreason.store import accounts
    from clinreason.store import db as store_db

    ctx = _context(db, project, config)
    with store_db.transaction(ctx.engine) as conn:
        if not accounts.set_active(conn, username=name, active=False):
            _fail(f"no user named '{name}'")
    typer.echo(f"deactivated '{name}'")
