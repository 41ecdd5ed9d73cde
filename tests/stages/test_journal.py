"""The journal of received responses: what a killed run had received is stored by the next run, never
asked for again, never stored twice; a live run's journal is left alone. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from clinreason.llm.base import Completion
from clinreason.llm.fake_backend import FakeBackend
from clinreason.stages.runner import DRAFT, Outcome, _build_jobs, _journal_entry, recover_journals, run_llm_stage
from clinreason.store import readmodels as store_readmodels
from clinreason.store.journal import ResponseJournal, default_directory, read_entries
from clinreason.store.tables import events, items, rationales

DEAD_WORKER = f"{socket.gethostname()}:999999999"  # a claim holder whose process cannot exist

#: appends the entries given on stdin to a fresh journal in argv[1], then dies by SIGKILL, or with
#: argv[2] == "live" says so and waits to be killed
_JOURNAL_PROCESS = """
import json, os, signal, sys
from pathlib import Path
from clinreason.store.journal import ResponseJournal
journal = ResponseJournal(Path(sys.argv[1]))
for entry in json.loads(sys.stdin.readline()):
    journal.append(entry)
if sys.argv[2:] == ["live"]:
    print("ready", flush=True)
    sys.stdin.readline()
os.kill(os.getpid(), signal.SIGKILL)
"""


def _journal_and_die(directory: Path, entries: list[dict]) -> None:
    proc = subprocess.run([sys.executable, "-c", _JOURNAL_PROCESS, str(directory)], input=json.dumps(entries) + "\n",
                          text=True, capture_output=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


def _received_by_a_dead_run(engine, project, pc, n: int, *, text: str = "Step 1: journaled.\nFinal answer: A",
                            error: str | None = None) -> list[dict]:
    """Claim n items as a worker that then died, and the journal entries of the answers it had received."""
    jobs = _build_jobs(engine, project=project, pc=pc, kind=DRAFT, worker=DEAD_WORKER, limit=n,
                       model_id="fake-model", structured=None)
    outcomes = [Outcome(job, error=error) if error else Outcome(job, Completion(text=text, model="fake-model",
                                                                                prompt_tokens=11, cost=0.5))
                for job in jobs]
    return [_journal_entry(out, project["id"]) for out in outcomes]


@pytest.fixture
def journal_dir(tmp_path) -> Path:
    """Apart from the SQLite database, which lives in tmp_path too."""
    directory = tmp_path / "journal"
    directory.mkdir()
    return directory


def _segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.jsonl"))


def _asked_items(backend: FakeBackend) -> set[str]:
    return {call.params.idempotency_key.split(":")[0] for call in backend.calls}


def _versions_per_item(engine) -> dict[str, int]:
    with engine.connect() as conn:
        return dict(conn.execute(select(rationales.c.item_id, func.count()).group_by(rationales.c.item_id)).all())


async def test_a_healthy_run_leaves_no_journal_behind(engine, imported, pc, tmp_path):
    journal_dir = tmp_path / "journal"
    report = await run_llm_stage(engine, project=imported, pc=pc, backend=FakeBackend(), kind=DRAFT, concurrency=4,
                                 journal_dir=journal_dir)
    assert report.stored == 25 and report.recovered == 0
    assert not journal_dir.exists()  # made for the run's entries, removed when they were all stored


def test_entries_outlive_the_process_that_wrote_them(tmp_path):
    entries = [{"item_id": "a", "completion": {"text": "多步推理\nFinal answer: A"}}, {"item_id": "b", "error": None}]
    _journal_and_die(tmp_path, entries)
    (segment,) = tmp_path.glob("*.jsonl")
    assert read_entries(segment) == entries


async def test_what_a_killed_run_received_is_stored_and_not_asked_for_again(engine, imported, pc, journal_dir):
    entries = _received_by_a_dead_run(engine, imported, pc, 3)
    _journal_and_die(journal_dir, entries)
    backend = FakeBackend()
    report = await run_llm_stage(engine, project=imported, pc=pc, backend=backend, kind=DRAFT, journal_dir=journal_dir)
    journaled = {entry["item_id"] for entry in entries}
    assert report.recovered == 3 and report.stored == 22
    assert not journaled & _asked_items(backend)
    assert _versions_per_item(engine) == {item_id: 1 for item_id in _versions_per_item(engine)}
    assert len(_versions_per_item(engine)) == 25
    with engine.connect() as conn:
        kept = conn.execute(select(rationales).where(rationales.c.item_id.in_(journaled))).mappings().all()
        states = set(conn.execute(select(items.c.state).where(items.c.id.in_(journaled))).scalars())
    assert {r["raw_output"] for r in kept} == {"Step 1: journaled.\nFinal answer: A"}
    assert all(r["prompt_tokens"] == 11 and r["cost"] == 0.5 and r["idempotency_key"].endswith(":v1") for r in kept)
    assert states == {"screening"}
    assert _segments(journal_dir) == []


async def test_a_failure_received_before_the_kill_fails_the_item_without_asking_again(engine, imported, pc, journal_dir):
    entries = _received_by_a_dead_run(engine, imported, pc, 1, error="LLM request failed: HTTP 400 bad prompt")
    _journal_and_die(journal_dir, entries)
    backend = FakeBackend()
    await run_llm_stage(engine, project=imported, pc=pc, backend=backend, kind=DRAFT, journal_dir=journal_dir)
    with engine.connect() as conn:
        row = conn.execute(select(items).where(items.c.id == entries[0]["item_id"])).mappings().one()
    assert row["state"] == "failed" and "bad prompt" in row["fail_reason"]
    assert entries[0]["item_id"] not in _asked_items(backend)


async def test_entries_already_stored_are_not_stored_twice(engine, imported, pc, journal_dir):
    """A run that died after storing a batch but before deleting its segment: the segment comes back."""
    entries = _received_by_a_dead_run(engine, imported, pc, 3)
    _journal_and_die(journal_dir, entries)
    assert recover_journals(engine, ResponseJournal(journal_dir), worker="w") == 3
    with engine.connect() as conn:
        events_before = conn.execute(select(func.count()).select_from(events)).scalar_one()
    _journal_and_die(journal_dir, entries)
    assert recover_journals(engine, ResponseJournal(journal_dir), worker="w") == 0
    with engine.connect() as conn:
        events_after = conn.execute(select(func.count()).select_from(events)).scalar_one()
        counts = store_readmodels.status_counts(conn, project_id=imported["id"])
    assert _versions_per_item(engine) == {entry["item_id"]: 1 for entry in entries}
    assert counts["by_state"]["screening"] == 3 and events_after == events_before
    assert _segments(journal_dir) == []


async def test_an_entry_cut_short_by_the_kill_is_skipped_and_its_item_drafted_again(engine, imported, pc, journal_dir):
    entries = _received_by_a_dead_run(engine, imported, pc, 3)
    lines = [json.dumps(entry).encode() + b"\n" for entry in entries]
    segment = journal_dir / f"{socket.gethostname()}~{_dead_pid()}~0123456789ab~1.jsonl"
    segment.write_bytes(lines[0] + lines[1] + lines[2][:40] + b"\x00" * 4096)
    backend = FakeBackend()
    report = await run_llm_stage(engine, project=imported, pc=pc, backend=backend, kind=DRAFT, journal_dir=journal_dir)
    assert report.recovered == 2
    assert _asked_items(backend) & {entry["item_id"] for entry in entries} == {entries[2]["item_id"]}
    assert len(_versions_per_item(engine)) == 25 and set(_versions_per_item(engine).values()) == {1}


def test_a_live_runs_journal_is_left_alone_until_its_process_dies(tmp_path):
    entries = [{"item_id": "a"}, {"item_id": "b"}]
    proc = subprocess.Popen([sys.executable, "-c", _JOURNAL_PROCESS, str(tmp_path), "live"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        proc.stdin.write(json.dumps(entries) + "\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "ready"
        assert list(ResponseJournal(tmp_path).adopt_orphans()) == []
        assert len(list(tmp_path.glob("*.jsonl"))) == 1
    finally:
        proc.kill()
        proc.wait()
    (adopted,) = ResponseJournal(tmp_path).adopt_orphans()
    assert read_entries(adopted) == entries


def test_this_process_adopts_the_segments_of_its_own_ended_runs_only(tmp_path):
    running, ended = ResponseJournal(tmp_path), ResponseJournal(tmp_path)
    running.append({"item_id": "running"})
    ended.append({"item_id": "ended"})
    ended.close()
    adopted = list(ResponseJournal(tmp_path).adopt_orphans())
    assert [read_entries(path) for path in adopted] == [[{"item_id": "ended"}]]
    running.close()


def test_a_sealed_segment_holds_what_was_appended_and_discarding_it_removes_it(tmp_path):
    journal = ResponseJournal(tmp_path)
    journal.append({"n": 1})
    journal.append({"n": 2})
    (first,) = journal.seal()
    journal.append({"n": 3})
    assert read_entries(first) == [{"n": 1}, {"n": 2}]
    journal.discard([first])
    (second,) = journal.seal()
    assert not first.exists() and read_entries(second) == [{"n": 3}]


def test_an_entry_larger_than_a_segment_is_kept_whole(tmp_path):
    journal = ResponseJournal(tmp_path)
    big = {"text": "x" * (ResponseJournal.SEGMENT_BYTES + 10)}
    journal.append({"n": 1})
    journal.append(big)
    sealed = journal.seal()
    assert [entry for path in sealed for entry in read_entries(path)] == [{"n": 1}, big]


def test_the_journal_lives_beside_a_sqlite_file_and_per_database_in_the_state_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert default_directory(make_url("sqlite:///data/c.db"), cwd=tmp_path) == tmp_path / "data" / "c.db.responses"
    assert default_directory(make_url("sqlite://")) is None
    one = default_directory(make_url("postgresql+psycopg://u:secret@db:5432/one"))
    two = default_directory(make_url("postgresql+psycopg://u:secret@db:5432/two"))
    assert one.parent == two.parent == tmp_path / "state" / "clinreason" / "journal" and one != two
    assert "secret" not in str(one)
