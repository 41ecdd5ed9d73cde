"""What the migration tests do to a database around the migration they test: copy it with `clinreason
migrate-db`, or build a fresh one and take it back down to an earlier revision."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import Engine
from typer.testing import CliRunner

from clinreason.cli import app
from clinreason.store import db as dbm


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
