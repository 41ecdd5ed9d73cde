"""`status --json` counts: the same numbers whether the project is alone in its database (counted without
joining back to items) or shares it with another project (counted through the join)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import insert

from clinreason.config import ProjectConfig
from clinreason.store import projects as store_projects
from clinreason.store.readmodels import status_counts
from clinreason.store.tables import item_sources, items, rationales, reviews, users

T0 = datetime(2025, 5, 1, 9, 0, tzinfo=UTC)


def _fill(conn, project_id: int, prefix: str, n: int, *, reviewer_id: int) -> None:
    for i in range(n):
        iid = f"{prefix}{i}"
        conn.execute(insert(items).values(
            id=iid, project_id=project_id, content_hash=iid, question="q", options=[], answer_labels=["A"],
            language="en", specialty=None, meta={}, state=["in_review", "accepted", "failed"][i % 3], strikes=0,
            auto_retries=0, flag_reason="no gold answer" if i % 4 == 0 else None,
            fail_reason="timeout" if i % 3 == 2 else None, created_at=T0, updated_at=T0))
        conn.execute(insert(item_sources).values(item_id=iid, source=["medqa", "cmexam"][i % 2], file="f",
                                                 record=str(i), imported_at=T0))
        for v in (1, 2) if i % 2 else (1,):
            conn.execute(insert(rationales).values(
                id=f"{iid}v{v}", item_id=iid, version=v, origin="generated" if v == 1 else "edited",
                author="model:m" if v == 1 else "user:x", steps=[], final_answer=["A"], text="t",
                model=[None, "model-a", "model-b"][i % 3] if v == 1 else None, params={}, parse_status="ok",
                prompt_tokens=10 * v, completion_tokens=5, cost=0.25, created_at=T0))
            conn.execute(insert(reviews).values(id=f"{iid}v{v}r", rationale_id=f"{iid}v{v}", item_id=iid,
                                                reviewer_id=reviewer_id, verdict="accept", scores={}, comments={},
                                                rubric_version=1, created_at=T0))


def test_status_counts_alone_and_beside_another_project_agree(engine, project):
    with engine.begin() as conn:
        uid = conn.execute(insert(users).values(username="r", role="reviewer", specialties=[], password_hash="x",
                                                active=True, created_at=T0)).inserted_primary_key[0]
        _fill(conn, project["id"], "a", 12, reviewer_id=uid)
    with engine.connect() as conn:
        alone = status_counts(conn, project_id=project["id"])
    assert alone["items"] == 12 and alone["rationales"] == 18 and alone["reviews"] == 18
    assert alone["by_source"] == {"cmexam": 6, "medqa": 6}
    assert alone["by_model"] == {"model-a": 4, "model-b": 4, "unknown": 4}  # drafted versions only
    assert alone["flagged"] == 3 and alone["failures"] == {"timeout": 4}
    assert alone["tokens"] == {"prompt": 240, "completion": 90} and alone["cost_usd"] == 4.5
    assert alone["by_state"]["in_review"] == 4 and alone["progress"] == round(4 / 12, 4)

    pc = ProjectConfig()
    with engine.begin() as conn:
        other, _ = store_projects.ensure_project(conn, name="other", config=pc.model_dump(mode="json", exclude={"rubric"}),
                                                 rubric=pc.rubric)
        _fill(conn, other["id"], "b", 7, reviewer_id=uid)
    with engine.connect() as conn:
        beside = status_counts(conn, project_id=project["id"])
        theirs = status_counts(conn, project_id=other["id"])
    assert beside == alone
    assert theirs["items"] == 7 and theirs["rationales"] == 10 and theirs["reviews"] == 10
