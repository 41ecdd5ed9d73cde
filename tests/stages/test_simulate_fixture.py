"""The simulator's decisions, item by item, for seed 0 at 300 items, against the ones recorded from the code
before it was made fast (issue #16): a faster simulator must decide exactly what the slower one decided.

`make test` compares fixed-1 and adaptive (the cheapest runs, one of each allocation mode); fixed-2, fixed-3
and blind regeneration are marked `soak` and run with CLINREASON_SOAK=1 (`make soak`), about a minute.

Re-record (only when a change of the simulated world is intended, and say so in the commit):
    PYTHONPATH=src python tests/stages/test_simulate_fixture.py
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from clinreason.stages.simulate import StepModel, database_name, run_simulation
from clinreason.store import db as dbm
from clinreason.store.tables import decisions, items, rationales, reviews, users

FIXTURE = Path(__file__).parent / "data" / "simulate_300_seed0.json"
N_ITEMS, SEED = 300, 0
RUNS = (("fixed-1", "targeted"), ("fixed-2", "targeted"), ("fixed-3", "targeted"), ("adaptive", "targeted"),
        ("fixed-2", "blind"))


def item_outcomes(db_file: Path) -> dict[str, dict[str, Any]]:
    """item id -> its final state, strikes, decision, accepted version, versions and reviews, as stored."""
    engine = dbm.make_engine(str(db_file))
    try:
        with engine.connect() as conn:
            out: dict[str, dict[str, Any]] = {
                item_id: {"state": state, "strikes": strikes, "decision": None, "accepted_version": None,
                          "versions": 0, "reviews": []}
                for item_id, state, strikes in conn.execute(select(items.c.id, items.c.state, items.c.strikes))}
            version_of: dict[str, int] = {}
            for rid, item_id, version in conn.execute(select(rationales.c.id, rationales.c.item_id,
                                                             rationales.c.version)):
                version_of[rid] = version
                out[item_id]["versions"] = max(out[item_id]["versions"], version)
            for item_id, kind, rid in conn.execute(select(decisions.c.item_id, decisions.c.kind,
                                                          decisions.c.rationale_id)):
                out[item_id]["decision"] = kind
                out[item_id]["accepted_version"] = version_of[rid] if rid else None
            rows = conn.execute(select(reviews.c.item_id, reviews.c.rationale_id, users.c.username, reviews.c.verdict)
                                .join(users, users.c.id == reviews.c.reviewer_id))
            for item_id, rid, username, verdict in rows:
                out[item_id]["reviews"].append(f"v{version_of[rid]}:{username}:{verdict}")
    finally:
        engine.dispose()
    for record in out.values():
        record["reviews"].sort()
    return dict(sorted(out.items()))


def run_once(policy: str, regeneration: str, workdir: Path) -> dict[str, Any]:
    result = run_simulation(policy=policy, n_items=N_ITEMS, seed=SEED, workdir=workdir,
                            steps=StepModel(regeneration=regeneration))
    return {"summary": result.to_dict(),
            "items": item_outcomes(workdir / database_name(policy, SEED, regeneration))}


SOAK = os.environ.get("CLINREASON_SOAK") == "1"
_LONG = [pytest.mark.soak, pytest.mark.skipif(not SOAK, reason="a longer run: CLINREASON_SOAK=1 (make soak)")]


@pytest.mark.parametrize(("policy", "regeneration"), [
    pytest.param(p, m, id=f"{p}-{m}", marks=[] if (p, m) in {("fixed-1", "targeted"), ("adaptive", "targeted")} else _LONG)
    for p, m in RUNS])
def test_a_fresh_run_decides_every_item_as_recorded(policy, regeneration, tmp_path):
    recorded = json.loads(FIXTURE.read_text())[f"{policy}/{regeneration}"]
    fresh = run_once(policy, regeneration, tmp_path)
    assert len(fresh["items"]) == N_ITEMS
    differ = [item_id for item_id, record in recorded["items"].items() if fresh["items"].get(item_id) != record]
    assert not differ, (f"{len(differ)} items decided differently, first {differ[0]}: "
                        f"recorded {recorded['items'][differ[0]]}, now {fresh['items'].get(differ[0])}")
    assert fresh["summary"] == recorded["summary"]


if __name__ == "__main__":  # record the fixture from the code as it is
    runs = {}
    for policy, regeneration in RUNS:
        with tempfile.TemporaryDirectory() as tmp:
            runs[f"{policy}/{regeneration}"] = run_once(policy, regeneration, Path(tmp))
            print(policy, regeneration, runs[f"{policy}/{regeneration}"]["summary"]["accepted"], file=sys.stderr)
    FIXTURE.write_text(json.dumps(runs, indent=1, sort_keys=True) + "\n")
