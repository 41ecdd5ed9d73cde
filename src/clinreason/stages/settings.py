"""The project's configuration as every stage reads it: the copy stored in the database (written by
`clinreason init` and the admin pages), validated into the typed `ProjectConfig`, with the environment's
LLM overrides on top. One reader, so the web app, the worker, screening and the simulator agree."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from clinreason.config import ProjectConfig, ReviewConfig, stored_config
from clinreason.store import projects


def project_config(conn: Connection, project: dict[str, Any]) -> ProjectConfig:
    """The whole configuration of a project (its row), with its current rubric."""
    return stored_config(project["name"], project["config"], rubric=projects.latest_rubric(conn, project_id=project["id"]))


def review_config(conn: Connection, project_id: int) -> ReviewConfig:
    """The review policy settings, read on every lease and submission."""
    return ReviewConfig.from_stored(projects.project_config(conn, project_id=project_id))
