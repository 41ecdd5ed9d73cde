"""backup / restore: the restored database equals the original, events included (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select

from clinreason.config import ProjectConfig
from clinreason.demo import samples_dir
from clinreason.llm.fake_backend import FakeBackend
from clinreason.stages.ingest import import_path
from clinreason.stages.runner import DRAFT, run_llm_stage
from clinreason.store.backup import BackupError, backup, restore
from clinreason.store.tables import metadata


def _snapshot(engine) -> dict[str, list]:
    with engine.connect() as conn:
        return {name: sorted((tuple(str(v) for v in row) for row in conn.execute(select(table))))
                for name, table in metadata.tables.items()}


def test_restore_gives_back_exactly_what_was_backed_up(engine, project, tmp_path):
    import_path(engine, project="default", path=samples_dir() / "medqa_sample.jsonl", fmt="medqa")
    asyncio.run(run_llm_stage(engine, project=project, pc=ProjectConfig(), backend=FakeBackend(), kind=DRAFT, limit=4))
    before = _snapshot(engine)
    assert before["events"] and before["rationales"]
    out = backup(engine, tmp_path / "backup.bin")
    with pytest.raises(BackupError, match="already exists"):
        backup(engine, out)
    import_path(engine, project="default", path=samples_dir() / "pubmedqa_sample.json", fmt="pubmedqa")
    assert _snapshot(engine) != before
    restore(engine, out)
    assert _snapshot(engine) == before


def test_restore_refuses_what_is_not_a_backup(engine, tmp_path):
    with pytest.raises(BackupError, match="no such backup"):
        restore(engine, tmp_path / "missing")
