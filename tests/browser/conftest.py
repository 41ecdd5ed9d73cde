"""Browser tests: the real app on a real socket, driven by headless Chromium through Playwright. The
whole stack runs, the consensus stage included when it is installed.

Uses Debian's /usr/bin/chromium (never `playwright install`). Without it the tests are skipped with a
message, except under CI=true, where a missing browser is a failure. Screenshots go to test-artifacts/."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture(scope="module")
def browser():
    """One Chromium per test module. Module scope, not session: Playwright's sync API keeps an event loop
    running in this thread while it is open, which would break later tests that call asyncio.run()."""
    if not Path(CHROMIUM).exists():
        message = f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium) to run the browser tests"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true: {message}")
        pytest.skip(message)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but playwright is not installed (pip install -e '.[dev]')")
        pytest.skip("playwright is not installed (pip install -e '.[dev]')")
    from playwright.sync_api import expect

    # assertions wait up to 15 s, not Playwright's 5 s: a page that renders in 0.2 s alone can take seconds
    # on a 2-core machine running other work; a real failure still fails, only later
    expect.set_options(timeout=15_000)
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def site(tmp_path):
    """A fresh SQLite database with the default project, served on 127.0.0.1 by uvicorn in a thread."""
    from web import factories

    from clinreason.config import ProjectConfig, Settings
    from clinreason.store import db
    from clinreason.web import create_app
    from clinreason.web.auth import AuthConfig

    url = f"sqlite:///{tmp_path / 'browser.db'}"
    engine = db.make_engine(url)
    db.upgrade(engine)
    with engine.begin() as conn:
        project = factories.make_project(conn, name="default")
    settings = Settings(db_url=url, project="default", config_path=tmp_path / "clinreason.toml",
                        project_config=ProjectConfig())
    app = create_app(settings, engine=engine, auth_config=AuthConfig(secret_key="browser-test-key-" + "y" * 32))
    with factories.LiveServer(app) as server:
        server.engine, server.project = engine, project
        yield server
    engine.dispose()


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
