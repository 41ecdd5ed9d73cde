"""The pieces behind surviving a database restart, one at a time and deterministically (the real
PostgreSQL restart is in test_db_restart.py): the retry helper waits out an outage and nothing else;
the drafting runner stores a batch whose first write met the outage without asking the model again;
a worker round that the outage broke (screening) leaves no claim behind for the next round."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from clinreason.config import ProjectConfig
from clinreason.llm.fake_backend import FakeBackend, gold_answer_in
from clinreason.stages import runner, worker
from clinreason.stages.ingest import import_path
from clinreason.store import db
from clinreason.store.tables import items
from clinreason.testing.helpers import write_synthetic_bank

FAST = db.Backoff(first=0.01, cap=0.02)


def _outage() -> OperationalError:
    return OperationalError("SELECT 1", {}, Exception("consuming input failed: server closed the connection "
                                                      "unexpectedly"))


def _bug() -> OperationalError:
    return OperationalError("SELECT nope", {}, Exception('column "nope" does not exist'))


def _failing(times: int, error, value="stored"):
    calls = []

    async def call():
        calls.append(1)
        if len(calls) <= times:
            raise error()
        return value

    return call, calls


async def test_while_unavailable_waits_out_an_outage_and_returns_what_the_call_returns():
    call, calls = _failing(3, _outage)
    assert await db.while_unavailable(call, what="test", backoff=FAST) == "stored"
    assert len(calls) == 4


async def test_while_unavailable_raises_a_broken_query_at_once():
    call, calls = _failing(1, _bug)
    with pytest.raises(OperationalError, match="nope"):
        await db.while_unavailable(call, what="test", backoff=FAST)
    assert len(calls) == 1


async def test_while_unavailable_gives_up_when_the_caller_is_stopping():
    stop = asyncio.Event()
    call, calls = _failing(1000, _outage)

    async def stop_soon():
        await asyncio.sleep(0.1)
        stop.set()

    stopper = asyncio.create_task(stop_soon())
    with pytest.raises(OperationalError, match="server closed"):
        await db.while_unavailable(call, what="test", stop=stop, backoff=db.Backoff(first=0.02, cap=0.04))
    await stopper
    assert 1 < len(calls) < 50  # it retried, then stopped waiting instead of hanging on


def test_database_unavailable_tells_an_outage_from_a_bug():
    refused = OperationalError("SELECT 1", {}, Exception('connection failed: connection to server at "127.0.0.1", '
                                                         'port 5432 failed: Connection refused'))
    shutting = OperationalError("SELECT 1", {}, Exception("FATAL: the database system is shutting down"))
    assert db.database_unavailable(refused) and db.database_unavailable(shutting)
    assert db.database_unavailable(_outage())
    assert not db.database_unavailable(_bug()) and not db.database_unavailable(ValueError("x"))


def _answer(messages, params):
    return ("1. The findings point to one diagnosis.\n2. The other options do not fit every finding.\n"
            f"Final answer: {gold_answer_in(messages) or 'A'}")


@pytest.fixture
def bank(engine, project, tmp_path):
    write_synthetic_bank(tmp_path / "bank.jsonl", 12, seed=5)
    import_path(engine, project="default", path=tmp_path / "bank.jsonl", fmt="auto")
    return 12


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch):
    monkeypatch.setattr(db, "DEFAULT_BACKOFF", FAST)
    original = db.while_unavailable

    async def quick(call, *, what, stop=None, backoff=FAST):
        return await original(call, what=what, stop=stop, backoff=FAST)

    monkeypatch.setattr(db, "while_unavailable", quick)


def _states(engine) -> tuple[Counter, list]:
    with engine.connect() as conn:
        rows = conn.execute(select(items.c.state, items.c.claimed_by, items.c.claimed_until)).all()
    return Counter(r.state for r in rows), [r for r in rows if r.claimed_by is not None and r.claimed_until]


async def test_a_batch_whose_write_met_the_outage_is_stored_without_asking_the_model_again(engine, project, bank,
                                                                                           monkeypatch, tmp_path):
    real = runner._persist
    failures = []

    def persist_after_an_outage(*args, **kwargs):
        if len(failures) < 2:
            failures.append(1)
            raise _outage()
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, "_persist", persist_after_an_outage)
    backend = FakeBackend(handler=_answer)
    report = await runner.run_llm_stage(engine, project=project, pc=ProjectConfig(), backend=backend,
                                        kind=runner.DRAFT, concurrency=4, journal_dir=tmp_path / "journal")
    states, _ = _states(engine)
    assert len(failures) == 2 and states == {"screening": bank}
    assert report.stored == bank and len(backend.calls) == bank  # every item asked once
    assert not list((tmp_path / "journal").glob("*.jsonl"))  # the journal was emptied once stored


async def test_a_round_broken_by_the_outage_leaves_no_claim_behind(engine, project, bank, monkeypatch):
    from clinreason.stages import screen

    real = screen.run_screening
    broken = []

    async def screening_cut_half_way(engine, *, project, pc, judge=None, worker=None, **kwargs):
        if not broken:  # claims a batch, as screening does, then the connection is cut before the results are in
            broken.append(await asyncio.to_thread(screen._load_batch, engine, project["id"], worker, 5,
                                                  pc.generate.claim_seconds))
            raise _outage()
        return await real(engine, project=project, pc=pc, judge=judge, worker=worker, **kwargs)

    monkeypatch.setattr(worker, "run_screening", screening_cut_half_way)
    report = await worker.run_worker(engine, project=project, pc=ProjectConfig(), backend=FakeBackend(handler=_answer),
                                     once=True, poll_seconds=0.01, concurrency=4)
    states, claimed = _states(engine)
    assert len(broken[0]) == 5 and report.outages == 1 and not report.stopped_during_outage
    # without handing the broken round's claims back, 5 items would wait in `screening` for the 15-minute lease
    assert states == {"in_review": bank}, states
    assert claimed == []
