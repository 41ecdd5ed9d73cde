"""Drafting and guided regeneration through the generic runner, on SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import func, select, update

from clinreason.llm.base import LLMError
from clinreason.llm.fake_backend import FakeBackend
from clinreason.prompts import template_hash
from clinreason.stages.runner import DRAFT, REGENERATE, run_llm_stage
from clinreason.store import common as store_common
from clinreason.store import decisions as store_decisions
from clinreason.store import items as store_items
from clinreason.store import projects as store_projects
from clinreason.store import readmodels as store_readmodels
from clinreason.store.tables import items, rationales


async def _draft(engine, project, pc, backend, **kw):
    return await run_llm_stage(engine, project=project, pc=pc, backend=backend, kind=DRAFT, **kw)


async def test_drafts_store_full_provenance_and_move_to_screening(engine, imported, pc):
    backend = FakeBackend()
    report = await _draft(engine, imported, pc, backend, limit=5, concurrency=3)
    assert (report.claimed, report.stored, report.requests) == (5, 5, 5)
    with engine.connect() as conn:
        rows = conn.execute(select(rationales)).mappings().all()
        states = conn.execute(select(items.c.state, func.count()).group_by(items.c.state)).all()
    assert dict(states) == {"screening": 5, "imported": 20}
    for r in rows:
        assert r["version"] == 1 and r["origin"] == "generated" and r["author"] == "model:fake-model"
        assert r["model"] == "fake-model" and r["raw_output"].endswith(r["final_answer"][0])
        assert r["prompt_hash"] in {template_hash("draft", "en"), template_hash("draft", "zh")}
        assert r["params"]["seed"] == 0 and r["seed"] == 0 and r["params"]["temperature"] == 0.2
        assert r["prompt_tokens"] > 0 and r["completion_tokens"] > 0
        assert r["idempotency_key"] == f"{r['item_id']}:v1" and r["parse_status"] == "ok"
        assert r["fingerprint"] is not None
    # every state change has its event
    with engine.connect() as conn:
        evs = store_decisions.item_events(conn, item_id=rows[0]["item_id"])
    assert [e.after["state"] for e in evs if e.kind == "item.transition"] == ["generating", "screening"]


async def test_explain_prompt_carries_the_gold_answer_and_solve_does_not(engine, imported, pc):
    backend = FakeBackend()
    await _draft(engine, imported, pc, backend, limit=1)
    assert "Gold answer:" in backend.calls[0].messages[-1]["content"]
    pc.generate.mode = "solve"
    await _draft(engine, imported, pc, backend, limit=1)
    assert "Gold answer" not in backend.calls[1].messages[-1]["content"]


async def test_chinese_items_get_the_chinese_prompt_and_reference_grounding(engine, imported, pc):
    pc.generate.use_reference_explanation = True
    backend = FakeBackend()
    await _draft(engine, imported, pc, backend)
    zh = [c for c in backend.calls if "题目" in c.messages[-1]["content"]]
    assert len(zh) == 4
    assert any("参考解析" in c.messages[-1]["content"] for c in zh)
    en_with_ref = [c for c in backend.calls if "Reference explanation" in c.messages[-1]["content"]]
    assert en_with_ref  # MedMCQA and PubMedQA items carry one


async def test_parse_failure_is_a_status_with_the_raw_output_kept(engine, imported, pc):
    backend = FakeBackend(responses=["I think it is probably something."])
    await _draft(engine, imported, pc, backend, limit=1)
    with engine.connect() as conn:
        r = conn.execute(select(rationales)).mappings().one()
    assert r["parse_status"] == "failed" and "no final answer" in r["parse_error"]
    assert r["raw_output"] == "I think it is probably something."


async def test_backend_failure_marks_the_item_failed_with_the_reason(engine, imported, pc):
    backend = FakeBackend(responses=[LLMError("upstream exploded (500)", retryable=True, status=500)])
    report = await _draft(engine, imported, pc, backend, limit=1)
    assert report.failed == 1
    with engine.connect() as conn:
        row = conn.execute(select(items).where(items.c.state == "failed")).mappings().one()
        counts = store_readmodels.status_counts(conn, project_id=imported["id"])
    assert "upstream exploded" in row["fail_reason"] and row["claimed_by"] is None
    assert counts["by_state"]["failed"] == 1 and any("upstream exploded" in k for k in counts["failures"])


async def test_identical_requests_are_served_from_the_cache(engine, imported, pc):
    """A second project holding the same questions reuses the first project's answers: no new requests."""
    from clinreason.demo import samples_dir
    from clinreason.stages.ingest import import_path

    await _draft(engine, imported, pc, FakeBackend())
    with engine.begin() as conn:
        other, _ = store_projects.ensure_project(conn, name="copy", config={}, rubric=pc.rubric)
    import_path(engine, project="copy", path=samples_dir(), fmt="auto")
    second = FakeBackend()
    report = await _draft(engine, other, pc, second)
    assert report.stored == 25 and report.cached == 25 and report.requests == 0 and second.calls == []
    with engine.connect() as conn:
        cached = conn.execute(select(rationales).join(items).where(items.c.project_id == other["id"])).mappings().all()
    assert all(r["params"]["cached"] and r["cost"] == 0 for r in cached)


async def test_a_dead_workers_claims_are_taken_over(engine, imported, pc):
    """Items a crashed worker left in `generating` are drafted by the next run, once each."""
    await _draft(engine, imported, pc, FakeBackend(), limit=3)
    with engine.begin() as conn:  # simulate a worker that died holding 4 items (pid that cannot exist)
        ids = conn.execute(select(items.c.id).where(items.c.state == "imported").limit(4)).scalars().all()
        for item_id in ids:
            store_items.transition_item(conn, item_id=item_id, expected="imported", target="generating", actor="w")
        import socket
        conn.execute(update(items).where(items.c.id.in_(ids))
                     .values(claimed_by=f"{socket.gethostname()}:999999999", claimed_until=store_common.now().replace(year=2999)))
    report = await _draft(engine, imported, pc, FakeBackend())
    assert report.stored == 22
    with engine.connect() as conn:
        per_item = conn.execute(select(rationales.c.item_id, func.count()).group_by(rationales.c.item_id)).all()
    assert len(per_item) == 25 and all(n == 1 for _, n in per_item)


async def test_regeneration_prompt_carries_failed_checks_and_reviews(engine, imported, pc):
    from clinreason.stages.screen import run_screening

    await _draft(engine, imported, pc, FakeBackend(responses=["1. It is obvious.\nFinal answer: A"] * 25), limit=1)
    await run_screening(engine, project=imported, pc=pc)
    with engine.connect() as conn:
        row = conn.execute(select(items).where(items.c.state == "regenerating")).mappings().one()
    assert row["auto_retries"] == 1
    backend = FakeBackend()
    report = await run_llm_stage(engine, project=imported, pc=pc, backend=backend, kind=REGENERATE)
    assert report.stored == 1
    prompt = backend.calls[0].messages[-1]["content"]
    assert "Previous version (version 1)" in prompt and "It is obvious." in prompt
    assert "Automatic checks that failed" in prompt and "length" in prompt
    with engine.connect() as conn:
        v2 = conn.execute(select(rationales).where(rationales.c.version == 2)).mappings().one()
    assert v2["origin"] == "regenerated" and v2["parent_version"] == 1 and v2["params"]["seed"] == 1
