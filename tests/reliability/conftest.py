"""Fixtures for the crash-safety scenarios: a database URL per backend (each PostgreSQL test gets a database
of its own on the test cluster, so workers and servers in other processes can use it freely and the
suite's shared database is never emptied under another test's feet)."""

from __future__ import annotations

import os
import uuid

import pytest
from sqlalchemy import create_engine, text


def _cluster_url() -> str:
    """The test cluster's URL (as tests/conftest.py's `pg_url`, without emptying its shared database)."""
    url = os.environ.get("CLINREASON_TEST_PG_URL")
    if not url:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but CLINREASON_TEST_PG_URL is not set: the reliability tests must run on PostgreSQL too")
        pytest.skip("PostgreSQL not available: set CLINREASON_TEST_PG_URL (make test starts a throwaway cluster)")
    return url


def _own_database(base_url: str):
    name = f"reliability_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    head, _, _ = base_url.rpartition("/")
    try:
        yield f"{head}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def own_pg_url():
    """A fresh, empty PostgreSQL database of this test's own (skips, or fails under CI, without a cluster)."""
    yield from _own_database(_cluster_url())


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path):
    """(backend name, SQLAlchemy URL) for a database nobody else uses."""
    if request.param == "sqlite":
        yield "sqlite", f"sqlite:///{tmp_path / 'c.db'}"
        return
    yield from (("postgresql", url) for url in _own_database(_cluster_url()))
