"""`clinreason simulate --db URL --keep`: the simulated project lands in a real database (SQLite or
PostgreSQL) where the other verbs can read it, decided exactly as on the scratch database; a database that
already holds anything is refused and left as it was."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from clinreason.cli import app
from clinreason.stages.simulate import TargetNotEmpty, run_simulation
from clinreason.store import db as dbm
from clinreason.store.tables import decisions, items, projects


def _count(url: str, table, project: str | None = None) -> int:
    engine = dbm.make_engine(url)
    try:
        with engine.connect() as conn:
            query = select(func.count()).select_from(table)
            if project is not None:
                query = query.select_from(table.join(projects, projects.c.id == table.c.project_id)).where(
                    projects.c.name == project)
            return int(conn.execute(query).scalar_one())
    finally:
        engine.dispose()


def test_keep_writes_the_project_decided_as_on_the_scratch_database(db_url, tmp_path):
    kept = run_simulation(policy="fixed-2", n_items=30, seed=3, db_url=db_url).to_dict()
    scratch = run_simulation(policy="fixed-2", n_items=30, seed=3, workdir=tmp_path / "scratch").to_dict()
    assert kept == scratch
    assert _count(db_url, items, project="simulation") == 30
    assert _count(db_url, decisions) == kept["accepted"] + kept["excluded"] == 30
    out = CliRunner().invoke(app, ["export", str(tmp_path / "out"), "--db", db_url, "--project", "simulation",
                                   "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["total"] == kept["accepted"]


def test_keep_refuses_a_database_that_is_not_empty_and_writes_nothing(db_url):
    run_simulation(policy="fixed-1", n_items=5, seed=1, db_url=db_url)
    with pytest.raises(TargetNotEmpty, match="not empty"):
        run_simulation(policy="fixed-1", n_items=8, seed=2, db_url=db_url, project="second")
    out = CliRunner().invoke(app, ["simulate", "--items", "8", "--db", db_url, "--keep", "--project", "second"])
    assert out.exit_code == 2 and "not empty" in out.output
    assert _count(db_url, projects) == 1 and _count(db_url, items) == 5


def test_cli_keep_and_db_go_together(tmp_path):
    for args in (["--keep"], ["--db", str(tmp_path / "x.db")]):
        out = CliRunner().invoke(app, ["simulate", "--items", "5", *args])
        assert out.exit_code == 2 and "--db and --keep go together" in out.output
    assert not (tmp_path / "x.db").exists()


def test_cli_keep_prints_where_the_project_is(tmp_path):
    target = tmp_path / "kept.db"
    out = CliRunner().invoke(app, ["simulate", "--policy", "adaptive", "--items", "12", "--db", str(target), "--keep"])
    assert out.exit_code == 0, out.output
    assert f"kept in {target} as project 'simulation'" in out.output
    assert _count(str(target), items, project="simulation") == 12
