"""The real question banks in ../shared/data (skipped where that folder is absent; CI has it)."""

from __future__ import annotations

from sqlalchemy import select

from clinreason.stages.ingest import import_path
from clinreason.store import readmodels as store_readmodels
from clinreason.store.tables import items

EXPECTED = {"medqa": 1273, "medmcqa": 4183, "pubmedqa": 1000, "cmexam": 6811, "mmlu": 1493}
FOLDERS = {"medqa": "medqa", "medmcqa": "medmcqa", "pubmedqa": "pubmedqa", "cmexam": "cmexam", "mmlu": "mmlu_medical"}


def test_all_five_banks_give_the_exact_counts_and_reimport_adds_nothing(engine, project, shared_data):
    for source, folder in FOLDERS.items():
        s = import_path(engine, project="default", path=shared_data / folder, fmt="auto")
        assert s.added == EXPECTED[source], (source, s.to_dict())
        assert s.rejected == 0
    mmlu = import_path(engine, project="default", path=shared_data / "mmlu_medical", fmt="mmlu")
    assert (mmlu.records, mmlu.added) == (1571, 0)
    again = import_path(engine, project="default", path=shared_data, fmt="auto")
    assert again.added == 0 and again.sources_added == 0
    with engine.connect() as conn:
        counts = store_readmodels.status_counts(conn, project_id=project["id"])
        zh_answers = conn.execute(select(items.c.answer_labels).where(items.c.language == "zh")).scalars().all()
        multi = sum(1 for labels in zh_answers if len(labels) > 1)
        no_gold = conn.execute(select(items).where(items.c.state == "escalated")).mappings().all()
    assert counts["by_source"] == dict(sorted(EXPECTED.items()))
    assert counts["items"] == sum(EXPECTED.values())
    assert counts["by_state"]["escalated"] == 1 and counts["flagged"] == 1
    assert multi == 210  # CMExam questions with several correct labels, held as a set
    assert "由国家制定" in no_gold[0]["question"]


def test_mmlu_duplicates_keep_both_subjects(engine, project, shared_data):
    s = import_path(engine, project="default", path=shared_data / "mmlu_medical", fmt="mmlu")
    assert (s.records, s.added, s.duplicates, s.sources_added) == (1571, 1493, 78, 78)
