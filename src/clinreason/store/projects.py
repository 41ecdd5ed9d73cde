"""Projects: their stored configuration and their versioned rubric."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Text, bindparam, cast, exists, insert, select, update

from clinreason.domain.messages import N_
from clinreason.store.common import NotFoundError, now
from clinreason.store.decisions import add_event
from clinreason.store.hot import Hot
from clinreason.store.tables import calibration, projects, rubric_versions


def get_project(conn: Connection, *, name: str) -> dict[str, Any] | None:
    row = conn.execute(select(projects).where(projects.c.name == name)).mappings().first()
    return dict(row) if row else None


def get_project_by_id(conn: Connection, *, project_id: int) -> dict[str, Any] | None:
    row = conn.execute(select(projects).where(projects.c.id == project_id)).mappings().first()
    return dict(row) if row else None


def require_project(conn: Connection, *, name: str) -> dict[str, Any]:
    project = get_project(conn, name=name)
    if project is None:
        raise NotFoundError(N_("project '{name}' does not exist in this database (run `clinreason init --project {name}`)"),
                            {"name": name})
    return project


def list_projects(conn: Connection) -> list[dict[str, Any]]:
    return [dict(r) for r in conn.execute(select(projects).order_by(projects.c.name)).mappings()]


def ensure_project(conn: Connection, *, name: str, config: dict[str, Any], rubric: dict[str, Any],
                   actor: str = "system") -> tuple[dict[str, Any], bool]:
    """Create the project if missing. Returns (project, created)."""
    existing = get_project(conn, name=name)
    if existing is not None:
        return existing, False
    ts = now()
    inserted = conn.execute(insert(projects).values(name=name, config=config, created_at=ts)).inserted_primary_key
    assert inserted is not None
    pid = inserted[0]
    conn.execute(insert(rubric_versions).values(project_id=pid, version=1, body={**rubric, "version": 1},
                                                created_by=actor, created_at=ts))
    add_event(conn, project_id=pid, kind="project.created", actor=actor, after={"name": name})
    return require_project(conn, name=name), True


def project_config(conn: Connection, *, project_id: int) -> dict[str, Any]:
    """The stored configuration of the project (the truth every stage reads)."""
    config = conn.execute(select(projects.c.config).where(projects.c.id == project_id)).scalar_one()
    return dict(config or {})


#: the project's stored configuration and its latest rubric as their JSON text, and whether it has any
#: calibration item, in one statement (built once): the text is what a parsed copy is cached by
#: (stages/settings.py), so a changed configuration or a new rubric version is a different key
_REVIEW_SETTINGS = Hot(select(
    cast(projects.c.config, Text),
    select(cast(rubric_versions.c.body, Text)).where(rubric_versions.c.project_id == projects.c.id)
    .order_by(rubric_versions.c.version.desc()).limit(1).scalar_subquery(),
    exists().where(calibration.c.project_id == projects.c.id),
).where(projects.c.id == bindparam("project_id")))


def review_settings_text(conn: Connection, *, project_id: int) -> tuple[str, str | None, bool] | None:
    """(the stored configuration, the latest rubric body, each as JSON text; whether the project has a
    calibration item); None when there is no such project."""
    row = _REVIEW_SETTINGS.run(conn, {"project_id": project_id}).first()
    return (str(row[0]), row[1], bool(row[2])) if row is not None else None


def set_project_config(conn: Connection, *, project_id: int, config: dict[str, Any], actor: str,
                       changes: dict[str, Any] | None = None) -> None:
    conn.execute(update(projects).where(projects.c.id == project_id).values(config=config))
    add_event(conn, project_id=project_id, kind="project.config_changed", actor=actor, detail=changes or {})


def latest_rubric(conn: Connection, *, project_id: int) -> dict[str, Any]:
    row = conn.execute(
        select(rubric_versions.c.body).where(rubric_versions.c.project_id == project_id)
        .order_by(rubric_versions.c.version.desc()).limit(1)
    ).first()
    if row is None:
        raise NotFoundError(f"project {project_id} has no rubric")
    return dict(row[0])


def rubric_history(conn: Connection, *, project_id: int) -> list[dict[str, Any]]:
    """Every rubric version, oldest first: version, created_by, created_at, body."""
    return [dict(r) for r in conn.execute(
        select(rubric_versions).where(rubric_versions.c.project_id == project_id)
        .order_by(rubric_versions.c.version)).mappings()]


def add_rubric_version(conn: Connection, *, project_id: int, body: dict[str, Any], actor: str) -> int:
    """Store a changed rubric as a new version (reviews keep the version they were scored with)."""
    current = latest_rubric(conn, project_id=project_id)

    def strip(b: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in b.items() if k != "version"}

    if strip(current) == strip(body):
        return int(current["version"])
    version = int(current["version"]) + 1
    conn.execute(insert(rubric_versions).values(project_id=project_id, version=version,
                                                body={**strip(body), "version": version}, created_by=actor,
                                                created_at=now()))
    add_event(conn, project_id=project_id, kind="rubric.versioned", actor=actor,
              before={"version": current["version"]}, after={"version": version})
    return version
