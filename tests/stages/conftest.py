from __future__ import annotations

import pytest
from sqlalchemy import insert, select

from clinreason.config import ProjectConfig
from clinreason.demo import samples_dir
from clinreason.llm.fake_backend import FakeBackend
from clinreason.stages.ingest import import_path
from clinreason.stages.runner import DRAFT, run_llm_stage
from clinreason.stages.screen import run_screening
from clinreason.store import common as store_common
from clinreason.store.tables import items, users


@pytest.fixture
def pc() -> ProjectConfig:
    return ProjectConfig()


@pytest.fixture
def imported(engine, project):
    """The bundled samples, imported: 25 items in 'imported'."""
    import_path(engine, project="default", path=samples_dir(), fmt="auto")
    return project


ANSWER = ("1. The presentation and the key findings point to one diagnosis.\n"
          "2. Option A, B, C, D and E are weighed; only one fits every finding.\nFinal answer: {gold}")


def gold_answer_handler(messages, params):
    from clinreason.llm.fake_backend import gold_answer_in

    return ANSWER.format(gold=gold_answer_in(messages) or "A")


@pytest.fixture
def in_review(engine, imported, pc):
    """Three English items drafted, screened and waiting for reviewers; two reviewers, one adjudicator."""
    import asyncio

    async def go():
        await run_llm_stage(engine, project=imported, pc=pc, backend=FakeBackend(handler=gold_answer_handler), kind=DRAFT,
                            limit=3)
        await run_screening(engine, project=imported, pc=pc)

    asyncio.run(go())
    with engine.begin() as conn:
        for name, role in (("ana", "reviewer"), ("ben", "reviewer"), ("cy", "reviewer"), ("dr_adj", "adjudicator"),
                           ("dr_two", "adjudicator")):
            conn.execute(insert(users).values(username=name, role=role, specialties=[], password_hash="x", active=True,
                                              created_at=store_common.now()))
        ids = conn.execute(select(items.c.id).where(items.c.state == "in_review").order_by(items.c.id)).scalars().all()
    assert len(ids) == 3
    return ids
