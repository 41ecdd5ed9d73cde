"""One SQLite write coordinator per process: engines on the same file share it, and every writer —
import, drafting, screening, the web app — takes it (store.db.transaction)."""

from __future__ import annotations

import asyncio
import inspect

import pytest
from stages.conftest import gold_answer_handler

from clinreason.llm.fake_backend import FakeBackend
from clinreason.stages.ingest import import_path
from clinreason.stages.runner import DRAFT, run_llm_stage
from clinreason.stages.screen import run_screening
from clinreason.store import db

pytestmark = pytest.mark.store


def test_engines_on_one_sqlite_file_share_one_turn_and_postgresql_needs_none(tmp_path, engine):
    first, second = db.make_engine(str(tmp_path / "a.db")), db.make_engine(f"sqlite:///{tmp_path / 'a.db'}")
    other = db.make_engine(str(tmp_path / "b.db"))
    try:
        assert db.write_coordinator(first) is db.write_coordinator(second)
        assert db.write_coordinator(first) is not db.write_coordinator(other)
        if engine.dialect.name == "postgresql":
            assert not isinstance(db.write_coordinator(engine), db.FairLock)
    finally:
        for e in (first, second, other):
            e.dispose()


@pytest.fixture
def turns(monkeypatch, engine):
    """The stage module of every caller that took the write turn."""
    seen: list[str] = []
    real = db.write_coordinator

    def recording(target):
        for frame in inspect.stack()[1:8]:
            module = frame.frame.f_globals.get("__name__", "")
            if module.startswith(("clinreason.stages.", "clinreason.web.")):
                seen.append(module)
                break
        return real(target)

    monkeypatch.setattr(db, "write_coordinator", recording)
    return seen


def test_import_drafting_and_screening_take_the_write_turn(engine, project, pc, turns):
    from clinreason.demo import samples_dir

    import_path(engine, project="default", path=samples_dir() / "medqa_sample.jsonl", fmt="auto")
    asyncio.run(run_llm_stage(engine, project=project, pc=pc, backend=FakeBackend(handler=gold_answer_handler),
                              kind=DRAFT, limit=2))
    asyncio.run(run_screening(engine, project=project, pc=pc))
    assert {"clinreason.stages.ingest", "clinreason.stages.runner", "clinreason.stages.screen"} <= set(turns)
