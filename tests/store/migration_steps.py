"""What the migration tests do to a database around the migration they test: copy it with `clinreason
migrate-db`, or build a fresh one and take it back down to an earlier revision."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import Engine
from typer.testing import CliRunner

from clinreason.cli import app
from clinreason.store import db as dbm


def project_at(tmp_path: Path, revision: str) -> tuple[Path, Engine, dict]:
    """A new SQLite file upgraded only to `revision`, holding the default project: (path, engine, project)."""
    from clinreason.config import ProjectConfig
    from clinreason.store import projects as store_projects

    path = tmp_path / f"at{revision}.db"
    engine = dbm.make_engine(f"sqlite:///{path}")
    dbm.upgrade(engine, revision)
    pc = ProjectConfig()
    with engine.begin() as conn:
        project, _ = store_projects.ensure_project(conn, name="default", rubric=pc.rubric,
                                                   config=pc.model_dump(mode="json", exclude={"rubric"}))
    return path, engine, project


def copied_by_migrate_db(path: Path, tmp_path: Path) -> Engine:
    """The SQLite database at `path` copied by `clinreason migrate-db --json` (which must succeed)."""
    copy = tmp_path / "copy.db"
    result = CliRunner().invoke(app, ["migrate-db", "--from", str(path), "--to", str(copy), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)
    return dbm.make_engine(f"sqlite:///{copy}")


def downgraded_to(tmp_path: Path, revision: str) -> Engine:
    """A new SQLite database upgraded to head, then downgraded to `revision`."""
    from alembic import command

    engine = dbm.make_engine(f"sqlite:///{tmp_path / 'db.db'}")
    dbm.upgrade(engine)
    with engine.begin() as conn:
        command.downgrade(dbm._alembic_config(conn), revision)
    return engine
