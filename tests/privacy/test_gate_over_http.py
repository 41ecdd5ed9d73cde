"""The privacy gate end to end, as a user runs it: the CLI in real processes, `[privacy] scope = "all"`, and
the fake OpenAI-compatible server in its own process (every request it receives is in its log).

Three items: one with an MRN, a phone number and an exact date; one with a Chinese resident ID and a
mobile number; one clean exam question. Only the clean one reaches the server; the two others are held
with their findings; releasing one with a reason sends it (and only it)."""

from __future__ import annotations

import json

from clinreason.domain.lifecycle import replay
from clinreason.testing.helpers import cli, cli_env, fake_server_process, read_request_log

MRN_CASE = ("MRN: 00456789. A 58-year-old woman was admitted on 03/14/2025 with dyspnea; her daughter's phone is "
            "415-555-2671. Which of the following is the most likely diagnosis?")
ID_CASE = "患者男，45岁，身份证号11010519491231002X，手机13800138000。发热3天伴咳嗽。最可能的诊断是"
CLEAN = "A 39-year-old man presents with fever and a productive cough for 3 days. Which is the most likely diagnosis?"
SECRETS = ("00456789", "415-555-2671", "03/14/2025", "11010519491231002X", "13800138000")


def test_only_the_clean_item_reaches_the_server_and_a_release_sends_one(tmp_path):
    db = tmp_path / "gate.db"
    (tmp_path / "clinreason.toml").write_text('[privacy]\nscope = "all"\n', encoding="utf-8")
    rows = [{"question": MRN_CASE, "options": {"A": "Pulmonary embolism", "B": "Asthma"}, "answer": "A"},
            {"question": ID_CASE, "options": {"A": "肺炎", "B": "肺结核"}, "answer": "A", "language": "zh"},
            {"question": CLEAN, "options": {"A": "Pneumonia", "B": "Asthma"}, "answer": "A"}]
    (tmp_path / "bank.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                                         encoding="utf-8")
    offline = cli_env(db, None)
    assert cli(["init"], offline, tmp_path).returncode == 0
    assert cli(["import", "bank.jsonl"], offline, tmp_path).returncode == 0
    log = tmp_path / "requests.jsonl"
    with fake_server_process(log=log) as url:
        env = cli_env(db, url)
        out = cli(["generate", "--json"], env, tmp_path)
        assert out.returncode == 0, out.stderr
        report = json.loads(out.stdout)
        assert (report["held"], report["stored"], report["requests"]) == (2, 1, 1)
        first = read_request_log(log)
        assert len(first) == 1
        sent = json.dumps(first, ensure_ascii=False)
        assert "A 39-year-old man presents with fever" in sent and not any(s in sent for s in SECRETS)

        status = json.loads(cli(["status", "--json"], env, tmp_path).stdout)
        assert status["held"] == 2 and status["by_state"]["held"] == 2
        assert status["privacy"]["held_findings"] == {"CN_RESIDENT_ID": 1, "DATE": 1, "MEDICAL_RECORD_NUMBER": 1,
                                                      "PHONE_NUMBER": 2}
        held = json.loads(cli(["privacy", "list", "--json"], env, tmp_path).stdout)
        by_question = {h["findings"][0]["segment"]: h for h in held}
        assert len(held) == 2 and set(by_question) == {"question"}
        ids = {h["item_id"]: {f["type"] for f in h["findings"]} for h in held}
        mrn_item = next(i for i, types in ids.items() if "MEDICAL_RECORD_NUMBER" in types)
        zh_item = next(i for i in ids if i != mrn_item)
        assert ids[mrn_item] == {"MEDICAL_RECORD_NUMBER", "PHONE_NUMBER", "DATE"}
        assert ids[zh_item] == {"CN_RESIDENT_ID", "PHONE_NUMBER"}
        shown = cli(["privacy", "show", mrn_item], env, tmp_path).stdout
        assert "»00456789«[MEDICAL_RECORD_NUMBER" in shown and "»03/14/2025«[DATE" in shown

        refused = cli(["privacy", "release", mrn_item, "--reason", ""], env, tmp_path)
        assert refused.returncode == 1 and "reason is required" in refused.stderr
        done = cli(["privacy", "release", mrn_item, "--reason", "synthetic teaching case, identifiers invented"],
                   env, tmp_path)
        assert done.returncode == 0, done.stderr
        assert cli(["generate"], env, tmp_path).returncode == 0
        second = read_request_log(log)[1:]
        assert len(second) == 1 and second[0]["idempotency_key"].startswith(f"{mrn_item}:")
        sent = json.dumps(second, ensure_ascii=False)
        assert "00456789" in sent and "13800138000" not in sent and "11010519491231002X" not in sent

        story = json.loads(cli(["history", mrn_item, "--json"], env, tmp_path).stdout)
        status = json.loads(cli(["status", "--json"], env, tmp_path).stdout)
    held_event = next(e for e in story["events"] if (e["after"] or {}).get("state") == "held")
    findings = held_event["detail"]["privacy"]["findings"]
    assert sorted((f["type"], MRN_CASE[f["start"]:f["end"]]) for f in findings) == [
        ("DATE", "03/14/2025"), ("MEDICAL_RECORD_NUMBER", "00456789"), ("PHONE_NUMBER", "415-555-2671")]
    assert all(0.5 <= f["score"] <= 1 for f in findings)
    release = next(e for e in story["events"] if (e["detail"].get("privacy") or {}).get("action") == "released")
    assert release["actor"].startswith("cli") and "synthetic teaching case" in release["detail"]["privacy"]["because"]
    assert replay(story["events"]).value == "screening"
    assert status["held"] == 1 and status["privacy"]["by_status"]["released"] == 1
