"""A large import into SQLite drops the named secondary indexes of items, item_sources and events and builds
them again before its commit. What a user sees must not change: the schema after is the schema before, a
refused import leaves every index (and nothing else) behind, duplicates and re-imports count as they do with
the indexes live, and the refusal says the same. PostgreSQL never drops an index."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ingest.engines import reference_engine
from sqlalchemy import text

from clinreason.stages import ingest, ingest_parallel
from clinreason.stages.ingest import ImportAborted, import_path
from clinreason.store import ingest as store_ingest

_TABLES = ("items", "item_sources", "events")


@pytest.fixture
def large(monkeypatch):
    """Every file counts as large: read by the reader process, indexes deferred (recorded in `dropped`)."""
    monkeypatch.setattr(ingest_parallel, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(store_ingest, "DEFER_MIN_RECORDS", 1)
    monkeypatch.setattr(ingest, "BYTES_PER_RECORD", 1)
    monkeypatch.setattr(ingest, "BATCH", 7)
    dropped: list[list[str]] = []
    real = store_ingest.deferrable_indexes

    def spy(conn, **kw):
        found = real(conn, **kw)
        dropped.append([name for name, _ in found])
        return found

    monkeypatch.setattr(store_ingest, "deferrable_indexes", spy)
    return dropped


def _schema(engine) -> list[tuple]:
    with engine.connect() as conn:
        return sorted(tuple(r) for r in conn.execute(text(
            "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_stat%'")))


def _counts(engine) -> tuple[int, ...]:
    with engine.connect() as conn:
        return tuple(conn.execute(text(f"SELECT count(*) FROM {t}")).scalar() for t in _TABLES)


def _bank(path: Path, n: int = 40, *, bad_at: int | None = None) -> Path:
    lines = [{"question": f"Which drug {j}?", "options": {"A": "x", "B": f"y{j}"}, "answer": "AB"[j % 2] if j % 7 else "",
              "specialty": ["cardio", None][j % 2], "source_line": i} for i, j in ((i, i % 25) for i in range(n))]
    if bad_at is not None:
        lines[bad_at]["question"] = ""
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path


def _sqlite_only(engine):
    if engine.dialect.name != "sqlite":
        pytest.skip("indexes are deferred on SQLite only")


def test_the_schema_after_a_deferred_import_is_the_schema_before(engine, project, tmp_path, large):
    _sqlite_only(engine)
    before = _schema(engine)
    with engine.connect() as conn:
        cache = conn.exec_driver_sql("PRAGMA cache_size").scalar()
    s = import_path(engine, project="default", path=_bank(tmp_path / "bank.jsonl"), fmt="jsonl")
    assert (s.added, s.duplicates) == (25, 15)
    named = {row[1] for row in before if row[0] == "index" and row[2] in _TABLES and row[3] is not None}
    assert len(named) >= 8 and set(large[0]) == named  # every named index of the three tables was deferred
    assert _schema(engine) == before
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
        # the page cache is the connection's own again (the pool hands this connection to others)
        assert conn.exec_driver_sql("PRAGMA cache_size").scalar() == cache
        # the rebuilt indexes hold every row: the flagged items counted from the partial index
        assert conn.execute(text("SELECT count(*) FROM items INDEXED BY ix_items_flagged "
                                 "WHERE flag_reason IS NOT NULL AND project_id = :p"), {"p": project["id"]}
                            ).scalar() == s.flagged > 0


def test_a_refused_deferred_import_leaves_every_index_and_no_row(engine, project, tmp_path, large, monkeypatch):
    _sqlite_only(engine)
    import_path(engine, project="default", path=_bank(tmp_path / "first.jsonl", 10), fmt="jsonl")
    before, rows = _schema(engine), _counts(engine)
    bad = _bank(tmp_path / "bad.jsonl", 40, bad_at=33)  # several batches written before the refusal
    with pytest.raises(ImportAborted) as deferred:
        import_path(engine, project="default", path=bad, fmt="jsonl")
    assert large[-1]  # the refused import had dropped indexes
    assert _schema(engine) == before and _counts(engine) == rows
    monkeypatch.setattr(store_ingest, "DEFER_MIN_RECORDS", 1 << 60)  # the same file, indexes live
    with pytest.raises(ImportAborted) as live:
        import_path(engine, project="default", path=bad, fmt="jsonl")
    assert large[-1] == []
    assert str(deferred.value) == str(live.value) and "\n" not in str(live.value)
    assert "bad.jsonl: record 34" in str(live.value)


def test_duplicates_and_reimport_count_as_with_live_indexes(engine, project, tmp_path, large, monkeypatch):
    _sqlite_only(engine)
    bank = _bank(tmp_path / "bank.jsonl")
    first = import_path(engine, project="default", path=bank, fmt="jsonl")
    assert large[-1]
    again = import_path(engine, project="default", path=bank, fmt="jsonl")  # deferred again (1 byte a record)
    assert large[-1]
    assert (again.added, again.duplicates, again.sources_added) == (0, 40, 0)
    monkeypatch.setattr(store_ingest, "DEFER_MIN_RECORDS", 1 << 60)
    ref = reference_engine(tmp_path)
    live = import_path(ref, project="default", path=bank, fmt="jsonl")
    assert large[-1] == []
    assert first.to_dict() == live.to_dict()
    assert _counts(engine)[:2] == _counts(ref)[:2]


def test_rows_from_the_reader_process_store_the_same_text(engine, project, tmp_path, monkeypatch):
    """The reader process serialises the JSON columns itself: the stored text is what the in-process path
    stores (compared as text, not as decoded JSON)."""
    _sqlite_only(engine)
    bank = tmp_path / "bank.jsonl"
    recs = [{"question": f"Q {i} 中文 \u2028 \"x\"", "options": {"A": "a\tb", "B": f"b{i}", "C": "ü"},
             "answer": ["A", "AC", ""][i % 3], "specialty": "neuro" if i % 2 else None, "extra": {"k": [1, None, 2.5]},
             "explanation": "because" if i % 4 else None} for i in range(12)]
    bank.write_text("".join(json.dumps(r, ensure_ascii=i % 2 == 0) + "\n" for i, r in enumerate(recs)),
                    encoding="utf-8")
    ref = reference_engine(tmp_path)
    monkeypatch.setattr(ingest_parallel, "PARALLEL_MIN_BYTES", 1 << 60)
    want = import_path(ref, project="default", path=bank, fmt="jsonl")
    monkeypatch.setattr(ingest_parallel, "PARALLEL_MIN_BYTES", 0)
    got = import_path(engine, project="default", path=bank, fmt="jsonl")
    assert got.to_dict() == want.to_dict()

    def stored(eng):
        with eng.connect() as conn:
            return (conn.exec_driver_sql(
                        "SELECT id, content_hash, question, options, answer_labels, answer_text, language, specialty, "
                        "context, reference_explanation, meta, state, strikes, auto_retries, flag_reason, "
                        "typeof(created_at), created_at = updated_at FROM items ORDER BY id").all(),
                    conn.exec_driver_sql("SELECT item_id, source, subject, file, record, license FROM item_sources "
                                         "ORDER BY id").all(),
                    conn.exec_driver_sql("SELECT project_id, item_id, kind, actor, before, after, detail, typeof(at) "
                                         "FROM events WHERE kind != 'import.completed' ORDER BY id").all())

    assert stored(engine) == stored(ref)


def test_small_imports_and_full_tables_keep_their_indexes(engine, project, tmp_path, monkeypatch):
    with engine.begin() as conn:
        assert store_ingest.deferrable_indexes(conn, expected_records=store_ingest.DEFER_MIN_RECORDS - 1) == []
        found = store_ingest.deferrable_indexes(conn, expected_records=store_ingest.DEFER_MIN_RECORDS)
        if engine.dialect.name != "sqlite":  # DROP INDEX would lock out a running server's readers
            assert found == []
            return
        assert {name for name, _ in found} >= {"ix_items_queue_order", "ix_item_sources_source", "ix_events_item_id"}
        assert all(create.startswith("CREATE INDEX") for _, create in found)
    # a table that holds more rows than the import is expected to bring keeps its indexes
    monkeypatch.setattr(store_ingest, "DEFER_MIN_RECORDS", 1)
    import_path(engine, project="default", path=_bank(tmp_path / "bank.jsonl", 40), fmt="jsonl")
    with engine.begin() as conn:
        names = {name for name, _ in store_ingest.deferrable_indexes(conn, expected_records=20)}
    assert not any(n.startswith(("ix_items_", "ix_item_sources_")) for n in names)
