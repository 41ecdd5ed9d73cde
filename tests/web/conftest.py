"""Fixtures for the web app: the app on the `engine` fixture (SQLite and PostgreSQL), a TestClient,
and `seed`, which writes users, tokens and items straight into the tables."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from web import factories

SECRET = "test-signing-key-" + "x" * 32


def pytest_configure(config):
    config.addinivalue_line("markers", "real_consensus_lookup: keep the review stage's call of the consensus stage")


@pytest.fixture(autouse=True)
def no_consensus(request, monkeypatch):
    """Consensus (another stage) would move items on; these tests pin the review stage alone. The call
    itself is tested in test_review_stage.py::test_consensus_hook_runs_in_the_submit_transaction."""
    from clinreason.stages import consensus

    if request.node.get_closest_marker("real_consensus_lookup") is None:
        monkeypatch.setattr(consensus, "on_review_submitted", lambda conn, **kwargs: None)


@dataclass
class Seed:
    engine: Engine
    project: dict[str, Any]

    def user(self, username: str, role: str = "reviewer", specialties: list[str] | None = None) -> dict[str, Any]:
        with self.engine.begin() as conn:
            user = factories.make_user(conn, username=username, role=role, specialties=specialties)
            user["token"] = factories.make_token(conn, user_id=user["id"], project_id=self.project["id"])
        user["auth"] = {"Authorization": f"Bearer {user['token']}"}
        return user

    def item(self, **kwargs: Any) -> tuple[str, str]:
        kwargs.setdefault("project_id", self.project["id"])
        with self.engine.begin() as conn:
            return factories.make_item(conn, **kwargs)

    def other_project(self, name: str = "other") -> dict[str, Any]:
        with self.engine.begin() as conn:
            return factories.make_project(conn, name=name)

    def set_overlap(self, k: int) -> None:
        from sqlalchemy import update

        from clinreason.store.tables import projects

        config = dict(self.project["config"])
        config["review"] = {**config.get("review", {}), "overlap": k}
        with self.engine.begin() as conn:
            conn.execute(update(projects).where(projects.c.id == self.project["id"]).values(config=config))
        self.project["config"] = config


@pytest.fixture
def seed(engine, project) -> Seed:
    return Seed(engine=engine, project=project)


@pytest.fixture
def web_settings(db_url, tmp_path):
    from clinreason.config import ProjectConfig, Settings

    return Settings(db_url=db_url, project="default", config_path=Path(tmp_path / "clinreason.toml"),
                    project_config=ProjectConfig())


@pytest.fixture
def web_app(engine, project, web_settings):
    from clinreason.web import create_app
    from clinreason.web.auth import AuthConfig

    return create_app(web_settings, engine=engine, auth_config=AuthConfig(secret_key=SECRET))


@pytest.fixture
def client(web_app):
    from fastapi.testclient import TestClient

    with TestClient(web_app) as c:
        yield c
