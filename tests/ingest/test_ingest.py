"""Ingest of every layout, on SQLite and PostgreSQL: counts, idempotency, flaws, all-or-nothing."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from sqlalchemy import func, select

from clinreason.demo import samples_dir
from clinreason.stages.ingest import ImportAborted, import_path
from clinreason.store import decisions as store_decisions
from clinreason.store import items as store_items
from clinreason.store import readmodels as store_readmodels
from clinreason.store.tables import events, item_sources, items

SAMPLES = samples_dir()


def _snapshot(engine) -> tuple[int, int, int]:
    with engine.connect() as conn:
        return tuple(conn.execute(select(func.count()).select_from(t)).scalar() for t in (items, item_sources, events))


def _imp(engine, path, fmt="auto", **kw):
    return import_path(engine, project="default", path=Path(path), fmt=fmt, **kw)


@pytest.mark.parametrize("fmt,file,expected", [
    ("medqa", "medqa_sample.jsonl", 8),
    ("medmcqa", "medmcqa_sample.json", 6),
    ("pubmedqa", "pubmedqa_sample.json", 3),
    ("jsonl", "zh_sample.jsonl", 4),
])
def test_native_formats_import_and_reimport_adds_nothing(engine, project, fmt, file, expected):
    s = _imp(engine, SAMPLES / file, fmt)
    assert (s.added, s.duplicates, s.rejected) == (expected, 0, 0)
    before = _snapshot(engine)
    again = _imp(engine, SAMPLES / file, fmt)
    assert (again.added, again.duplicates, again.sources_added) == (0, expected, 0)
    assert _snapshot(engine)[:2] == before[:2]


def test_auto_detects_every_bundled_layout(engine, project):
    s = _imp(engine, SAMPLES)
    fmts = sorted(f.split(" (")[1].rstrip(")") for f in s.files)
    assert fmts == ["jsonl", "medmcqa", "medqa", "mmlu", "mmlu", "pubmedqa"]
    assert any("LICENSE" in f for f in s.skipped_files)
    assert s.added == 25 and s.duplicates == 1  # one MMLU question is in two subject files


def test_mmlu_question_in_two_subjects_is_one_item_with_both_sources(engine, project):
    s = _imp(engine, SAMPLES / "mmlu", "mmlu")
    assert (s.records, s.added, s.duplicates, s.sources_added) == (5, 4, 1, 1)
    with engine.connect() as conn:
        subjects = conn.execute(
            select(item_sources.c.item_id, func.count()).group_by(item_sources.c.item_id).having(func.count() > 1)
        ).all()
        assert len(subjects) == 1
        rows = store_items.item_source_rows(conn, item_id=subjects[0][0])
        counts = store_readmodels.status_counts(conn, project_id=project["id"])
    assert sorted(r["subject"] for r in rows) == ["clinical_knowledge", "college_medicine"]
    assert counts["by_source"] == {"mmlu": 4}


def test_fields_land_where_a_reviewer_expects_them(engine, project):
    _imp(engine, SAMPLES / "medmcqa_sample.json", "medmcqa")
    _imp(engine, SAMPLES / "pubmedqa_sample.json", "pubmedqa")
    with engine.connect() as conn:
        mcq = conn.execute(select(items).where(items.c.reference_explanation.is_not(None),
                                               items.c.specialty.is_not(None))).mappings().first()
        pqa = conn.execute(select(items).where(items.c.context.is_not(None))).mappings().first()
    first = json.loads((SAMPLES / "medmcqa_sample.json").read_text().splitlines()[0])
    assert mcq["options"][0][0] == "A" and len(mcq["options"]) == 4
    assert mcq["specialty"] and mcq["reference_explanation"]
    assert [o[0] for o in pqa["options"]] == ["A", "B", "C"] and [o[1] for o in pqa["options"]] == ["yes", "no", "maybe"]
    assert pqa["meta"]["pmid"] and pqa["reference_explanation"]
    assert first["cop"] in (1, 2, 3, 4)


def test_medmcqa_cop_is_one_based(engine, project, tmp_path):
    rec = {"question": "Q?", "opa": "a", "opb": "b", "opc": "c", "opd": "d", "cop": 1, "exp": None,
           "subject_name": "Anatomy", "id": "x"}
    f = tmp_path / "dev.json"
    f.write_text(json.dumps(rec) + "\n")
    _imp(engine, f, "medmcqa")
    with engine.connect() as conn:
        assert conn.execute(select(items.c.answer_labels)).scalar_one() == ["A"]


def test_chinese_multi_answer_round_trips_byte_exact(engine, project):
    _imp(engine, SAMPLES / "zh_sample.jsonl", "jsonl")
    source = [json.loads(line) for line in (SAMPLES / "zh_sample.jsonl").read_text(encoding="utf-8").splitlines()]
    with engine.connect() as conn:
        rows = {r["question"]: r for r in conn.execute(select(items)).mappings()}
    for rec in source:
        row = rows[rec["question"]]
        assert row["question"].encode("utf-8") == rec["question"].encode("utf-8")
        assert [[k, v] for k, v in rec["options"].items()] == row["options"]
        assert row["language"] == "zh" and row["specialty"] == rec["specialty"]
        assert row["answer_labels"] == sorted(rec["answer"])
    assert any(len(r["answer_labels"]) == 2 for r in rows.values())


def test_no_gold_answer_goes_to_adjudication_flagged(engine, project, tmp_path):
    f = tmp_path / "bank.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in [
        {"question": "Q1", "options": {"A": "x", "B": "y"}, "answer": "A"},
        {"question": "Q2", "options": {"A": "x", "B": "y"}, "answer": "nan"},
        {"question": "Q3", "options": {"A": "x", "B": "y"}, "answer": None},
    ]) + "\n")
    s = _imp(engine, f, "jsonl")
    assert (s.added, s.flagged) == (3, 2)
    with engine.connect() as conn:
        states = dict(conn.execute(select(items.c.question, items.c.state)).all())
        flagged_id = conn.execute(select(items.c.id).where(items.c.question == "Q2")).scalar_one()
        evs = store_decisions.item_events(conn, item_id=flagged_id)
    assert states == {"Q1": "imported", "Q2": "escalated", "Q3": "escalated"}
    assert [e.kind for e in evs] == ["item.imported", "item.transition"]
    assert evs[1].after == {"state": "escalated"}


# --- corrupted copies: refused whole, naming the record, database unchanged ------------------------

def _corrupt_cases(tmp_path: Path) -> list[tuple[str, Path, str]]:
    """(format, corrupted file, what the error must name) for every format."""
    cases = []
    lines = (SAMPLES / "medqa_sample.jsonl").read_text().splitlines()
    truncated = tmp_path / "medqa_trunc.jsonl"
    truncated.write_text("\n".join(lines[:3] + [lines[3][: len(lines[3]) // 2]] + lines[4:]) + "\n")
    cases.append(("medqa", truncated, "record 4 (line 4)"))
    rec = json.loads(lines[5])
    rec["answer_idx"] = "E"
    bad_answer = tmp_path / "medqa_answer.jsonl"
    bad_answer.write_text("\n".join(lines[:5] + [json.dumps(rec)] + lines[6:]) + "\n")
    cases.append(("medqa", bad_answer, "record 6 (line 6): field 'answer_idx'"))

    mlines = (SAMPLES / "medmcqa_sample.json").read_text().splitlines()
    rec = json.loads(mlines[2])
    del rec["opc"]
    missing = tmp_path / "medmcqa_missing.json"
    missing.write_text("\n".join(mlines[:2] + [json.dumps(rec)] + mlines[3:]) + "\n")
    cases.append(("medmcqa", missing, "record 3 (line 3): field 'opc'"))

    data = json.loads((SAMPLES / "pubmedqa_sample.json").read_text())
    pmid = list(data)[1]
    data[pmid]["final_decision"] = "probably"
    bad_pqa = tmp_path / "pubmedqa_bad.json"
    bad_pqa.write_text(json.dumps(data))
    cases.append(("pubmedqa", bad_pqa, f"record 2 (PMID {pmid}): field 'final_decision'"))
    trunc_pqa = tmp_path / "pubmedqa_trunc.json"
    trunc_pqa.write_text(json.dumps(data)[:-200])
    cases.append(("pubmedqa", trunc_pqa, "not valid JSON"))

    rows = list(csv.reader((SAMPLES / "mmlu" / "college_medicine_test.csv").open()))
    rows[1][5] = "F"
    bad_mmlu = tmp_path / "college_medicine_test.csv"
    with bad_mmlu.open("w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    cases.append(("mmlu", bad_mmlu, "record 2 (row 2): field 'answer'"))
    short = tmp_path / "anatomy_test.csv"
    short.write_text("Which nerve?,a,b,c,d,A\nTruncated row,a,b\n")
    cases.append(("mmlu", short, "record 2 (row 2): field '(row)'"))

    zh = (SAMPLES / "zh_sample.jsonl").read_text(encoding="utf-8").splitlines()
    rec = json.loads(zh[1])
    rec["question"] = "   "
    empty_stem = tmp_path / "zh_empty.jsonl"
    empty_stem.write_text("\n".join([zh[0], json.dumps(rec, ensure_ascii=False)] + zh[2:]) + "\n", encoding="utf-8")
    cases.append(("jsonl", empty_stem, "record 2 (line 2): field 'question'"))
    dup = tmp_path / "dup_labels.jsonl"
    dup.write_text(zh[0] + "\n" + '{"question": "Q", "options": {"A": "x", "A": "y"}, "answer": "A"}\n', encoding="utf-8")
    cases.append(("jsonl", dup, "record 2 (line 2): field 'options.A'"))

    csv_bad = tmp_path / "bank.csv"
    csv_bad.write_text("question,options,answer\nQ1,\"A x\\nB y\",A\nQ2,\"A x\\nB y\",C\n")
    cases.append(("csv", csv_bad, "record 2 (row 3): field 'answer'"))
    return cases


def test_corrupted_copies_fail_naming_the_record_and_change_nothing(engine, project, tmp_path):
    _imp(engine, SAMPLES / "zh_sample.jsonl", "jsonl")
    before = _snapshot(engine)
    for fmt, path, expected in _corrupt_cases(tmp_path):
        with pytest.raises(ImportAborted) as err:
            _imp(engine, path, fmt)
        message = str(err.value)
        assert "\n" not in message, message
        assert path.name in message and expected in message, (fmt, message)
        assert _snapshot(engine) == before, f"{path.name} left partial writes"


def test_skip_invalid_imports_the_rest_and_writes_rejects(engine, project, tmp_path):
    cases = {p.name: p for _, p, _ in _corrupt_cases(tmp_path)}
    rejects = tmp_path / "rejects.jsonl"
    s = _imp(engine, cases["medqa_answer.jsonl"], "medqa", skip_invalid=True, rejects_path=rejects)
    assert (s.added, s.rejected) == (7, 1)
    lines = [json.loads(x) for x in rejects.read_text().splitlines()]
    assert lines[0]["record"] == 6 and lines[0]["field"] == "answer_idx" and "among the options" in lines[0]["error"]


def test_non_utf8_file_is_named_as_such(engine, project, tmp_path):
    f = tmp_path / "latin1.jsonl"
    f.write_bytes('{"question": "Fièvre?", "options": {"A": "x", "B": "y"}, "answer": "A"}\n'.encode("latin-1"))
    with pytest.raises(ImportAborted, match="UTF-8"):
        _imp(engine, f, "jsonl")
    c = tmp_path / "latin1.csv"
    c.write_bytes("question,options,answer\nFièvre?,\"A x\\nB y\",A\n".encode("latin-1"))
    with pytest.raises(ImportAborted, match="not UTF-8"):
        _imp(engine, c, "csv")


def test_unknown_layout_asks_for_a_format(engine, project, tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("hello")
    with pytest.raises(ImportAborted, match="--format"):
        _imp(engine, f)
    with pytest.raises(ImportAborted, match="no such file"):
        _imp(engine, tmp_path / "missing.jsonl")


# --- generic layouts with --map -------------------------------------------------------------------

def test_csv_with_mapping_and_option_columns(engine, project, tmp_path):
    f = tmp_path / "bank.csv"
    f.write_text("stem,a,b,c,key,dept\nWhich drug?,aspirin,heparin,warfarin,B,cardiology\n"
                 "Which test?,ECG,CT,MRI,A,cardiology\n")
    s = _imp(engine, f, "csv", mapping={"question": "stem", "options": "a,b,c", "answer": "key", "specialty": "dept"})
    assert s.added == 2
    with engine.connect() as conn:
        row = conn.execute(select(items).where(items.c.question == "Which drug?")).mappings().one()
    assert row["options"] == [["A", "aspirin"], ["B", "heparin"], ["C", "warfarin"]]
    assert row["answer_labels"] == ["B"] and row["specialty"] == "cardiology"


def test_missing_mapped_column_is_named(engine, project, tmp_path):
    f = tmp_path / "bank.csv"
    f.write_text("stem,options,answer\nQ,\"A x\\nB y\",A\n")
    with pytest.raises(ImportAborted, match="field 'question'.*--map question=COLUMN"):
        _imp(engine, f, "csv")


def test_open_question_with_free_text_answer(engine, project, tmp_path):
    f = tmp_path / "open.jsonl"
    f.write_text(json.dumps({"question": "Name the first-line drug for anaphylaxis.", "answer": "Adrenaline"}) + "\n")
    _imp(engine, f, "jsonl")
    with engine.connect() as conn:
        row = conn.execute(select(items)).mappings().one()
    assert row["options"] == [] and row["answer_text"] == "Adrenaline" and row["state"] == "imported"


def test_parquet_and_hf_folders(engine, project, tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    datasets = pytest.importorskip("datasets")
    rows = [json.loads(x) for x in (SAMPLES / "zh_sample.jsonl").read_text(encoding="utf-8").splitlines()]
    table = pa.table({"question": [r["question"] for r in rows],
                      "choices": [list(r["options"].values()) for r in rows],
                      "label": [r["answer"] for r in rows]})
    pq.write_table(table, tmp_path / "bank.parquet")
    s = _imp(engine, tmp_path / "bank.parquet", "auto", mapping={"options": "choices", "answer": "label"})
    assert s.added == 4
    ds = datasets.Dataset.from_dict({"question": ["Q hf 1", "Q hf 2"], "options": [["x", "y"], ["u", "v"]],
                                     "answer": [0, 1]})
    ds.save_to_disk(str(tmp_path / "hfbank"))
    with pytest.raises(ImportAborted, match=r"record 1 \(row 1\): field 'answer': '0' is A if 0-based, no option if "
                                            r"1-based: pass --answer-base"):
        _imp(engine, tmp_path / "hfbank", "auto")  # integer answers are never read without a stated base
    s = _imp(engine, tmp_path / "hfbank", "auto", answer_base=0)
    assert s.added == 2
    with engine.connect() as conn:
        labels = dict(conn.execute(select(items.c.question, items.c.answer_labels)
                                   .where(items.c.question.like("Q hf%"))).all())
    assert labels == {"Q hf 1": ["A"], "Q hf 2": ["B"]}


def test_import_of_a_copied_folder_is_idempotent(engine, project, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(SAMPLES, copy)
    _imp(engine, SAMPLES)
    s = _imp(engine, copy)
    assert s.added == 0 and s.sources_added == 0


# --- CMExam layout (an XLSX written here: the real bank is research-only and not bundled) -----------

def _cmexam_xlsx(path: Path, rows: list[tuple]) -> Path:
    openpyxl = pytest.importorskip("openpyxl")
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(("Question", "Options", "Answer", "Explanation"))
    for r in rows:
        ws.append(r)
    wb.save(path)
    return path


CMEXAM_ROWS = [
    ("夜间阵发性呼吸困难，可见于", "A 急性脑血管疾病\\nB 癔病\\nC 慢性阻塞性肺气肿\\nD 左心功能不全", "D", "心源性呼吸困难（D对）。"),
    ("肾病综合征的诊断必备条件是", "A 大量蛋白尿\\nB 低白蛋白血症\\nC 水肿\\nD 高脂血症", "AB", "A、B为必备条件。"),
    ("由国家制定，各省可适当调整的是", "A 甲\\nB 乙\\nC 丙", "nan", "各选项均错误。"),
]


def test_cmexam_layout_options_multi_answer_and_missing_answer(engine, project, tmp_path):
    f = _cmexam_xlsx(tmp_path / "val.xlsx", CMEXAM_ROWS)
    s = _imp(engine, f)
    assert (s.added, s.flagged) == (3, 1)
    with engine.connect() as conn:
        rows = {r["question"]: r for r in conn.execute(select(items)).mappings()}
    first = rows[CMEXAM_ROWS[0][0]]
    assert first["options"] == [["A", "急性脑血管疾病"], ["B", "癔病"], ["C", "慢性阻塞性肺气肿"], ["D", "左心功能不全"]]
    assert first["language"] == "zh" and first["reference_explanation"] == "心源性呼吸困难（D对）。"
    assert rows[CMEXAM_ROWS[1][0]]["answer_labels"] == ["A", "B"]
    flagged = rows[CMEXAM_ROWS[2][0]]
    assert flagged["state"] == "escalated" and flagged["answer_labels"] == [] and flagged["flag_reason"]


def test_corrupted_cmexam_fails_naming_the_record(engine, project, tmp_path):
    bad = list(CMEXAM_ROWS)
    bad[1] = (bad[1][0], bad[1][1], "AF", bad[1][3])
    f = _cmexam_xlsx(tmp_path / "val.xlsx", bad)
    before = _snapshot(engine)
    with pytest.raises(ImportAborted) as err:
        _imp(engine, f, "cmexam")
    assert "val.xlsx: record 2 (sheet row 3): field 'Answer'" in str(err.value)
    dup = list(CMEXAM_ROWS)
    dup[0] = (dup[0][0], "A 甲\\nA 乙\\nB 丙", "A", "")
    with pytest.raises(ImportAborted, match=r"record 1 \(sheet row 2\): field 'Options.A'"):
        _imp(engine, _cmexam_xlsx(tmp_path / "dup.xlsx", dup), "cmexam")
    (tmp_path / "broken.xlsx").write_bytes(b"PK\x03\x04 not really a workbook")
    with pytest.raises(ImportAborted, match="not a readable XLSX"):
        _imp(engine, tmp_path / "broken.xlsx", "cmexam")
    assert _snapshot(engine) == before


@pytest.mark.parametrize("key", ["PMID\n7", "12\t34\r"])
def test_a_refusal_naming_a_key_with_a_line_break_stays_one_line(engine, project, tmp_path, key):
    """Found by the importer fuzzing: a PubMedQA key is shown in the refusal, escaped, on one line."""
    bank = tmp_path / "pubmed.json"
    bank.write_text(json.dumps({key: {"CONTEXTS": ["c"], "final_decision": "yes"}}))
    with pytest.raises(ImportAborted) as refused:
        import_path(engine, project="default", path=bank, fmt="pubmedqa")
    message = str(refused.value)
    assert "\n" not in message and "\r" not in message and "\t" not in message
    assert repr(key)[1:-1] in message and "field 'QUESTION'" in message
