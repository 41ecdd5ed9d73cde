"""The near-duplicate look-up through the fingerprint block indexes (migration 0016, issue #16): for any
fingerprint it finds what the full in-memory index over every item's latest fingerprint finds, on SQLite and
PostgreSQL, and the database answers it from the four block indexes, not a scan of every version."""

from __future__ import annotations

import hashlib
import random
from datetime import datetime, timezone

from sqlalchemy import insert, text

from clinreason.domain.checks import FingerprintIndex
from clinreason.store import rationales as rationale_store
from clinreason.store.db import is_sqlite
from clinreason.store.projects import ensure_project
from clinreason.store.tables import items, rationales

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _flip(fp: int, bits: list[int]) -> int:
    u = fp & ((1 << 64) - 1)
    for b in bits:
        u ^= 1 << b
    return u - (1 << 64) if u >= 1 << 63 else u


def _build(engine, project, rng: random.Random) -> list[int]:
    """Two projects' items, each with 1-3 versions; fingerprints drawn from a few families of near values
    (so that neighbours exist), some versions without one; an item's older version may be near a query
    while its latest is not (only the latest counts)."""
    with engine.begin() as conn:
        other, _ = ensure_project(conn, name="other", config={}, rubric={"dimensions": []})
        seeds = [rng.randrange(-(1 << 63), 1 << 63) for _ in range(12)]
        for n in range(300):
            pid = project["id"] if n % 5 else other["id"]
            item_id = f"i{n:04d}"
            conn.execute(insert(items).values(
                id=item_id, project_id=pid, content_hash=hashlib.sha256(item_id.encode()).hexdigest(),
                question="Q?", options=[["A", "a"], ["B", "b"]], answer_labels=["A"], language="en", meta={},
                state="in_review", strikes=0, auto_retries=0, created_at=T0, updated_at=T0))
            for version in range(1, rng.randint(1, 3) + 1):
                fp = None if rng.random() < 0.1 else \
                    _flip(rng.choice(seeds), rng.sample(range(64), rng.choice([0, 1, 2, 3, 5, 9, 20])))
                conn.execute(insert(rationales).values(
                    id=f"{item_id}-v{version}", item_id=item_id, version=version, origin="generated",
                    author="model:m", steps=["s"], final_answer=["A"], text="Step 1: s\nFinal answer: A",
                    params={}, seed=0, parse_status="ok", fingerprint=fp, created_at=T0))
    return seeds


def test_block_lookup_finds_what_the_full_index_finds(engine, project):
    rng = random.Random(16)
    seeds = _build(engine, project, rng)
    with engine.connect() as conn:
        full = FingerprintIndex()
        for item_id, fp in rationale_store.latest_fingerprints(conn, project_id=project["id"]).items():
            full.add(item_id, fp)
        stored = rationale_store.StoredNeighbours(conn, project["id"])
        queries = [_flip(rng.choice(seeds), rng.sample(range(64), rng.randint(0, 6))) for _ in range(150)]
        queries += [rng.randrange(-(1 << 63), 1 << 63) for _ in range(20)] + list(full.by_item.values())[:30]
        found = 0
        for q in queries:
            exclude = rng.choice([None, *list(full.by_item)[:20]])
            for max_distance in (0, 1, 3):
                want = full.nearest(q, exclude=exclude, max_distance=max_distance)
                got = stored.nearest(q, exclude=exclude, max_distance=max_distance)
                if want[1] <= max_distance:
                    found += 1
                    assert got == want, (q, exclude, max_distance)
                else:
                    assert got[1] > max_distance, (q, exclude, max_distance, got)
            # wider than 3 bits: every latest fingerprint is read, the same answer as the full index
            assert stored.nearest(q, exclude=exclude, max_distance=6) == full.nearest(q, exclude=exclude,
                                                                                     max_distance=6)
    assert found > 100  # the families make real neighbours: the comparison is not over empty answers


def test_the_lookup_reads_the_block_indexes(engine, project):
    _build(engine, project, random.Random(3))
    sql = rationale_store.near_fingerprints_statement(project_id=project["id"], fingerprint=-12345)
    with engine.connect() as conn:
        compiled = sql.compile(conn, compile_kwargs={"literal_binds": True})
        if is_sqlite(engine):
            plan = " | ".join(str(r[-1]) for r in conn.execute(text(f"EXPLAIN QUERY PLAN {compiled}")))
        else:
            conn.execute(text("SET enable_seqscan = off"))  # a 300-row table: the planner would scan it anyway
            plan = " | ".join(r[0] for r in conn.execute(text(f"EXPLAIN {compiled}")))
    for i in range(4):
        assert f"ix_rationales_fingerprint_block_{i}" in plan, plan
