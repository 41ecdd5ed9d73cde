"""A large file is read, checked and hashed in a second process: what the user sees must be exactly what
the single-process import gives (summary, stored rows, refusals, rejects file, dry-run preview, progress)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ingest.engines import reference_engine
from sqlalchemy import select

from clinreason.stages import ingest, ingest_parallel
from clinreason.stages.ingest import ImportAborted, import_path
from clinreason.store.tables import events, item_sources, items


@pytest.fixture(params=[7, 1000])
def small_batches(request, monkeypatch):
    # several batches with duplicates across them, or one batch with its duplicates inside
    monkeypatch.setattr(ingest, "BATCH", request.param)


_started: list = []


def _import(engine, path, *, parallel: bool, monkeypatch, **kw):
    monkeypatch.setattr(ingest_parallel, "PARALLEL_MIN_BYTES", 0 if parallel else 1 << 60)
    popen = ingest_parallel.subprocess.Popen

    def remember(*a, **k):
        _started.append(popen(*a, **k))
        return _started[-1]

    monkeypatch.setattr(ingest_parallel.subprocess, "Popen", remember)
    used = []
    real = ingest_parallel.read_batches

    def spy(*a, **k):
        used.append(True)
        return real(*a, **k)

    monkeypatch.setattr(ingest, "read_batches", spy)
    try:
        return import_path(engine, project="default", path=Path(path), **kw)
    finally:
        assert bool(used) == parallel


def _bank(path: Path, n: int = 40, *, bad: dict[int, dict] | None = None) -> Path:
    lines = []
    for i in range(n):
        rec = {"question": f'Q "{i % 30}" \\ 中文 \u2028 x', "options": {"A": f"a{i % 30}" + "  " * (i >= 30), "B": "b\tb", "C": "c"},
               "answer": "ABC"[i % 3] if i % 11 else "", "specialty": ["cardio", "neuro"][i % 2]}
        rec.update((bad or {}).get(i, {}))
        lines.append(json.dumps(rec, ensure_ascii=i % 2 == 0))
        if i % 9 == 0:
            lines.append("")  # blank lines are not records
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _rows(engine):
    with engine.connect() as conn:
        its = [_timeless(r) for r in conn.execute(select(items).order_by(items.c.id))]
        srcs = sorted(_timeless(r) for r in conn.execute(select(item_sources)))
        evs = [(r.item_id, r.kind, r.before, r.after, r.detail) for r in conn.execute(
            select(events).where(events.c.kind != "import.completed").order_by(events.c.id))]
    return its, srcs, evs


def _timeless(row) -> tuple:
    return tuple(v for v in row if not hasattr(v, "isoformat"))


def _same_summary(a, b):
    assert a.to_dict() == b.to_dict()


def test_same_items_summary_and_events(engine, project, tmp_path, monkeypatch, small_batches):
    path = _bank(tmp_path / "bank.jsonl")
    ref = reference_engine(tmp_path)
    want = _import(ref, path, parallel=False, monkeypatch=monkeypatch)
    got = _import(engine, path, parallel=True, monkeypatch=monkeypatch)
    _same_summary(got, want)
    assert got.added + got.duplicates == 40 and got.duplicates > 0 and got.flagged > 0
    if engine.dialect.name == "sqlite":
        assert _rows(engine) == _rows(ref)
    else:
        with engine.connect() as c1, ref.connect() as c2:
            q = select(items.c.id, items.c.content_hash, items.c.question, items.c.state).order_by(items.c.id)
            assert [tuple(r) for r in c1.execute(q)] == [tuple(r) for r in c2.execute(q)]
    # against the database: a re-import finds every item
    again = _import(engine, path, parallel=True, monkeypatch=monkeypatch)
    assert (again.added, again.duplicates) == (0, 40)


def test_first_bad_record_aborts_with_the_same_error_and_writes_nothing(engine, project, tmp_path, monkeypatch,
                                                                       small_batches):
    path = _bank(tmp_path / "bad.jsonl", bad={12: {"options": "not options"}, 30: {"question": ""}})
    messages = []
    for parallel in (False, True):
        with pytest.raises(ImportAborted) as exc:
            _import(engine, path, parallel=parallel, monkeypatch=monkeypatch)
        messages.append(str(exc.value))
    assert messages[0] == messages[1] and "bad.jsonl" in messages[0]
    assert all(proc.poll() is not None for proc in _started), "the refused import's reader process was stopped"
    with engine.connect() as conn:
        assert conn.execute(select(items.c.id)).first() is None


def test_broken_line_and_file_level_refusal(engine, project, tmp_path, monkeypatch, small_batches):
    path = _bank(tmp_path / "broken.jsonl")
    path.write_bytes(path.read_bytes() + b'{"question": "trunc\n')
    for case in ("broken", "answer-base"):
        if case == "answer-base":
            path = _bank(tmp_path / "ints.jsonl", bad={25: {"answer": 1}})
        messages = []
        for parallel in (False, True):
            with pytest.raises(ImportAborted) as exc:
                _import(engine, path, parallel=parallel, monkeypatch=monkeypatch)
            messages.append(str(exc.value))
        assert messages[0] == messages[1]
    not_utf8 = tmp_path / "latin1.jsonl"
    not_utf8.write_bytes('{"question": "caf\u00e9"}\n'.encode("latin-1"))
    messages = []
    for parallel in (False, True):
        with pytest.raises(ImportAborted) as exc:
            _import(engine, not_utf8, parallel=parallel, monkeypatch=monkeypatch, fmt="jsonl")
        messages.append(str(exc.value))
    assert messages[0] == messages[1] and "UTF-8" in messages[0]
    with engine.connect() as conn:
        assert conn.execute(select(items.c.id)).first() is None


def test_skip_invalid_writes_the_same_rejects(engine, project, tmp_path, monkeypatch, small_batches):
    path = _bank(tmp_path / "some.jsonl", bad={3: {"options": 5}, 20: {"question": None}})
    ref = reference_engine(tmp_path)
    out = []
    for eng, parallel in ((ref, False), (engine, True)):
        rejects = tmp_path / f"rejects-{parallel}.jsonl"
        s = _import(eng, path, parallel=parallel, monkeypatch=monkeypatch, skip_invalid=True, rejects_path=rejects)
        out.append((s, rejects.read_text(encoding="utf-8")))
    (a, ra), (b, rb) = out
    assert a.rejected == b.rejected == 2 and ra == rb
    da, db_ = a.to_dict(), b.to_dict()
    assert da.pop("rejects_path") != db_.pop("rejects_path")
    assert da == db_


def test_dry_run_preview_and_progress(engine, project, tmp_path, monkeypatch, small_batches):
    path = _bank(tmp_path / "dry.jsonl", bad={4: {"question": ""}})
    seen = []
    for parallel in (False, True):
        calls = {"bytes": 0, "records": 0}

        class Progress:
            def start_file(self, p):
                calls["file"] = p.name

            def advance(self, n):
                calls["bytes"] += n

            def records(self, n):
                calls["records"] += n

            def close(self):
                calls["closed"] = True

        s = _import(engine, path, parallel=parallel, monkeypatch=monkeypatch, dry_run=True, skip_invalid=True,
                    progress_factory=lambda planned: Progress())
        seen.append((s.to_dict(), calls))
    assert seen[0] == seen[1]
    assert seen[0][1]["bytes"] == path.stat().st_size and seen[0][1]["records"] == 40
    assert seen[0][0]["preview"] and seen[0][0]["reject_samples"]


def test_csv_through_the_reader_process(engine, project, tmp_path, monkeypatch, small_batches):
    path = tmp_path / "bank.csv"
    path.write_text("question;A;B;answer\n" + "".join(f'"q ""{i}""";x{i};y;{"AB"[i % 2]}\n' for i in range(20)),
                    encoding="utf-8")
    ref = reference_engine(tmp_path)
    want = _import(ref, path, parallel=False, monkeypatch=monkeypatch)
    got = _import(engine, path, parallel=True, monkeypatch=monkeypatch)
    _same_summary(got, want)
    assert got.added == 20


def test_small_files_stay_in_process(tmp_path):
    small = tmp_path / "s.jsonl"
    small.write_text("{}\n")
    assert not ingest_parallel.use_reader_process(small, "jsonl")
    big = tmp_path / "b.jsonl"
    big.write_bytes(b" " * ingest_parallel.PARALLEL_MIN_BYTES)
    assert ingest_parallel.use_reader_process(big, "jsonl")
    assert not ingest_parallel.use_reader_process(big, "labelstudio")
