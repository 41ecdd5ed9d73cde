"""Opening the store for a command: settings -> engine -> initialised schema -> project."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, inspect

from clinreason.config import Settings
from clinreason.store import db
from clinreason.store import repository as repo


class NotInitialised(RuntimeError):
    pass


@dataclass
class Context:
    settings: Settings
    engine: Engine

    @property
    def project(self) -> str:
        return self.settings.project

    def project_row(self) -> dict[str, Any]:
        with self.engine.connect() as conn:
            return repo.require_project(conn, name=self.project)


def open_context(settings: Settings) -> Context:
    """Connect and make sure the schema is current; refuse politely when `init` was never run."""
    engine = db.make_engine(settings.db_url)
    if "projects" not in inspect(engine).get_table_names():
        engine.dispose()
        raise NotInitialised(f"database {settings.db_url} is not initialised: run `clinreason init` first")
    if db.current_revision(engine) != db.head_revision():
        db.upgrade(engine)
    return Context(settings=settings, engine=engine)


def initialise(settings: Settings, *, actor: str = "cli") -> tuple[Context, bool, int]:
    """Create or upgrade the schema, create the project, record a changed rubric as a new version.
    Returns (context, project_created, rubric_version)."""
    engine = db.make_engine(settings.db_url)
    db.upgrade(engine)
    pc = settings.project_config
    config = pc.model_dump(mode="json", exclude={"rubric"})  # no secret in it: the API key is env-only
    with engine.begin() as conn:
        project, created = repo.ensure_project(conn, name=settings.project, config=config, rubric=pc.rubric, actor=actor)
        version = repo.add_rubric_version(conn, project_id=project["id"], body=pc.rubric, actor=actor)
        if not created and project["config"] != config:
            from sqlalchemy import update

            from clinreason.store.tables import projects

            conn.execute(update(projects).where(projects.c.id == project["id"]).values(config=config))
            repo.add_event(conn, project_id=project["id"], kind="project.config_changed", actor=actor)
    return Context(settings=settings, engine=engine), created, version


def llm_backend(settings: Settings, concurrency: int | None = None, *, judge: bool = False):
    """The project's configured LLM backend (or its judge), wrapped in retries and limits. The API key
    comes from the environment only (Settings.llm_api_key)."""
    from clinreason.llm.factory import make_backend

    pc = settings.project_config
    llm = pc.llm
    prices = {m: (float(p[0]), float(p[1])) for m, p in llm.prices.items() if len(p) == 2}
    common = {"api_key": settings.llm_api_key, "timeout": llm.timeout, "concurrency": concurrency or llm.concurrency,
              "prices": prices, "max_attempts": llm.max_attempts, "outage_patience": llm.outage_patience}
    if judge:
        return make_backend(backend=pc.screen.judge_backend, base_url=pc.screen.judge_base_url or llm.base_url,
                            model=pc.screen.judge_model or llm.model, **common)
    return make_backend(backend=llm.backend, base_url=llm.base_url, model=llm.model, **common)
