"""Opening the store for a command: settings -> engine -> initialised schema -> project."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, inspect

from clinreason.config import ConfigError, Settings, config_changes, load_project_config
from clinreason.stages.settings import project_config
from clinreason.store import db, projects


class NotInitialised(RuntimeError):
    pass


@dataclass
class Context:
    settings: Settings
    engine: Engine
    #: `key: stored -> file` lines where the config file differs from the project's stored configuration
    #: (the file takes effect through `clinreason init`)
    config_drift: list[str] = field(default_factory=list)

    @property
    def project(self) -> str:
        return self.settings.project

    def project_row(self) -> dict[str, Any]:
        with self.engine.connect() as conn:
            return projects.require_project(conn, name=self.project)


def _with_stored_config(settings: Settings, engine: Engine) -> tuple[Settings, list[str]]:
    """The settings with the project's stored configuration in place of the file's (the database is where
    a project's configuration lives once `init` has run; the admin pages change it there too), and where
    the config file says something else than that stored configuration. One read of the project."""
    with engine.connect() as conn:
        project = projects.get_project(conn, name=settings.project)
        if project is None:
            return settings, []
        stored = project_config(conn, project)
    return settings.model_copy(update={"project_config": stored}), _drift(settings, project)


def _drift(settings: Settings, project: dict[str, Any]) -> list[str]:
    """`key: stored -> file` lines where the config file differs from the project's stored configuration."""
    if not settings.config_path.exists():
        return []
    try:
        file_config = load_project_config(settings.config_path).model_dump(mode="json", exclude={"rubric", "name"})
    except ConfigError:
        return []
    stored = {k: v for k, v in (project["config"] or {}).items() if k not in ("_file", "name")}
    return config_changes(stored, file_config)


def open_context(settings: Settings) -> Context:
    """Connect and make sure the schema is current; refuse politely when `init` was never run."""
    engine = db.make_engine(settings.db_url)
    if "projects" not in inspect(engine).get_table_names():
        engine.dispose()
        raise NotInitialised(f"database {settings.db_url} is not initialised: run `clinreason init` first")
    if db.current_revision(engine) != db.head_revision():
        db.upgrade(engine)
    stored, drift = _with_stored_config(settings, engine)
    return Context(settings=stored, engine=engine, config_drift=drift)


def _digest(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


@dataclass
class InitReport:
    created: bool
    rubric_version: int
    #: `key: old -> new` lines of the configuration the file changed
    config_changes: list[str] = field(default_factory=list)
    #: what happened to the rubric: "unchanged", "stored", or why the file's was not applied
    rubric_note: str = "unchanged"


def initialise(settings: Settings, *, actor: str = "cli") -> tuple[Context, InitReport]:
    """Create or upgrade the schema, create the project, and bring the file's changes into the stored
    configuration. A rubric is stored as a new version only when the file's rubric changed since the
    last `init` applied it; a rubric edited in the browser since then is never replaced silently: the
    report says it was kept, and the file's rubric is stored only as the next version, on top of it."""
    engine = db.make_engine(settings.db_url)
    db.upgrade(engine)
    pc = settings.project_config
    file_config = pc.model_dump(mode="json", exclude={"rubric"})  # no secret in it: the API key is env-only
    file_rubric = {k: v for k, v in pc.rubric.items() if k != "version"}
    with db.transaction(engine) as conn:
        marker = {"rubric_sha256": _digest(file_rubric)}
        project, created = projects.ensure_project(conn, name=settings.project, config={**file_config, "_file": marker},
                                                   rubric=file_rubric, actor=actor)
        report = InitReport(created=created, rubric_version=int(projects.latest_rubric(
            conn, project_id=project["id"])["version"]))
        if created:
            return Context(settings=settings, engine=engine), report
        stored = dict(project["config"] or {})
        applied = (stored.get("_file") or {}).get("rubric_sha256")
        current = projects.rubric_history(conn, project_id=project["id"])[-1]
        if applied != marker["rubric_sha256"]:
            edited_in_browser = str(current["created_by"]).startswith("user:")
            report.rubric_version = projects.add_rubric_version(conn, project_id=project["id"], body=file_rubric,
                                                                actor=actor)
            if report.rubric_version == current["version"]:
                report.rubric_note = "unchanged"
            elif edited_in_browser:
                report.rubric_note = (f"stored as version {report.rubric_version}; version {current['version']}, "
                                      f"edited in the browser by {current['created_by']}, stays in the history")
            else:
                report.rubric_note = f"stored as version {report.rubric_version}"
        comparable = {k: v for k, v in stored.items() if k != "_file"}
        report.config_changes = config_changes(comparable, file_config)
        if report.config_changes or applied != marker["rubric_sha256"]:
            projects.set_project_config(conn, project_id=project["id"], config={**file_config, "_file": marker},
                                        actor=actor, changes={"changed": report.config_changes})
    # init just stored the file's configuration: no drift to report
    return Context(settings=_with_stored_config(settings, engine)[0], engine=engine), report

def llm_backend(settings: Settings, concurrency: int | None = None, *, judge: bool = False):
    """The project's configured LLM backend (or its judge), wrapped in retries and limits. The API key
    comes from the environment only (Settings.llm_api_key)."""
    from clinreason.llm.factory import make_backend

    pc = settings.project_config
    llm = pc.llm
    prices = {m: (float(p[0]), float(p[1])) for m, p in llm.prices.items() if len(p) == 2}
    common: dict[str, Any] = {"api_key": settings.llm_api_key, "timeout": llm.timeout, "concurrency": concurrency or llm.concurrency,
              "prices": prices, "max_attempts": llm.max_attempts, "outage_patience": llm.outage_patience}
    if judge:
        return make_backend(backend=pc.screen.judge_backend, base_url=pc.screen.judge_base_url or llm.base_url,
                            model=pc.screen.judge_model or llm.model, **common)
    return make_backend(backend=llm.backend, base_url=llm.base_url, model=llm.model, **common)
