"""`clinreason demo`: the pipeline end to end on the bundled sample questions, on embedded defaults."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import typer

from clinreason.config import DEFAULT_CONFIG_TOML, resolve_settings


def samples_dir() -> Path:
    return Path(str(resources.files("clinreason") / "samples"))


DEMO_PEOPLE = (("admin", "admin"), ("reviewer1", "reviewer"), ("reviewer2", "reviewer"), ("adjudicator", "adjudicator"))


def seed_demo_users(engine, project_id: int) -> dict[str, str]:
    """The demo's people, each with a fresh one-time password (printed once, stored only as a hash)."""
    import secrets

    from clinreason.store import accounts
    from clinreason.store import db as store_db
    from clinreason.web import auth

    passwords = {}
    with store_db.transaction(engine) as conn:
        for name, role in DEMO_PEOPLE:
            password = secrets.token_urlsafe(12)
            user = auth.get_user(conn, username=name)
            if user is None:
                auth.create_user(conn, username=name, role=role, password=password, specialties=[], actor="demo",
                                 project_id=project_id)
            else:
                accounts.set_password_hash(conn, user_id=user.id, password_hash=auth.hash_password(password))
            passwords[name] = password
    return passwords


def run_demo(workdir: Path, *, limit: int | None = None, serve: bool = False, port: int = 8000) -> None:
    import asyncio

    from clinreason.app import initialise, llm_backend
    from clinreason.stages.ingest import import_path
    from clinreason.stages.runner import DRAFT, REGENERATE, run_llm_stage
    from clinreason.stages.screen import run_screening
    from clinreason.store import projects as store_projects
    from clinreason.store import readmodels as store_readmodels

    steps = 5 if serve else 4
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "clinreason.toml"
    if not config_path.exists():
        config_path.write_text(DEFAULT_CONFIG_TOML, encoding="utf-8")
    db_path = workdir / "clinreason.db"
    settings = resolve_settings(db=f"sqlite:///{db_path}", project="default", config=str(config_path))
    pc = settings.project_config
    ctx, report = initialise(settings, actor="demo")
    created = report.created
    typer.echo(f"[1/{steps}] database {db_path} ready (project 'default' {'created' if created else 'reused'})")

    summary = import_path(ctx.engine, project="default", path=samples_dir(), fmt="auto", actor="demo")
    typer.echo(f"[2/{steps}] imported the bundled samples: {summary.added} new items from {len(summary.files)} files "
               f"({summary.duplicates} duplicates, {summary.flagged} flagged)")
    with ctx.engine.connect() as conn:
        project = store_projects.require_project(conn, name="default")

    llm = pc.llm
    backend = llm_backend(settings)
    typer.echo(f"[3/{steps}] drafting with {backend.model_id} (the embedded model is tiny and weak at medicine: "
               "it shows the plumbing, not the quality; point CLINREASON_LLM_BASE_URL at a real model for real work)")

    async def pipeline():
        try:
            draft = await run_llm_stage(ctx.engine, project=project, pc=pc, backend=backend, kind=DRAFT, limit=limit,
                                        concurrency=llm.concurrency)
            screen = await run_screening(ctx.engine, project=project, pc=pc)
            regen = await run_llm_stage(ctx.engine, project=project, pc=pc, backend=backend, kind=REGENERATE,
                                        concurrency=llm.concurrency)
            rescreen = await run_screening(ctx.engine, project=project, pc=pc)
            return draft, screen, regen, rescreen
        finally:
            await backend.aclose()

    draft, screen, regen, rescreen = asyncio.run(pipeline())
    typer.echo(f"      drafted {draft.stored} in {draft.wall_seconds:.0f} s ({draft.failed} failed); screening sent "
               f"{screen.to_review} to review and {screen.to_regeneration} back for guided regeneration; "
               f"regenerated {regen.stored}, of which {rescreen.to_review} went to review")
    with ctx.engine.connect() as conn:
        counts = store_readmodels.status_counts(conn, project_id=project["id"])
    typer.echo(f"[4/{steps}] status: " + json.dumps({k: counts[k] for k in ("items", "rationales", "reviews", "by_state",
                                                                         "by_model")}, ensure_ascii=False))
    if not serve:
        typer.echo("look next (the review app starts by itself when the demo runs in a terminal, or with --serve):")
        typer.echo(f"  clinreason status --db {db_path}")
        typer.echo(f"  clinreason users add NAME --role reviewer --db {db_path}")
        typer.echo(f"  clinreason serve --db {db_path} --config {config_path}   # the review app, with the worker")
        ctx.engine.dispose()
        return
    import uvicorn

    from clinreason.web.app import create_app
    from clinreason.web.background import BackgroundWorker

    passwords = seed_demo_users(ctx.engine, project["id"])
    typer.echo(f"[5/5] the review app is starting on http://127.0.0.1:{port}/ — sign in as (one-time passwords):")
    for name, role in DEMO_PEOPLE:
        typer.echo(f"      {role:<12} {name:<12} {passwords[name]}")
    typer.echo("      reviewers score, edit or send drafts back; the worker in this process regenerates them. "
               "Ctrl+C stops everything.")
    background = BackgroundWorker(ctx)
    background.start()
    try:
        uvicorn.run(create_app(settings, engine=ctx.engine), host="127.0.0.1", port=port, log_level="warning",
                    proxy_headers=False)
    finally:
        background.stop()
        ctx.engine.dispose()
