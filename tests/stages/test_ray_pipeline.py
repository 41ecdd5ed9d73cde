"""`generate --engine ray` end to end on a local Ray (one per module, 2 CPUs) against the fake
OpenAI-compatible server over real sockets: every item drafted once, with the native runner's provenance,
cost and cache; an HTTP error row becomes a failed item with its reason.

Skips when Ray is not installed, except under CI=true, where the dev extra installs it and a skip would hide
a broken engine."""

from __future__ import annotations

import importlib.util
import os
from collections import Counter

import pytest
from sqlalchemy import select

from clinreason.config import ProjectConfig
from clinreason.stages.ingest import import_path
from clinreason.stages.ray_engine import plan_from_config, run_ray_stage
from clinreason.store import db
from clinreason.store import projects as store_projects
from clinreason.store.tables import items, rationales
from clinreason.testing.fake_server import FakeOpenAIServer
from clinreason.testing.helpers import write_synthetic_bank


def _require_ray():
    if importlib.util.find_spec("ray") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but ray is not importable: the dev extra installs ray[data] for the Ray engine's tests")
        pytest.skip("ray is not installed (pip install 'clinreason[cluster]'): the Ray engine's tests need it")


@pytest.fixture(scope="module")
def local_ray():
    _require_ray()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def _setup(tmp_path, n: int, *, name: str = "default", engine=None, seed: int = 7):
    engine = engine or db.make_engine(f"sqlite:///{tmp_path / 'c.db'}")
    db.upgrade(engine)
    pc = ProjectConfig()
    with engine.begin() as conn:
        project, _ = store_projects.ensure_project(conn, name=name, config=pc.model_dump(mode="json", exclude={"rubric"}),
                                                   rubric=pc.rubric)
    bank = write_synthetic_bank(tmp_path / f"bank-{name}.jsonl", n, seed=seed)
    import_path(engine, project=name, path=bank, fmt="auto")
    return engine, project, pc


def _configure(pc: ProjectConfig, server: FakeOpenAIServer, **llm) -> None:
    pc.llm.base_url, pc.llm.model = server.base_url, "fake-model"
    for key, value in llm.items():
        setattr(pc.llm, key, value)


def test_two_hundred_items_make_two_hundred_versions_from_two_hundred_requests(local_ray, tmp_path):
    engine, project, pc = _setup(tmp_path, 200)
    with FakeOpenAIServer.running_in_thread() as server, FakeOpenAIServer.running_in_thread() as second:
        _configure(pc, server, concurrency=32, prices={"fake-model": [1.0, 2.0]})
        pc.generate.ray_base_urls = [second.base_url]  # two endpoints: the items are dealt between them
        report = run_ray_stage(engine, project=project, pc=pc, plan=plan_from_config(pc, api_key="sk-test"),
                               kind="draft")
        assert (len(server.requests), len(second.requests)) == (100, 100)
        asked = server.requests + second.requests
        pc.generate.ray_base_urls = []
        # the same questions in another project: identical requests, served from the cache
        engine, other, pc2 = _setup(tmp_path, 200, name="other", engine=engine)
        _configure(pc2, server)
        again = run_ray_stage(engine, project=other, pc=pc2, plan=plan_from_config(pc2, api_key=None), kind="draft")
        assert len(server.requests) + len(second.requests) == 200  # not one more request
    assert (report.claimed, report.stored, report.failed, report.requests) == (200, 200, 0, 200)
    assert (again.stored, again.cached, again.requests) == (200, 200, 0)
    keys = Counter(r["idempotency_key"] for r in asked)
    assert len(asked) == 200 and len(keys) == 200 and all(r["authorized"] for r in asked)
    with engine.connect() as conn:
        rows = conn.execute(select(rationales.c.item_id, rationales.c.version, rationales.c.idempotency_key,
                                   rationales.c.model, rationales.c.prompt_tokens, rationales.c.completion_tokens,
                                   rationales.c.cost, rationales.c.params, rationales.c.parse_status,
                                   rationales.c.prompt_hash)
                            .join(items, items.c.id == rationales.c.item_id)
                            .where(items.c.project_id == project["id"])).all()
        states = Counter(conn.execute(select(items.c.state).where(items.c.project_id == project["id"])).scalars())
    assert len(rows) == 200 and len({r.item_id for r in rows}) == 200
    assert states == {"screening": 200}
    assert {r.idempotency_key for r in rows} == set(keys) == {f"{r.item_id}:v1" for r in rows}
    for r in rows:
        assert r.model == "fake-model" and r.parse_status == "ok" and r.prompt_hash and r.version == 1
        assert r.prompt_tokens > 0 and r.cost == pytest.approx((r.prompt_tokens + 2 * r.completion_tokens) / 1e6)
        assert r.params["request_hash"] and r.params["kind"] == "draft" and r.params["cached"] is False


def test_a_row_answered_400_fails_its_item_with_the_reason_and_the_rest_are_drafted(local_ray, tmp_path):
    engine, project, pc = _setup(tmp_path, 20, seed=5)

    class RejectsCaseSeven(FakeOpenAIServer):
        async def _answer_chat(self, request, record, reader, writer):
            if any("(case 7)?" in (m.get("content") or "") for m in request.get("messages") or []):
                record["status"] = 400
                await self._send(writer, 400, {"error": {"message": "this prompt is too long for the model",
                                                         "type": "invalid_request_error"}})
                return True
            return await super()._answer_chat(request, record, reader, writer)

    with RejectsCaseSeven.running_in_thread() as server:
        _configure(pc, server, concurrency=8)
        report = run_ray_stage(engine, project=project, pc=pc, plan=plan_from_config(pc, api_key=None), kind="draft")
        statuses = Counter(r["status"] for r in server.requests)
    assert statuses == {200: 19, 400: 1}  # a 400 is not asked again
    assert (report.stored, report.failed) == (19, 1) and report.errors == {"http 400": 1}
    with engine.connect() as conn:
        failed = conn.execute(select(items.c.question, items.c.fail_reason).where(items.c.state == "failed")).all()
        drafted = conn.execute(select(items.c.id).where(items.c.state == "screening")).all()
    assert len(failed) == 1 and len(drafted) == 19
    assert "(case 7)" in failed[0].question
    assert "HTTP 400" in failed[0].fail_reason and "too long for the model" in failed[0].fail_reason


ANSWER = ("1. The presentation and the key findings point to one diagnosis.\n"
          "2. Option A, B, C, D and E are weighed; only one fits every finding.\nFinal answer: {label}")


def test_regenerate_on_ray_writes_the_next_version_guided_by_the_failed_check(local_ray, tmp_path):
    import asyncio

    from clinreason.llm.fake_backend import gold_answer_in
    from clinreason.stages.screen import run_screening

    engine, project, pc = _setup(tmp_path, 10, seed=9)
    wrong = {"now": True}

    def responder(request):
        gold = gold_answer_in(request["messages"]) or "A"
        return ANSWER.format(label=next(label for label in "ABCD" if label != gold) if wrong["now"] else gold)

    with FakeOpenAIServer.running_in_thread(responder=responder) as server:
        _configure(pc, server, concurrency=8)
        plan = plan_from_config(pc, api_key=None)
        assert run_ray_stage(engine, project=project, pc=pc, plan=plan, kind="draft").stored == 10
        asyncio.run(run_screening(engine, project=project, pc=pc))  # wrong answers: back for regeneration
        with engine.connect() as conn:
            assert Counter(conn.execute(select(items.c.state)).scalars()) == {"regenerating": 10}
        wrong["now"] = False
        report = run_ray_stage(engine, project=project, pc=pc, plan=plan, kind="regenerate")
        regeneration_requests = server.requests[10:]
    assert (report.stored, report.requests) == (10, 10)
    assert all(r["idempotency_key"].endswith(":v2") for r in regeneration_requests)
    prompt = " ".join(m["content"] for m in regeneration_requests[0]["messages"])
    assert "Automatic checks that failed:" in prompt and "- answer_matches_gold:" in prompt  # guided by the check
    with engine.connect() as conn:
        second = conn.execute(select(rationales.c.origin, rationales.c.parent_version, rationales.c.params)
                              .where(rationales.c.version == 2)).all()
    assert len(second) == 10
    assert all(r.origin == "regenerated" and r.parent_version == 1 and r.params["kind"] == "regenerate" for r in second)
