"""Blind review holds in exports too: a dataset export (every format, with history, and its card) never
carries a review of an item still under review, nor anybody's unsubmitted autosaved draft."""

from __future__ import annotations

from pathlib import Path

import pytest
from analytics import reviewdata
from sqlalchemy import insert, select

from clinreason.stages.export import ExportOptions, run_export
from clinreason.store.common import now
from clinreason.store.tables import items, rationales, review_drafts, reviews, users

pytestmark = pytest.mark.store
PENDING, DRAFT = "PENDING-REVIEW-MARKER-7f3", "AUTOSAVED-DRAFT-MARKER-9c1"


def _plant(engine, built) -> None:
    with engine.begin() as conn:
        fresh = conn.execute(insert(users).values(username="zoe", role="reviewer", specialties=[], password_hash="x",
                                                  active=True, created_at=now())).inserted_primary_key[0]
        open_item = conn.execute(select(items.c.id).where(items.c.state == "in_review").limit(1)).scalar_one()
        open_version = conn.execute(select(rationales.c.id).where(rationales.c.item_id == open_item)
                                    .order_by(rationales.c.version.desc()).limit(1)).scalar_one()
        conn.execute(insert(reviews).values(
            id="pending-marker-review", rationale_id=open_version, item_id=open_item,
            reviewer_id=fresh, verdict="regenerate", scores=dict.fromkeys(reviewdata.DIMS, 2),
            comments={"general": PENDING}, seconds_spent=30.0, rubric_version=1, created_at=now()))
        for item_id in built.accepted[:3]:
            version = conn.execute(select(rationales.c.id).where(rationales.c.item_id == item_id)
                                   .order_by(rationales.c.version).limit(1)).scalar_one()
            conn.execute(insert(review_drafts).values(
                rationale_id=version, reviewer_id=built.reviewer_ids["dave"],
                body={"verdict": "regenerate", "comments": {"general": DRAFT}}, seconds_spent=5.0,
                updated_at=now()))


@pytest.mark.parametrize("fmt", ["jsonl", "parquet", "hf", "sft", "dpo", "prm"])
def test_no_pending_review_or_draft_reaches_any_export(engine, project, tmp_path, fmt):
    built = reviewdata.build(engine, project["id"], n_items=40, seed=5)
    _plant(engine, built)
    out = tmp_path / "out"
    run_export(engine, project="default", out=out, opts=ExportOptions(fmt=fmt, with_history=True),
               licenses={"medqa": "MIT", "cmexam": "research use only"})
    written = [p for p in out.rglob("*") if p.is_file()]
    assert written, "the export wrote nothing: nothing was checked"
    for path in written:
        data = Path(path).read_bytes()
        assert PENDING.encode() not in data and DRAFT.encode() not in data, f"{path.name} leaks an unsubmitted review"
