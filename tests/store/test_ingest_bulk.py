"""The import's bulk writes (COPY on PostgreSQL, one executemany on SQLite) store exactly what a plain
`insert()` stores, stay inside the caller's transaction, and the batch-sized existence checks see across
batch boundaries."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import insert, select, text

from clinreason.stages import ingest as ingest_stage
from clinreason.stages.ingest import ImportAborted, import_path
from clinreason.store import common as store_common
from clinreason.store.common import now
from clinreason.store.tables import events, items


def _event(project_id: int, **extra) -> dict:
    return {"project_id": project_id, "item_id": None, "kind": "test.bulk", "actor": "tester", "before": None,
            "after": {"state": "imported", "note": "中文 ✓"}, "detail": {"n": 1.5, "list": [1, None]}, "at": now(),
            **extra}


def test_bulk_insert_stores_what_insert_stores(engine, project):
    with engine.begin() as conn:
        conn.execute(insert(events), [_event(project["id"], actor="plain")])
        store_common.bulk_insert(conn, events, [_event(project["id"], actor="bulk")])
    with engine.connect() as conn:
        # the stored text of every column, as the database holds it (JSON null included)
        cast = "CAST({} AS TEXT)"
        cols = ", ".join(cast.format(f'"{c}"') for c in ("before", "after", "detail", "kind"))
        rows = {r[0]: r[1:] for r in conn.execute(text(f"SELECT actor, {cols} FROM events WHERE kind = 'test.bulk'"))}
        decoded = {r.actor: r for r in conn.execute(select(events).where(events.c.kind == "test.bulk"))}
    assert rows["bulk"] == rows["plain"]
    assert decoded["bulk"].after == {"state": "imported", "note": "中文 ✓"}
    assert decoded["bulk"].detail == {"n": 1.5, "list": [1, None]}
    assert abs((store_common.aware(decoded["bulk"].at) - store_common.aware(decoded["plain"].at)).total_seconds()) < 60


def test_bulk_insert_rolls_back_with_its_transaction(engine, project):
    with pytest.raises(RuntimeError), engine.begin() as conn:
        store_common.bulk_insert(conn, events, [_event(project["id"]) for _ in range(50)])
        raise RuntimeError("abort")
    with engine.connect() as conn:
        assert conn.execute(select(events.c.id).where(events.c.kind == "test.bulk")).all() == []


def test_duplicates_across_batches_and_a_late_bad_record_write_nothing(engine, project, tmp_path, monkeypatch):
    monkeypatch.setattr(ingest_stage, "BATCH", 7)
    lines = [{"question": f"Which drug {i % 10}?", "options": {"A": "x", "B": "y"}, "answer": "A"}
             for i in range(30)]  # 10 distinct questions, each met 3 times in different batches
    bank = tmp_path / "bank.jsonl"
    bank.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    summary = import_path(engine, project="default", path=bank, fmt="jsonl")
    assert (summary.records, summary.added, summary.duplicates) == (30, 10, 20)
    with engine.connect() as conn:
        assert len(conn.execute(select(items.c.id)).all()) == 10
    bad = tmp_path / "bad.jsonl"
    bad.write_text("".join(json.dumps({**line, "question": "new " + line["question"]}) + "\n" for line in lines)
                   + json.dumps({"question": "", "options": {"A": "x", "B": "y"}, "answer": "A"}) + "\n",
                   encoding="utf-8")
    with pytest.raises(ImportAborted, match=r"bad.jsonl: record 31.*question"):
        import_path(engine, project="default", path=bad, fmt="jsonl")
    with engine.connect() as conn:  # the 30 good records of the refused file, 4 batches in, are not there
        assert len(conn.execute(select(items.c.id)).all()) == 10
