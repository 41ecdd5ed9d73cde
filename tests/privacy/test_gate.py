"""The privacy gate in the pipeline (stages/privacy.py through the runner and the screen stage), in process:
what is held, what is sent, what an admin's release / edit / exclude does, and the records each leaves."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from clinreason.config import ProjectConfig
from clinreason.domain.lifecycle import replay
from clinreason.llm.fake_backend import FakeBackend
from clinreason.stages import privacy
from clinreason.stages.ingest import import_path
from clinreason.stages.runner import DRAFT, REGENERATE, run_llm_stage
from clinreason.stages.screen import run_screening
from clinreason.store import db
from clinreason.store import items as item_store
from clinreason.store import privacy as holds
from clinreason.store.decisions import get_decision, item_events
from clinreason.store.readmodels import status_counts
from clinreason.store.tables import items

MRN_CASE = ("MRN 00456789. A 45-year-old man was admitted on 03/14/2025 with chest pain; his wife can be reached at "
            "415-555-2671. Which is the most likely diagnosis?")
ID_CASE = "患者身份证号440304198506123412，手机13800138000。男，45岁，发热3天，咳嗽。最可能的诊断是"
CLEAN = "A 39-year-old man has had a productive cough for 3 days; BP 120/80 mm Hg, temperature 38.6°C. Diagnosis?"


@pytest.fixture
def three(engine, project, tmp_path):
    bank = tmp_path / "bank.jsonl"
    rows = [{"question": MRN_CASE, "options": {"A": "Myocardial infarction", "B": "Pericarditis"}, "answer": "A"},
            {"question": ID_CASE, "options": {"A": "肺炎", "B": "支气管炎"}, "answer": "A", "language": "zh"},
            {"question": CLEAN, "options": {"A": "Pneumonia", "B": "Asthma"}, "answer": "A"}]
    bank.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    import_path(engine, project="default", path=bank, fmt="jsonl")
    with engine.connect() as conn:
        found = {r["question"]: r["id"] for r in conn.execute(select(items.c.id, items.c.question)).mappings()}
    return {"mrn": found[MRN_CASE], "id": found[ID_CASE], "clean": found[CLEAN]}


@pytest.fixture
def pc() -> ProjectConfig:
    config = ProjectConfig()
    config.privacy.scope = "all"
    return config


def state(engine, item_id):
    with engine.connect() as conn:
        return item_store.item_state(conn, item_id=item_id)


def sent(backend: FakeBackend) -> str:
    return "\n".join(m["content"] for call in backend.calls for m in call.messages)


async def test_block_holds_what_has_identifiers_and_sends_only_the_clean_item(engine, project, three, pc):
    backend = FakeBackend()
    report = await run_llm_stage(engine, project=project, pc=pc, backend=backend, kind=DRAFT)
    assert len(backend.calls) == 1 and CLEAN in sent(backend)
    for secret in ("00456789", "415-555-2671", "03/14/2025", "440304198506123412", "13800138000"):
        assert secret not in sent(backend)
    assert (report.claimed, report.held, report.stored, report.requests) == (3, 2, 1, 1)
    assert state(engine, three["mrn"]) == state(engine, three["id"]) == "held"
    assert state(engine, three["clean"]) == "screening"
    with engine.connect() as conn:
        events = item_events(conn, item_id=three["mrn"])
        counts = status_counts(conn, project_id=project["id"])
    held = events[-1]
    assert held.after == {"state": "held"} and held.before == {"state": "generating"}
    findings = held.detail["privacy"]["findings"]
    assert {f["type"] for f in findings} == {"MEDICAL_RECORD_NUMBER", "DATE", "PHONE_NUMBER"}
    for f in findings:
        assert f["segment"] == "question" and 0 <= f["start"] < f["end"] <= len(MRN_CASE) and 0.5 <= f["score"] <= 1
        assert MRN_CASE[f["start"]:f["end"]] in ("00456789", "03/14/2025", "415-555-2671")
    assert "00456789" not in json.dumps(held.detail)  # where it is, not what it is
    assert replay(events).value == "held"
    assert counts["held"] == 2 and counts["by_state"]["held"] == 2
    assert counts["privacy"]["by_status"]["held"] == 2
    assert counts["privacy"]["held_findings"] == {"CN_RESIDENT_ID": 1, "DATE": 1, "MEDICAL_RECORD_NUMBER": 1,
                                                  "PHONE_NUMBER": 2}


async def test_a_release_sends_it_and_only_new_findings_hold_it_again(engine, project, three, pc):
    await run_llm_stage(engine, project=project, pc=pc, backend=FakeBackend(), kind=DRAFT)
    with db.transaction(engine) as conn:
        done = privacy.release(conn, project_id=project["id"], item_id=three["mrn"], actor="user:boss",
                               reason="a synthetic case: the identifiers are invented")
    assert done["state"] == "imported" and state(engine, three["mrn"]) == "imported"
    backend = FakeBackend(handler=lambda m, p: "1. The stem says to call 13912345678 for results.\n"
                                               "2. The findings point away from A.\nFinal answer: B")
    report = await run_llm_stage(engine, project=project, pc=pc, backend=backend, kind=DRAFT)
    assert report.stored == 1 and "00456789" in sent(backend)  # released: sent as it is
    # the draft fails its blocking checks and goes back for regeneration, whose prompt quotes the draft:
    # the phone number the model wrote is new, and holds the item again
    await run_screening(engine, project=project, pc=pc)
    assert state(engine, three["mrn"]) == "regenerating"
    again = FakeBackend()
    report = await run_llm_stage(engine, project=project, pc=pc, backend=again, kind=REGENERATE)
    assert report.held == 1 and again.calls == []
    with engine.connect() as conn:
        hold = holds.open_hold(conn, project_id=project["id"], item_id=three["mrn"])
        events = item_events(conn, item_id=three["mrn"])
    assert hold["kind"] == "regenerate" and hold["resume_state"] == "regenerating"
    assert [(f["type"], f["segment"]) for f in hold["findings"]] == [("PHONE_NUMBER", "previous rationale")]
    released = next(e for e in events if (e.detail.get("privacy") or {}).get("action") == "released")
    assert released.actor == "user:boss" and released.detail["privacy"]["because"].startswith("a synthetic case")
    assert replay(events).value == "held"


async def test_flag_sends_and_records_the_findings(engine, project, three, pc):
    pc.privacy.gate = "flag"
    backend = FakeBackend()
    report = await run_llm_stage(engine, project=project, pc=pc, backend=backend, kind=DRAFT)
    assert len(backend.calls) == 3 and (report.held, report.flagged) == (0, 2)
    with engine.connect() as conn:
        flagged = holds.project_holds(conn, project_id=project["id"], status="flagged")
        kinds = [e.kind for e in item_events(conn, item_id=three["id"])]
    assert {h["item_id"] for h in flagged} == {three["mrn"], three["id"]}
    assert "privacy.flagged" in kinds and state(engine, three["id"]) == "screening"


async def test_scope_remote_scans_only_requests_that_leave_the_machine(engine, project, three):
    local = ProjectConfig()
    local.llm.base_url = "http://127.0.0.1:8000/v1"
    backend = FakeBackend()
    await run_llm_stage(engine, project=project, pc=local, backend=backend, kind=DRAFT, limit=1)
    assert len(backend.calls) == 1  # loopback: not scanned, whatever it carries
    remote = ProjectConfig()
    remote.llm.base_url = "https://api.example.com/v1"
    await run_llm_stage(engine, project=project, pc=remote, backend=FakeBackend(), kind=DRAFT)
    with engine.connect() as conn:
        states = {r["id"]: r["state"] for r in conn.execute(select(items.c.id, items.c.state)).mappings()}
        endpoints = {h["endpoint"] for h in holds.project_holds(conn, project_id=project["id"])}
    assert list(states.values()).count("held") >= 1 and endpoints == {"https://api.example.com"}


async def test_gate_off_scans_nothing(engine, project, three, pc):
    pc.privacy.gate = "off"
    backend = FakeBackend()
    await run_llm_stage(engine, project=project, pc=pc, backend=backend, kind=DRAFT)
    assert len(backend.calls) == 3


@pytest.mark.parametrize("backend,url,local", [
    ("auto", None, True), ("local", None, True), ("fake", None, True),
    ("auto", "http://127.0.0.1:8000/v1", True), ("openai", "http://localhost:11434/v1", True),
    ("auto", "http://[::1]:8000/v1", True), ("auto", "http://127.8.9.10/v1", True),
    ("auto", "https://api.deepseek.com/v1", False), ("auto", "http://10.0.0.7:8000/v1", False),
    ("auto", "http://localhost.example.com/v1", False), ("openai", "http://user:pw@gpu-box:8000/v1", False),
])
def test_which_endpoints_are_on_this_machine(backend, url, local):
    assert privacy.endpoint_is_local(backend, url) is local
    assert "pw" not in privacy.endpoint_label(backend, url)


async def test_the_judge_is_gated_too(engine, project, three):
    pc = ProjectConfig()
    pc.screen.judge = True
    pc.screen.judge_base_url = "https://judge.example.org/v1"  # drafting stays local: only the judge is scanned
    drafter = FakeBackend()
    await run_llm_stage(engine, project=project, pc=pc, backend=drafter, kind=DRAFT)
    assert len(drafter.calls) == 3
    judge = FakeBackend(handler=lambda m, p: json.dumps({"scores": {d: 4 for d in (
        "correctness", "reasoning", "sufficiency", "terminology", "clinical_value")}}))
    report = await run_screening(engine, project=project, pc=pc, judge=judge)
    assert report.held == 2 and report.judged == 1 and len(judge.calls) == 1 and CLEAN in sent(judge)
    assert state(engine, three["id"]) == "held"
    with db.transaction(engine) as conn:
        assert privacy.release(conn, project_id=project["id"], item_id=three["id"], actor="user:boss",
                               reason="checked: test data")["state"] == "screening"
    await run_screening(engine, project=project, pc=pc, judge=judge)
    assert len(judge.calls) == 2 and "13800138000" in sent(judge)


async def test_edit_keeps_the_old_text_and_the_new_one_is_scanned_again(engine, project, three, pc):
    await run_llm_stage(engine, project=project, pc=pc, backend=FakeBackend(), kind=DRAFT)
    with db.transaction(engine) as conn:
        done = privacy.edit(conn, project_id=project["id"], item_id=three["mrn"], actor="user:boss",
                            reason="identifiers removed", redact=True)
    assert done == {"item_id": three["mrn"], "hold_id": done["hold_id"], "state": "imported", "revision": 1,
                    "fields": ["question"]}
    with engine.connect() as conn:
        item = item_store.get_item(conn, project_id=project["id"], item_id=three["mrn"])
        revisions = item_store.content_revisions(conn, item_id=three["mrn"])
        kinds = [e.kind for e in item_events(conn, item_id=three["mrn"])]
    assert item.question.startswith("MRN [MEDICAL_RECORD_NUMBER]. A 45-year-old man was admitted on [DATE]")
    assert "[PHONE_NUMBER]" in item.question and revisions[0]["question"] == MRN_CASE
    assert revisions[0]["replaced_by"] == "user:boss" and "item.content_edited" in kinds
    backend = FakeBackend()
    await run_llm_stage(engine, project=project, pc=pc, backend=backend, kind=DRAFT)
    assert len(backend.calls) == 1 and "[MEDICAL_RECORD_NUMBER]" in sent(backend) and "00456789" not in sent(backend)
    # an edit that leaves an identifier in is held again
    with db.transaction(engine) as conn:
        privacy.edit(conn, project_id=project["id"], item_id=three["id"], actor="user:boss", reason="shorter",
                     changes={"question": "男，45岁，发热3天。手机13800138000。诊断？", "options": {"B": "上呼吸道感染"}})
    await run_llm_stage(engine, project=project, pc=pc, backend=FakeBackend(), kind=DRAFT)
    with engine.connect() as conn:
        again = holds.open_hold(conn, project_id=project["id"], item_id=three["id"])
        item = item_store.get_item(conn, project_id=project["id"], item_id=three["id"])
    assert [f["type"] for f in again["findings"]] == ["PHONE_NUMBER"] and item.options[1] == ("B", "上呼吸道感染")


async def test_exclude_ends_it_with_a_decision(engine, project, three, pc):
    await run_llm_stage(engine, project=project, pc=pc, backend=FakeBackend(), kind=DRAFT)
    with db.transaction(engine) as conn:
        privacy.exclude(conn, project_id=project["id"], item_id=three["id"], actor="user:boss",
                        reason="real patient data")
    with engine.connect() as conn:
        decision = get_decision(conn, item_id=three["id"])
        counts = status_counts(conn, project_id=project["id"])
    assert state(engine, three["id"]) == "excluded" and decision.kind == "excluded"
    assert decision.reason == "privacy: real patient data" and decision.decided_by == "user:boss"
    assert counts["privacy"]["by_status"]["excluded"] == 1 and counts["held"] == 1


async def test_actions_say_what_is_wrong(engine, project, three, pc):
    await run_llm_stage(engine, project=project, pc=pc, backend=FakeBackend(), kind=DRAFT)
    pid = project["id"]

    def attempt(work, **kw):
        with pytest.raises(privacy.PrivacyError) as err, db.transaction(engine) as conn:
            work(conn, project_id=pid, actor="user:boss", **kw)
        return str(err.value)

    assert "reason is required" in attempt(privacy.release, item_id=three["mrn"], reason="  ")
    assert "not held" in attempt(privacy.release, item_id=three["clean"], reason="why not")
    assert "no item nope" in attempt(privacy.exclude, item_id="nope", reason="x")
    assert "nothing to change" in attempt(privacy.edit, item_id=three["mrn"], reason="x")
    assert "no option Z" in attempt(privacy.edit, item_id=three["mrn"], reason="x", changes={"options": {"Z": "t"}})
    assert "cannot be empty" in attempt(privacy.edit, item_id=three["mrn"], reason="x", changes={"question": " "})
    assert "cannot be edited" in attempt(privacy.edit, item_id=three["mrn"], reason="x",
                                         changes={"answer_labels": ["B"]})
    assert state(engine, three["mrn"]) == "held"  # nothing above changed anything
    with db.transaction(engine) as conn:
        privacy.release(conn, project_id=pid, item_id=three["mrn"], actor="user:boss", reason="ok")
    assert "not held" in attempt(privacy.release, item_id=three["mrn"], reason="twice")
