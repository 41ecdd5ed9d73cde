"""The `clinreason` command line: the Typer app and `main` (the console script `clinreason`).

Every verb module is imported here and registered explicitly, in the order `clinreason --help` lists them:

    project.py      init, import, status, history, backup, restore
    demo.py         simulate, demo
    pipeline.py     generate, regenerate, screen, run, retry-failed (the LLM half)
    web.py          serve, and the `users` group
    analytics.py    agreement, stats, export
    migrate.py      migrate-db (the whole database into another, e.g. SQLite to PostgreSQL)
    calibration.py  the `calibration` group
    privacy.py      the `privacy` group (held items: list, show, release, edit, exclude; scan)
    common.py       what they share: --db/--project/--config, the error exit, opening the store
    doc.py          the README's CLI reference, generated from --help

Each verb module defines `verbs` (a Typer of top-level verbs) and, where it has one, a group Typer; heavy
imports stay inside the command functions, so `--help` stays fast.
"""

from __future__ import annotations

import typer

from clinreason.cli import analytics, calibration, demo, migrate, pipeline, privacy, project, web
from clinreason.cli.common import ConfigOpt, DbOpt, ProjectOpt, _context, _fail, _settings  # noqa: F401 (re-exported)

app = typer.Typer(
    name="clinreason",
    help="Build expert-verified clinical reasoning datasets: import questions, draft rationales with an LLM, "
    "screen them, have experts review them, export the result.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

for _module in (project, demo, pipeline, web, analytics, migrate):
    app.registered_commands.extend(_module.verbs.registered_commands)
app.add_typer(web.users_app, name="users")
app.add_typer(calibration.calibration_app, name="calibration")
app.add_typer(privacy.privacy_app, name="privacy")


def main() -> None:
    app()
