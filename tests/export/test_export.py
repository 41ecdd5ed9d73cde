"""`clinreason export`: one row per accepted item with everything a dataset user needs, in five formats,
deterministic (byte-identical re-runs), stratified splits, filters, a folder it owns. SQLite and PostgreSQL."""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from analytics import reviewdata

from clinreason.stages.export import ExportError, ExportOptions, parse_splits, run_export
from clinreason.stages.export.formats import validate_sft_record

LICENSES = {"medqa": "MIT", "cmexam": "research use only"}


@pytest.fixture
def built(engine, project):
    return reviewdata.build(engine, project["id"], n_items=60, seed=11)


def export(engine, out: Path, **kw) -> tuple[Path, object]:
    summary = run_export(engine, project="default", out=out, opts=ExportOptions(**kw), licenses=LICENSES)
    return out, summary


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_jsonl_has_one_complete_row_per_accepted_item(engine, built, tmp_path):
    out, summary = export(engine, tmp_path / "ds")
    assert sorted(p.name for p in out.iterdir()) == [".clinreason-export.json", "README.md", "data.jsonl"]
    rows = read_jsonl(out / "data.jsonl")
    assert [r["id"] for r in rows] == sorted(built.accepted) and summary.total == len(rows)
    by_id = {r["id"]: r for r in rows}
    origin = {v["id"]: v for vs in built.versions.values() for v in vs}
    for item_id in built.accepted:
        row, decision = by_id[item_id], built.decisions[item_id]
        accepted = origin[decision["rationale_id"]]
        assert row["rationale"] == {"steps": accepted["steps"], "text": accepted["text"]}
        assert row["final_answer"] == ["A"] and row["answer"] == ["A"]
        assert [o["label"] for o in row["options"]] == ["A", "B", "C", "D"]
        assert row["consensus"] == decision["kind"] and row["accepted_version"] == accepted["version"]
        reviews = [r for r in built.reviews if r["rationale_id"] == accepted["id"]]
        assert len(row["scores"]["reviews"]) == len(reviews)
        for dim in reviewdata.DIMS:
            given = [r["scores"][dim] for r in reviews if dim in r["scores"]]
            expected = sum(given) / len(given) if given else None
            assert row["scores"]["mean"][dim] == (pytest.approx(expected) if given else None)
        assert row["rounds"] == len({r["rationale_id"] for r in built.reviews if r["item_id"] == item_id})
        assert row["provenance"]["model"] == accepted["model"]
        assert row["provenance"]["prompt_hash"] == accepted["prompt_hash"]
        assert (row["source"], row["license"]) in reviewdata.SOURCES
        assert "history" not in row
    assert {r["accepted_as"] for r in rows} <= {"drafted", "edited", "regenerated", "adjudication"}


def test_reviewers_are_anonymised_and_text_stays_readable(engine, built, tmp_path):
    out, _ = export(engine, tmp_path / "ds", with_history=True)
    text = (out / "data.jsonl").read_text(encoding="utf-8") + (out / "README.md").read_text(encoding="utf-8")
    for name in built.reviewer_ids:
        assert not re.search(rf"\b{name}\b", text), name
    assert "胸痛" in text and "\\u" not in text
    ids = {rev["reviewer"] for row in read_jsonl(out / "data.jsonl") for rev in row["scores"]["reviews"]}
    assert ids and all(i.startswith("R-") and len(i) == 10 for i in ids)
    assert len(ids) <= 4


def test_history_lists_every_version_with_its_reviews(engine, built, tmp_path):
    out, _ = export(engine, tmp_path / "ds", with_history=True)
    for row in read_jsonl(out / "data.jsonl"):
        versions = built.versions[row["id"]]
        assert [h["version"] for h in row["history"]] == [v["version"] for v in versions]
        assert [h["accepted"] for h in row["history"]].count(True) == 1
        assert [h["text"] for h in row["history"]] == [v["text"] for v in versions]
        edited = [h for h in row["history"] if h["origin"] == "edited"]
        assert all(h["author"].startswith("R-") for h in edited)


@pytest.mark.parametrize("fmt", ["jsonl", "parquet", "hf", "sft", "dpo", "prm"])
def test_rerunning_gives_byte_identical_files(engine, built, tmp_path, fmt):
    first, _ = export(engine, tmp_path / "a", fmt=fmt, splits=(0.8, 0.1, 0.1))
    second, _ = export(engine, tmp_path / "b", fmt=fmt, splits=(0.8, 0.1, 0.1), chunk_size=7)
    files_a = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    assert files_a == files_b
    for rel in files_a:
        assert (first / rel).read_bytes() == (second / rel).read_bytes(), rel


def test_splits_are_stratified_disjoint_and_complete(engine, built, tmp_path):
    out, summary = export(engine, tmp_path / "ds", splits=(0.6, 0.2, 0.2))
    parts = {name: read_jsonl(out / f"{name}.jsonl") for name in ("train", "validation", "test")}
    ids = [r["id"] for rows in parts.values() for r in rows]
    assert sorted(ids) == sorted(built.accepted) and len(set(ids)) == len(ids)
    assert summary.rows == {k: len(v) for k, v in parts.items()}
    strata: dict[tuple, Counter] = defaultdict(Counter)
    for name, rows in parts.items():
        assert [r["id"] for r in rows] == sorted(r["id"] for r in rows)
        for r in rows:
            strata[(r["specialty"], r["source"])][name] += 1
    for counts in strata.values():
        n = sum(counts.values())
        assert counts["train"] == round(n * 0.6)
        assert counts["train"] + counts["validation"] == round(n * 0.8)


def test_filters(engine, built, tmp_path):
    _, s = export(engine, tmp_path / "adj", consensus="adjudication")
    adjudicated = [i for i in built.accepted if built.decisions[i]["kind"] == "adjudication"]
    assert s.total == len(adjudicated)
    out, s = export(engine, tmp_path / "src", source="cmexam")
    rows = read_jsonl(out / "data.jsonl")
    assert rows and {r["source"] for r in rows} == {"cmexam"} and {r["language"] for r in rows} == {"zh"}
    out, s = export(engine, tmp_path / "min", min_score=3.5, splits=(0.5, 0.5))
    kept = read_jsonl(out / "train.jsonl") + read_jsonl(out / "test.jsonl")
    assert 0 < len(kept) < len(built.accepted)
    assert all(min(r["scores"]["mean"].values()) >= 3.5 for r in kept)
    all_rows = read_jsonl(export(engine, tmp_path / "all")[0] / "data.jsonl")
    expected = [r["id"] for r in all_rows if all(v is not None and v >= 3.5 for v in r["scores"]["mean"].values())]
    assert sorted(r["id"] for r in kept) == expected


def test_parquet_and_hf_hold_the_same_rows_with_typed_features(engine, built, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    datasets = pytest.importorskip("datasets")
    rows = read_jsonl(export(engine, tmp_path / "j")[0] / "data.jsonl")
    table = pq.read_table(export(engine, tmp_path / "p", fmt="parquet")[0] / "data.parquet")
    assert table.to_pylist() == rows
    ds = datasets.load_from_disk(str(export(engine, tmp_path / "h", fmt="hf")[0]))
    assert len(ds) == len(rows) and ds[0] == rows[0]
    assert ds.features["rounds"].dtype == "int64"
    assert ds.features["scores"]["mean"]["correctness"].dtype == "float64"
    assert ds.features["question"].dtype == "string"
    dd = datasets.load_from_disk(str(export(engine, tmp_path / "hs", fmt="hf", splits=(0.8, 0.2))[0]))
    assert set(dd) == {"train", "test"} and len(dd["train"]) + len(dd["test"]) == len(rows)


def test_sft_records_pass_the_chat_schema(engine, built, tmp_path):
    out, _ = export(engine, tmp_path / "sft", fmt="sft")
    records = read_jsonl(out / "data.jsonl")
    assert len(records) == len(built.accepted)
    for rec in records:
        validate_sft_record(rec)
        system, user, assistant = rec["messages"]
        assert "A. Aspirin" in user["content"]
        reasoning, answer = assistant["content"].rsplit("\n\n", 1)
        assert "aspirin first" in reasoning and answer in ("Answer: A. Aspirin", "答案：A. Aspirin")
    with pytest.raises(ValueError, match="system, user, assistant"):
        validate_sft_record({"id": "x", "messages": [{"role": "user", "content": "q"}]})
    with pytest.raises(ValueError, match="content"):
        validate_sft_record({"id": "x", "messages": [{"role": r, "content": ""} for r in ("system", "user", "assistant")]})


def test_dpo_pairs_reject_a_reviewed_draft_for_the_accepted_version(engine, built, tmp_path):
    out, summary = export(engine, tmp_path / "dpo", fmt="dpo")
    pairs = read_jsonl(out / "data.jsonl")
    assert pairs and summary.pairs == len(pairs)
    for p in pairs:
        decision = built.decisions[p["item_id"]]
        versions = {v["version"]: v for v in built.versions[p["item_id"]]}
        assert versions[p["chosen_version"]]["id"] == decision["rationale_id"]
        assert p["rejected_version"] != p["chosen_version"]
        assert f"(v{p['rejected_version']})" in p["rejected"][0]["content"]
        assert f"(v{p['chosen_version']})" in p["chosen"][0]["content"]
        assert [m["role"] for m in p["prompt"]] == ["system", "user"]
    multi = [i for i in built.accepted if len(built.versions[i]) > 1]
    assert {p["item_id"] for p in pairs} <= set(multi)


def test_the_folder_is_owned_by_the_export(engine, built, tmp_path):
    out = tmp_path / "ds"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="not empty"):
        export(engine, out)
    outside = tmp_path / "outside.jsonl"
    outside.write_text("do not touch")
    (out / "data.jsonl").symlink_to(outside)
    export(engine, out, force=True)
    assert outside.read_text() == "do not touch"
    assert (out / "notes.txt").read_text() == "mine" and not (out / "data.jsonl").is_symlink()
    export(engine, out, force=True, splits=(0.5, 0.5))  # the previous export's files are replaced
    assert not (out / "data.jsonl").exists() and (out / "train.jsonl").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(ExportError, match="not a directory"):
        export(engine, tmp_path / "file")


@pytest.mark.parametrize("text", ["0.8,0.3", "a,b", "0.5,0.25,0.15,0.1", "1,-0,0"])
def test_bad_splits_are_refused(text):
    with pytest.raises(ExportError, match="--splits"):
        parse_splits(text)


def test_the_export_reads_a_snapshot_and_does_not_block_writers(engine, built):
    from sqlalchemy import func, select, update

    from clinreason.store.db import read_snapshot
    from clinreason.store.tables import items

    with read_snapshot(engine) as conn:
        before = conn.execute(select(func.count()).where(items.c.state == "accepted")).scalar_one()
        with engine.begin() as writer:  # a reviewer's transaction during a long export goes through
            writer.execute(update(items).where(items.c.id == built.accepted[0]).values(state="in_review"))
        during = conn.execute(select(func.count()).where(items.c.state == "accepted")).scalar_one()
    assert before == during == len(built.accepted)


def test_an_empty_export_still_loads(engine, project, tmp_path):
    datasets = pytest.importorskip("datasets")
    out, summary = export(engine, tmp_path / "h", fmt="hf", splits=(0.8, 0.2))
    assert summary.total == 0
    dd = datasets.load_from_disk(str(out))
    assert len(dd["train"]) == 0 and "question" in dd["train"].features
    assert "0 exam-style clinical questions" in (out / "README.md").read_text(encoding="utf-8")
