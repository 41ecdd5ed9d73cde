"""Every route of the web app while its database does not answer: a 503 with Retry-After — JSON under
/api/, the HTML error page elsewhere — whether the caller sends a bearer token or a browser session
(the sign-in lookup is the first thing to meet the outage), never a 500; and once the database is back,
the same app answers as before without a restart.

The outage is a PostgreSQL URL whose port nobody listens on (connection refused), swapped in under a
running app; no server is needed, so this runs in every `make test`. The whole scenario with a real
PostgreSQL restart is in test_db_restart.py."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from web import factories

from clinreason.config import ProjectConfig, Settings
from clinreason.store import db
from clinreason.store import projects as store_projects
from clinreason.testing.helpers import free_port
from clinreason.web.app import api_routes

pytest.importorskip("psycopg")


def _path(route: APIRoute) -> str:
    return re.sub(r"\{[^}]+\}", "x1", route.path)


@pytest.fixture
def app_and_engine(tmp_path):
    from clinreason.web import create_app

    url = f"sqlite:///{tmp_path / 'c.db'}"
    engine = db.make_engine(url)
    db.upgrade(engine)
    pc = ProjectConfig()
    with engine.begin() as conn:
        project, _ = store_projects.ensure_project(conn, name="default", rubric=pc.rubric,
                                                   config=pc.model_dump(mode="json", exclude={"rubric"}))
        admin = factories.make_user(conn, username="root", role="admin")
        admin["token"] = factories.make_token(conn, user_id=admin["id"], project_id=project["id"])
    settings = Settings(db_url=url, project="default", config_path=Path(tmp_path / "clinreason.toml"),
                        project_config=pc)
    app = create_app(settings, engine=engine)
    yield app, engine, admin
    engine.dispose()


def test_every_route_answers_503_with_retry_after_while_the_database_is_unreachable(app_and_engine):
    app, engine, admin = app_and_engine
    bearer = {"Authorization": f"Bearer {admin['token']}"}
    browser = TestClient(app, raise_server_exceptions=False)
    signed_in = factories.browser_login(browser, "root")
    assert signed_in.status_code in (200, 303), signed_in.text
    dashboard = browser.get("/dashboard")
    assert dashboard.status_code == 200, dashboard.text[:300]
    csrf = factories.csrf_of(dashboard.text)
    api = TestClient(app, raise_server_exceptions=False)
    routes = [(route, method) for route in api_routes() for method in sorted(route.methods)]
    assert len(routes) > 40, "the app's routes were not found"

    dead = db.make_engine(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/gone")
    app.state.web.engine = dead
    wrong: list[str] = []
    try:
        for route, method in routes:
            path = _path(route)
            if path.startswith("/api/"):
                # every route authenticates before it reads a body; the sign-in itself gets a valid one
                body = {"username": "root", "password": factories.PASSWORD} if path == "/api/login" else {}
                r = api.request(method, path, headers=bearer, json=body)
                kind_ok = r.headers.get("content-type", "").startswith("application/json")
            else:
                r = browser.request(method, path, headers={"X-CSRF-Token": csrf}, data={"csrf_token": csrf})
                kind_ok = r.headers.get("content-type", "").startswith("text/html") and "<html" in r.text.lower()
            if r.status_code != 503 or not r.headers.get("retry-after", "").isdigit() or not kind_ok:
                wrong.append(f"{method} {path}: {r.status_code} {r.headers.get('content-type')} {r.text[:120]!r}")
    finally:
        app.state.web.engine = engine
        dead.dispose()
    assert wrong == [], "\n".join(wrong)

    # the database is back: the same app, the same session and token, answer as before
    assert api.get("/api/status", headers=bearer).status_code == 200
    assert browser.get("/dashboard").status_code == 200
