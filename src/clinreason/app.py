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
    config = pc.model_dump(mode="json", exclude={"rubric"})
    config["llm"].pop("api_key", None)
    with engine.begin() as conn:
        project, created = repo.ensure_project(conn, name=settings.project, config=config, rubric=pc.rubric, actor=actor)
        version = repo.add_rubric_version(conn, project_id=project["id"], body=pc.rubric, actor=actor)
        if not created and project["config"] != config:
            from sqlalchemy import update

            from clinreason.store.tables import projects

            conn.execute(update(projects).where(projects.c.id == project["id"]).values(config=config))
            repo.add_event(conn, project_id=project["id"], kind="project.config_changed", actor=actor)
    return Context(settings=settings, engine=engine), created, version
