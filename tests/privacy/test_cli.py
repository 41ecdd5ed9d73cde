"""`clinreason privacy edit|exclude|scan` and the status line, through the CLI (in process)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from clinreason.cli import app

MRN_CASE = "MRN 00456789. A 45-year-old man has chest pain. Which is the most likely diagnosis?"
ZH_CASE = "患者手机13800138000。男，45岁，发热3天。最可能的诊断是"


def run(args, env, code=0):
    out = CliRunner().invoke(app, args, env=env)
    assert out.exit_code == code, out.output
    return out.stdout if code == 0 else out.output


def test_edit_exclude_scan_and_status(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    env = {"CLINREASON_DB": f"sqlite:///{tmp_path / 'cli.db'}", "CLINREASON_LLM_BACKEND": "fake"}
    (tmp_path / "clinreason.toml").write_text('[privacy]\nscope = "all"\n')
    (tmp_path / "bank.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in (
        {"question": MRN_CASE, "options": {"A": "MI", "B": "GERD"}, "answer": "A"},
        {"question": ZH_CASE, "options": {"A": "肺炎", "B": "感冒"}, "answer": "A", "language": "zh"})),
        encoding="utf-8")
    run(["init"], env)
    dry = json.loads(run(["privacy", "scan", "bank.jsonl", "--json"], env))
    assert (dry["items"], dry["would_hold"], dry["by_type"]) == (2, 2, {"MEDICAL_RECORD_NUMBER": 1,
                                                                        "PHONE_NUMBER": 1})
    assert "00456789" not in json.dumps(dry)  # --show-text is needed to print what was found
    assert "00456789" in run(["privacy", "scan", "bank.jsonl", "--show-text"], env)
    run(["import", "bank.jsonl"], env)
    assert "2 of 2 item(s) would be held" in run(["privacy", "scan"], env)
    run(["generate"], env)
    assert "privacy:    2 held (1 × MEDICAL_RECORD_NUMBER, 1 × PHONE_NUMBER)" in run(["status"], env)
    held = {h["summary"]: h["item_id"] for h in json.loads(run(["privacy", "list", "--json"], env))}
    mrn, zh = held["1 × MEDICAL_RECORD_NUMBER"], held["1 × PHONE_NUMBER"]
    assert "give --question or --question-file" in run(["privacy", "edit", mrn, "--reason", "x", "--question", "a",
                                                        "--question-file", "f"], env, code=2)
    assert "expected LABEL=text" in run(["privacy", "edit", mrn, "--reason", "x", "--option", "B"], env, code=2)
    (tmp_path / "q.txt").write_text("A 45-year-old man has chest pain. Which is the most likely diagnosis?")
    out = run(["privacy", "edit", mrn, "--reason", "record number removed", "--question-file", "q.txt",
               "--option", "B=Reflux oesophagitis"], env)
    assert "previous text is revision 1" in out and "'imported' again" in out
    run(["privacy", "exclude", zh, "--reason", "real patient"], env)
    shown = run(["privacy", "show", zh], env)
    assert "excluded" in shown and "real patient" in shown
    story = json.loads(run(["history", mrn, "--json"], env))
    assert story["item"]["options"][1] == ["B", "Reflux oesophagitis"]
    assert any(e["kind"] == "item.content_edited" for e in story["events"])
    status = json.loads(run(["status", "--json"], env))
    assert status["held"] == 0 and status["privacy"]["by_status"]["edited"] == 1
    assert status["privacy"]["by_status"]["excluded"] == 1
