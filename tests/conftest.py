"""Shared fixtures. Store tests take `db_url`, parametrised over SQLite and PostgreSQL; the PostgreSQL
half needs CLINREASON_TEST_PG_URL (set by `make test`, which starts a throwaway cluster)."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "src" / "clinreason" / "samples"
SHARED_DATA = REPO.parent / "shared" / "data"

_backend_results: Counter = Counter()


def _pg_url() -> str | None:
    return os.environ.get("CLINREASON_TEST_PG_URL")


def fresh_postgres_url() -> str:
    """The test cluster's URL with an empty schema; skips (fails under CI) when there is no cluster."""
    url = _pg_url()
    if not url:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but CLINREASON_TEST_PG_URL is not set: the store tests must run on PostgreSQL too")
        pytest.skip("PostgreSQL not available: set CLINREASON_TEST_PG_URL (make test starts a throwaway cluster)")
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.db'}"
    return fresh_postgres_url()


@pytest.fixture
def pg_url() -> str:
    return fresh_postgres_url()


@pytest.fixture
def backend_name(db_url) -> str:
    return "postgresql" if db_url.startswith("postgresql") else "sqlite"


@pytest.fixture
def engine(db_url):
    from clinreason.store import db

    eng = db.make_engine(db_url)
    db.upgrade(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def project(engine):
    """A project named 'default' with the default rubric; returns its row."""
    from clinreason.config import ProjectConfig
    from clinreason.store import projects as store_projects

    pc = ProjectConfig()
    with engine.begin() as conn:
        row, _ = store_projects.ensure_project(conn, name="default", config=pc.model_dump(mode="json", exclude={"rubric"}),
                                     rubric=pc.rubric)
    return row


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"the full question banks are not here ({SHARED_DATA} is absent): "
                    "these tests run where ../shared/data exists, as in CI")
    return SHARED_DATA


def pytest_runtest_logreport(report):
    if report.when == "call" and report.passed:
        if "[sqlite" in report.nodeid or "-sqlite" in report.nodeid:
            _backend_results["sqlite"] += 1
        elif "[postgresql" in report.nodeid or "-postgresql" in report.nodeid:
            _backend_results["postgresql"] += 1


def pytest_terminal_summary(terminalreporter):
    terminalreporter.write_sep("-", "store tests per database backend")
    terminalreporter.write_line(
        f"passed on SQLite: {_backend_results['sqlite']}, passed on PostgreSQL: {_backend_results['postgresql']}"
    )
