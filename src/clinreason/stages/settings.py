"""The project's configuration as every stage reads it: the copy stored in the database (written by
`clinreason init` and the admin pages), validated into the typed `ProjectConfig`, with the environment's
LLM overrides on top. One reader, so the web app, the worker, screening and the simulator agree.

The review path reads the `[review]` settings and the current rubric on every lease and submission: one
statement returns both as their stored JSON text, and the parsed objects are cached by that text (so a
changed configuration or a new rubric version, in this process or another, is parsed afresh; the cached
objects are shared, and nobody changes them)."""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Iterator

from sqlalchemy import Connection

from clinreason.config import ProjectConfig, ReviewConfig, stored_config
from clinreason.domain.consensus import Policy
from clinreason.domain.rubric import Rubric, rubric_from_dict
from clinreason.store import projects
from clinreason.store.common import NotFoundError


def project_config(conn: Connection, project: dict[str, Any]) -> ProjectConfig:
    """The whole configuration of a project (its row), with its current rubric."""
    return stored_config(project["name"], project["config"], rubric=projects.latest_rubric(conn, project_id=project["id"]))


@lru_cache(maxsize=64)
def _review_from_text(text: str) -> tuple[ReviewConfig, Policy]:
    cfg = ReviewConfig.from_stored(json.loads(text))
    return cfg, cfg.policy()


@lru_cache(maxsize=64)
def _rubric_from_text(text: str) -> Rubric:
    return rubric_from_dict(json.loads(text))


@dataclass(frozen=True, slots=True)
class ReviewSettings:
    """What the review path reads on every lease and submission (one statement, `review_settings`)."""

    config: ReviewConfig
    policy: Policy
    rubric: Rubric
    has_probes: bool  # the project has a calibration item (else no lease needs to look for one)


_HELD = "clinreason.settings.held"


@contextmanager
def holding(conn: Connection, project_id: int) -> Iterator[None]:
    """Within this block, every read of the project's review settings on this connection takes them as read
    at its start (for a caller that knows nothing changes them meanwhile: the simulator's transactions)."""
    conn.info[_HELD] = (project_id, _settings_text(conn, project_id))
    try:
        yield
    finally:
        conn.info.pop(_HELD, None)


def _settings_text(conn: Connection, project_id: int) -> tuple[str, str | None, bool]:
    held = conn.info.get(_HELD)
    if held is not None and held[0] == project_id:
        return held[1]
    found = projects.review_settings_text(conn, project_id=project_id)
    if found is None:
        raise NotFoundError(f"project {project_id} does not exist")
    return found


def review_config(conn: Connection, project_id: int) -> ReviewConfig:
    """The review policy settings, read on every lease and submission."""
    return _review_from_text(_settings_text(conn, project_id)[0])[0]


def review_view(conn: Connection, project_id: int) -> tuple[ReviewConfig, dict[str, Any]]:
    """The review settings and the current rubric's stored body (a fresh dict), as a reviewer's assignment
    shows them: the same one statement as `review_settings`."""
    config, rubric, _ = _settings_text(conn, project_id)
    if rubric is None:
        raise NotFoundError(f"project {project_id} has no rubric")
    return _review_from_text(config)[0], json.loads(rubric)


def review_settings(conn: Connection, project_id: int) -> ReviewSettings:
    """The review settings, the consensus policy they make, the project's current rubric and whether it has
    calibration items (one statement; the parsed objects are cached)."""
    config, rubric, has_probes = _settings_text(conn, project_id)
    if rubric is None:
        raise NotFoundError(f"project {project_id} has no rubric")
    cfg, policy = _review_from_text(config)
    return ReviewSettings(cfg, policy, _rubric_from_text(rubric), has_probes)


def review_policy(conn: Connection, project_id: int) -> Policy:
    """The consensus policy of the project's review settings (`review_config(...).policy()`, cached)."""
    return _review_from_text(_settings_text(conn, project_id)[0])[1]
