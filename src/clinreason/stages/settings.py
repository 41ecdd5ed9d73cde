"""The project's configuration as every stage reads it: the copy stored in the database (written by
`clinreason init` and the admin pages), validated into the typed `ProjectConfig`, with the environment's
LLM overrides on top. One reader, so the web app, the worker, screening and the simulator agree."""

from __future__ import annotations

from sqlalchemy import Connection

from clinreason.config import ProjectConfig, ReviewConfig, stored_config
from clinreason.store import projects


def project_config(conn: Connection, project_id: int) -> ProjectConfig:
    project = projects.get_project_by_id(conn, project_id=project_id)
    if project is None:
        raise LookupError(f"project {project_id} does not exist")
    return stored_config(project["name"], project["config"], rubric=projects.latest_rubric(conn, project_id=project_id))


def review_config(conn: Connection, project_id: int) -> ReviewConfig:
    return ReviewConfig.model_validate(projects.project_config(conn, project_id=project_id).get("review") or {})
