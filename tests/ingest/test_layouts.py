"""The layouts real banks come in (issue 15), each imported through `clinreason import` with the documented
flags, on SQLite and PostgreSQL: a `;`-delimited CSV and a TSV, an options cell holding a Python list, one
JSON document with the questions nested, options given as a list of objects, and integer answers — never
read without a stated base. Every case checks the gold answer's option *text*, not only its label. Also
`--dry-run` (nothing written, the first items shown as stored) and the gold-position distribution."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from clinreason.cli import app
from clinreason.stages.ingest import ImportAborted, import_path
from clinreason.store.tables import events, item_sources, items

runner = CliRunner()


@pytest.fixture
def cli(engine, project, tmp_path, monkeypatch):
    """`clinreason import ...` against the test database; returns (exit code, output)."""
    monkeypatch.chdir(tmp_path)
    url = engine.url.render_as_string(hide_password=False)

    def run(*args: str) -> tuple[int, str]:
        result = runner.invoke(app, ["import", *args, "--db", url])
        return result.exit_code, result.output

    return run


def stored(engine) -> dict[str, dict]:
    """question -> {options: {label: text}, gold: [texts of the gold options], labels, row}."""
    with engine.connect() as conn:
        rows = conn.execute(select(items)).mappings().all()
    out = {}
    for r in rows:
        options = {label: text for label, text in r["options"]}
        out[r["question"]] = {"options": options, "labels": r["answer_labels"],
                              "gold": [options[label] for label in r["answer_labels"]], "row": r}
    return out


def counts(engine) -> tuple[int, int, int]:
    with engine.connect() as conn:
        return tuple(conn.execute(select(func.count()).select_from(t)).scalar_one() for t in (items, item_sources,
                                                                                                 events))


# --- 1. delimited text ------------------------------------------------------------------------------

def test_semicolon_csv_is_sniffed_and_read(cli, engine, tmp_path):
    bank = tmp_path / "bank.csv"
    bank.write_text("question;A;B;C;answer\n"
                    "Which drug first in anaphylaxis, adult, IM?;Adrenaline, 0.5 mg;Chlorphenamine;Hydrocortisone;A\n"
                    "Which test confirms a pulmonary embolism?;D-dimer;CT pulmonary angiography;ECG;B\n",
                    encoding="utf-8")
    code, out = cli(str(bank), "--map", "options=A,B,C")
    assert code == 0, out
    assert "bank.csv (csv, delimiter semicolon)" in out
    got = stored(engine)
    assert got["Which drug first in anaphylaxis, adult, IM?"]["gold"] == ["Adrenaline, 0.5 mg"]
    assert got["Which test confirms a pulmonary embolism?"]["gold"] == ["CT pulmonary angiography"]


def test_pipe_delimiter_named_and_tsv(cli, engine, tmp_path):
    piped = tmp_path / "piped.txt.csv"
    piped.write_text("question|options|answer\nFirst-line drug for absence seizures?|A Ethosuximide\\nB Phenytoin|A\n",
                     encoding="utf-8")
    code, out = cli(str(piped), "--format", "csv", "--delimiter", "|")
    assert code == 0, out
    tsv = tmp_path / "bank.tsv"
    tsv.write_text("question\toptions\tanswer\nAntidote to paracetamol overdose?\t[\"Naloxone\", \"Acetylcysteine\"]\tB\n",
                   encoding="utf-8")
    code, out = cli(str(tsv), "--format", "tsv")
    assert code == 0 and "bank.tsv (tsv, delimiter tab)" in out, out
    got = stored(engine)
    assert got["First-line drug for absence seizures?"]["gold"] == ["Ethosuximide"]
    assert got["Antidote to paracetamol overdose?"]["gold"] == ["Acetylcysteine"]
    code, out = cli(str(tsv), "--format", "tsv", "--delimiter", "ab")
    assert code == 2 and "--delimiter" in out


# --- 2. cells holding structures ---------------------------------------------------------------------

def test_options_cell_holding_a_python_list(cli, engine, tmp_path):
    bank = tmp_path / "pylist.csv"
    bank.write_text("question,options,answer\n"
                    "\"Which drug is an antiplatelet?\",\"['Aspirin', 'Heparin', 'Warfarin', \"\"Dabigatran\"\"]\",A\n"
                    "\"Which is a direct thrombin inhibitor?\",\"('Aspirin', 'Heparin', 'Dabigatran')\",Dabigatran\n"
                    "\"Which two are anticoagulants?\",\"['Aspirin', 'Heparin', 'Warfarin']\",\"['B', 'C']\"\n",
                    encoding="utf-8")
    code, out = cli(str(bank))
    assert code == 0, out
    got = stored(engine)
    assert got["Which drug is an antiplatelet?"]["options"] == {"A": "Aspirin", "B": "Heparin", "C": "Warfarin",
                                                               "D": "Dabigatran"}
    assert got["Which drug is an antiplatelet?"]["gold"] == ["Aspirin"]
    assert got["Which is a direct thrombin inhibitor?"]["gold"] == ["Dabigatran"]
    assert got["Which two are anticoagulants?"]["gold"] == ["Heparin", "Warfarin"]


def test_a_python_dict_cell_with_a_repeated_label_is_refused(cli, engine, tmp_path):
    bank = tmp_path / "dup.csv"
    bank.write_text("question,options,answer\nQ?,\"{'A': 'x', 'B': 'y', 'A': 'z'}\",A\n", encoding="utf-8")
    before = counts(engine)
    code, out = cli(str(bank))
    assert code == 1 and "dup.csv: record 1 (row 2): field 'options.A'" in out and "duplicate label" in out, out
    assert counts(engine) == before


# --- 3. one JSON document, records nested ----------------------------------------------------------------

NESTED = {"bank": "cardio-neuro 2024", "sections": {
    "Cardiology": {"code": "CAR", "questions": [
        {"stem": "First drug in suspected ACS?", "options": {"A": "Aspirin", "B": "Alteplase", "C": "Atenolol"},
         "answer": "A"},
        {"stem": "Rhythm treated with adenosine?", "options": {"A": "AF", "B": "SVT", "C": "VT"}, "answer": "B"}]},
    "Neurology": {"code": "NEU", "questions": [
        {"stem": "First imaging in suspected stroke?", "options": {"A": "MRI", "B": "Non-contrast CT"},
         "answer": "B"}]}}}


def test_nested_json_with_records_path_and_enclosing_fields(cli, engine, tmp_path):
    doc = tmp_path / "nested.json"
    doc.write_text(json.dumps(NESTED), encoding="utf-8")
    code, out = cli(str(doc), "--format", "json")
    assert code == 1 and "--records" in out and "sections.*.questions" in out, out
    code, out = cli(str(doc), "--format", "json", "--records", "sections.*.questions", "--map", "question=stem",
                    "--map", "specialty=^*", "--map", "context=^code")
    assert code == 0 and "added 3 items" in out, out
    got = stored(engine)
    acs = got["First drug in suspected ACS?"]
    assert acs["gold"] == ["Aspirin"] and acs["row"]["specialty"] == "Cardiology" and acs["row"]["context"] == "CAR"
    stroke = got["First imaging in suspected stroke?"]
    assert stroke["gold"] == ["Non-contrast CT"] and stroke["row"]["specialty"] == "Neurology"
    assert got["Rhythm treated with adenosine?"]["gold"] == ["SVT"]
    with engine.connect() as conn:
        locators = sorted(conn.execute(select(item_sources.c.record)).scalars())
    assert locators == ["1", "2", "3"]


def test_a_wrong_records_path_names_where_it_stopped(cli, engine, tmp_path):
    doc = tmp_path / "nested.json"
    doc.write_text(json.dumps(NESTED), encoding="utf-8")
    code, out = cli(str(doc), "--format", "json", "--records", "sections.*.items")
    assert code == 1 and "sections.Cardiology has no key 'items' (its keys: code, questions)" in out, out


# --- 4. options as a list of objects ------------------------------------------------------------------

def test_options_as_objects_with_their_own_labels(cli, engine, tmp_path):
    bank = tmp_path / "objects.jsonl"
    bank.write_text("\n".join(json.dumps(r) for r in [
        {"q": "Reversal agent for dabigatran?", "choices": [{"key": 1, "text": "Vitamin K"},
                                                           {"key": 2, "text": "Protamine"},
                                                           {"key": 3, "text": "Andexanet"},
                                                           {"key": 4, "text": "Idarucizumab"}], "answer": "4"},
        {"q": "Drug that causes gingival hyperplasia?", "choices": [{"key": 1, "text": "Phenytoin"},
                                                                    {"key": 2, "text": "Valproate"}], "answer": 1},
    ]) + "\n", encoding="utf-8")
    code, out = cli(str(bank), "--map", "question=q", "--map", "options=choices", "--map", "option_text=text")
    assert code == 1 and "'4' is no option if 0-based, no option if 1-based" not in out  # 4 options: it is D if 1-based
    assert "record 1 (line 1): field 'answer': '4' is no option if 0-based, D if 1-based" in out, out
    code, out = cli(str(bank), "--map", "question=q", "--map", "options=choices", "--map", "option_text=text",
                    "--map", "option_label=key")
    assert code == 0, out
    got = stored(engine)
    dabi = got["Reversal agent for dabigatran?"]
    assert dabi["gold"] == ["Idarucizumab"] and dabi["labels"] == ["D"]  # stored as A, B, ... in the order given
    assert dabi["row"]["meta"]["option_labels"] == {"A": "1", "B": "2", "C": "3", "D": "4"}
    assert got["Drug that causes gingival hyperplasia?"]["gold"] == ["Phenytoin"]


def test_option_objects_without_option_text_say_what_to_pass(cli, engine, tmp_path):
    bank = tmp_path / "objects.jsonl"
    bank.write_text(json.dumps({"question": "Q?", "options": [{"key": 1, "text": "x"}, {"key": 2, "text": "y"}],
                                "answer": "A"}) + "\n", encoding="utf-8")
    code, out = cli(str(bank))
    assert code == 1 and "field 'options'" in out and "--map option_text=KEY (keys seen: key, text)" in out, out
    code, out = cli(str(bank), "--map", "option_label=key")
    assert code == 2 and "needs --map option_text" in out


# --- 5. integer answers: never guessed ----------------------------------------------------------------

ONE_BASED = "question,A,B,C,D,answer\n" \
    "Antidote to methotrexate toxicity?,Folinic acid,Folic acid,Vitamin B12,Pyridoxine,1\n" \
    "Drug of choice for absence seizures in a child?,Carbamazepine,Ethosuximide,Phenytoin,Gabapentin,2\n" \
    "First-line treatment of anaphylaxis?,Antihistamine,Steroid,Salbutamol,Adrenaline,4\n"


def test_one_based_integer_answers_are_refused_until_the_base_is_stated(cli, engine, tmp_path):
    bank = tmp_path / "onebased.csv"
    bank.write_text(ONE_BASED, encoding="utf-8")
    before = counts(engine)
    code, out = cli(str(bank), "--map", "options=A,B,C,D")
    assert code == 1, out
    assert ("onebased.csv: record 1 (row 2): field 'answer': '1' is B if 0-based, A if 1-based: pass --answer-base"
            in out), out
    assert counts(engine) == before
    code, out = cli(str(bank), "--map", "options=A,B,C,D", "--skip-invalid")
    assert code == 1 and "--answer-base" in out and counts(engine) == before  # the file, not a record, is refused
    code, out = cli(str(bank), "--map", "options=A,B,C,D", "--answer-base", "1")
    assert code == 0, out
    got = stored(engine)
    assert got["Antidote to methotrexate toxicity?"]["gold"] == ["Folinic acid"]
    assert got["Drug of choice for absence seizures in a child?"]["gold"] == ["Ethosuximide"]
    assert got["First-line treatment of anaphylaxis?"]["gold"] == ["Adrenaline"]


def test_zero_based_answers_with_the_base_stated_and_out_of_range_named(cli, engine, tmp_path):
    bank = tmp_path / "zerobased.jsonl"
    bank.write_text(json.dumps({"question": "Vitamin deficient in Wernicke encephalopathy?",
                                "options": ["Thiamine", "Niacin", "Folate"], "answer": 0}) + "\n"
                    + json.dumps({"question": "Q two?", "options": ["x", "y"], "answer": 2}) + "\n",
                    encoding="utf-8")
    code, out = cli(str(bank), "--answer-base", "0")
    assert code == 1 and "record 2 (line 2): field 'answer': expected an option index in 0-1 (--answer-base 0)" in out
    code, out = cli(str(bank), "--answer-base", "0", "--skip-invalid", "--rejects", str(tmp_path / "rej.jsonl"))
    assert code == 0, out
    assert stored(engine)["Vitamin deficient in Wernicke encephalopathy?"]["gold"] == ["Thiamine"]


def test_native_formats_keep_their_known_base(cli, engine, tmp_path):
    bank = tmp_path / "dev.json"
    bank.write_text(json.dumps({"question": "Nerve injured in wrist drop?", "opa": "Radial", "opb": "Ulnar",
                                "opc": "Median", "opd": "Axillary", "cop": 1}) + "\n", encoding="utf-8")
    code, out = cli(str(bank), "--format", "medmcqa")
    assert code == 0, out
    assert stored(engine)["Nerve injured in wrist drop?"]["gold"] == ["Radial"]  # cop is 1-based, as MedMCQA says
    code, out = cli(str(bank), "--format", "medmcqa", "--answer-base", "0")
    assert code == 1 and "known answer format" in out


def test_an_answer_that_is_itself_an_option_label_is_not_an_index(engine, project, tmp_path):
    bank = tmp_path / "numbered.jsonl"
    bank.write_text(json.dumps({"question": "Numbered options?", "options": {"1": "first", "2": "second"},
                                "answer": "2"}) + "\n", encoding="utf-8")
    import_path(engine, project="default", path=bank, fmt="jsonl")
    assert stored(engine)["Numbered options?"]["gold"] == ["second"]


# --- dry run and the distribution of gold positions ---------------------------------------------------------

def test_dry_run_shows_items_as_stored_and_writes_nothing(cli, engine, tmp_path):
    bank = tmp_path / "onebased.csv"
    bank.write_text(ONE_BASED, encoding="utf-8")
    before = counts(engine)
    code, out = cli(str(bank), "--map", "options=A,B,C,D", "--answer-base", "1", "--dry-run")
    assert code == 0, out
    assert counts(engine) == before
    assert "dry run" in out and "nothing was written" in out
    assert "  Antidote to methotrexate toxicity?\n  * A. Folinic acid\n    B. Folic acid\n" in out, out
    assert "  * D. Adrenaline" in out
    assert "would add 3 items" in out
    assert "gold answer positions: A 33 %, B 33 %, C 0 %, D 33 %" in out
    code, out = cli(str(bank), "--map", "options=A,B,C,D", "--answer-base", "1", "--dry-run", "--json")
    summary = json.loads(out)
    assert summary["dry_run"] is True and len(summary["preview"]) == 3 and summary["added"] == 3
    assert summary["preview"][0]["options"][0] == ["A", "Folinic acid"] and summary["preview"][0]["answer"] == ["A"]
    assert summary["gold_positions"] == {"A": 1, "B": 1, "C": 0, "D": 1}
    code, out = cli(str(bank), "--map", "options=A,B,C,D", "--dry-run")
    assert code == 1 and "--answer-base" in out  # a dry run refuses what the import would refuse


def test_a_position_that_holds_no_gold_answer_is_warned_about(cli, engine, tmp_path):
    rows = ["question,A,B,C,D,answer"]
    for n in range(120):  # 1-based answers 1-3 read as 0-based: never A... and never D either in this bank
        rows.append(f"Question number {n}?,w{n},x{n},y{n},z{n},{n % 3 + 1}")
    bank = tmp_path / "shifted.csv"
    bank.write_text("\n".join(rows) + "\n", encoding="utf-8")
    code, out = cli(str(bank), "--map", "options=A,B,C,D", "--answer-base", "0")
    assert code == 0, out
    assert "gold answer positions: A 0 %, B 33 %, C 33 %, D 33 %" in out
    assert "warning: position A holds none of the 120 gold answers of 120 records" in out
    small = tmp_path / "small.csv"
    small.write_text("\n".join(rows[:30]).replace("Question number", "Small q") + "\n", encoding="utf-8")
    code, out = cli(str(small), "--map", "options=A,B,C,D", "--answer-base", "0")
    assert code == 0 and "warning" not in out  # under 100 records a missing position means nothing


def test_flags_that_mean_nothing_for_the_format_are_refused(engine, project, tmp_path):
    bank = tmp_path / "bank.jsonl"
    bank.write_text(json.dumps({"question": "Q?", "options": ["x", "y"], "answer": "A"}) + "\n")
    for kw, flag in (({"records": "a.b"}, "--records"), ({"delimiter": ";"}, "--delimiter"),
                     ({"question_map": {"q": "correctness"}}, "--map-question")):
        with pytest.raises(ImportAborted, match=flag):
            import_path(engine, project="default", path=bank, fmt="jsonl", **kw)


def test_every_new_reader_honours_skip_invalid(engine, project, tmp_path):
    doc = tmp_path / "doc.json"
    doc.write_text(json.dumps([{"question": "Good one?", "options": ["x", "y"], "answer": "B"},
                               {"question": "", "options": ["x", "y"], "answer": "A"}, "not an object"]))
    s = import_path(engine, project="default", path=doc, fmt="json", skip_invalid=True,
                    rejects_path=tmp_path / "rej.jsonl")
    assert (s.added, s.rejected) == (1, 2)
    lines = [json.loads(x) for x in (tmp_path / "rej.jsonl").read_text().splitlines()]
    assert [(x["record"], x["field"]) for x in lines] == [(2, "question"), (3, "(record)")]
    assert lines[1]["locator"] == "(the document)[2]"
    tsv = tmp_path / "bank.tsv"
    tsv.write_text("question\toptions\tanswer\nFine?\t['x', 'y']\tA\nBroken?\t['x', 'y']\tZ\n")
    s = import_path(engine, project="default", path=tsv, fmt="tsv", skip_invalid=True,
                    rejects_path=tmp_path / "rej2.jsonl")
    assert (s.added, s.rejected) == (1, 1)
    assert json.loads((tmp_path / "rej2.jsonl").read_text())["field"] == "answer"


def test_auto_detects_tsv_and_json_arrays(engine, project, tmp_path):
    folder = tmp_path / "bank"
    folder.mkdir()
    (folder / "a.tsv").write_text("question\toptions\tanswer\nTSV question?\tA x\\nB y\tA\n")
    (folder / "b.json").write_text(json.dumps([{"question": "JSON question?", "options": ["x", "y"], "answer": "B"}],
                                              indent=1))
    s = import_path(engine, project="default", path=Path(folder))
    assert sorted(s.files) == ["a.tsv (tsv, delimiter tab)", "b.json (json)"] and s.added == 2
