"""Consistent copies of the whole database, events included.

SQLite: the online backup API (a consistent snapshot even while a worker or the web app writes).
PostgreSQL: `pg_dump --format=custom` / `pg_restore --clean` (from Debian's postgresql-client).
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.engine import make_url


class BackupError(RuntimeError):
    pass


def _pg_tool(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    if candidates:
        return str(candidates[-1])
    raise BackupError(f"{name} not found: install PostgreSQL's client tools (Debian: apt-get install postgresql-client)")


def _libpq_args(engine: Engine) -> tuple[list[str], dict[str, str]]:
    url = make_url(str(engine.url.render_as_string(hide_password=False)))
    args = ["--host", url.host or "localhost", "--port", str(url.port or 5432), "--username", url.username or "postgres",
            "--dbname", url.database or ""]
    env = {"PGPASSWORD": url.password} if url.password else {}
    return args, env


def backup(engine: Engine, out: Path) -> Path:
    if out.exists():
        raise BackupError(f"{out} already exists: choose a new file (a backup never overwrites)")
    out.parent.mkdir(parents=True, exist_ok=True)
    if engine.dialect.name == "sqlite":
        source = sqlite3.connect(engine.url.database or "")
        target = sqlite3.connect(out)
        try:
            with target:
                source.backup(target)
        finally:
            target.close()
            source.close()
        return out
    if engine.dialect.name == "postgresql":
        import os

        args, env = _libpq_args(engine)
        run = subprocess.run([_pg_tool("pg_dump"), "--format=custom", "--no-owner", "--file", str(out), *args],
                             capture_output=True, text=True, env={**os.environ, **env})
        if run.returncode != 0:
            out.unlink(missing_ok=True)
            raise BackupError(f"pg_dump failed: {run.stderr.strip()[-500:]}")
        return out
    raise BackupError(f"backups of {engine.dialect.name} databases are not supported")


def restore(engine: Engine, source: Path) -> None:
    """Replace the database's contents with the backup's."""
    if not source.is_file():
        raise BackupError(f"{source}: no such backup file")
    if engine.dialect.name == "sqlite":
        try:
            src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
            src.execute("select count(*) from sqlite_master").fetchone()
        except sqlite3.DatabaseError as exc:
            raise BackupError(f"{source}: not a SQLite backup ({exc})") from None
        engine.dispose()
        target = sqlite3.connect(engine.url.database or "")
        try:
            src.backup(target)
        finally:
            target.close()
            src.close()
        return
    if engine.dialect.name == "postgresql":
        import os

        engine.dispose()
        args, env = _libpq_args(engine)
        run = subprocess.run([_pg_tool("pg_restore"), "--clean", "--if-exists", "--no-owner", "--single-transaction",
                              *args, str(source)], capture_output=True, text=True, env={**os.environ, **env})
        if run.returncode != 0:
            raise BackupError(f"pg_restore failed: {run.stderr.strip()[-500:]}")
        return
    raise BackupError(f"restoring {engine.dialect.name} databases is not supported")
