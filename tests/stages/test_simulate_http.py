"""The allocation and consensus policy the simulator measures is the one `serve` runs: the same scripted
reviews (same seed, same simulated reviewers), sent once through the review stage in process and once
through the HTTP API, end in the same decisions, item by item."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from clinreason.config import ProjectConfig, Settings
from clinreason.stages.review import Lease, Reviewer
from clinreason.stages.simulate import run_simulation
from clinreason.store import db as dbm
from clinreason.store.tables import decisions, events, items, rationales
from clinreason.web import auth, create_app
from clinreason.web.auth import AuthConfig


class HttpReviews:
    """Simulated reviewers who use the JSON API, each with a bearer token, as a browser-less client would."""

    def __init__(self, engine, project_id, rubric_body, overlap):
        settings = Settings(db_url=str(engine.url), project="simulation", config_path=Path("/nonexistent.toml"),
                            project_config=ProjectConfig())
        self.client = TestClient(create_app(settings, engine=engine, auth_config=AuthConfig(secret_key="s" * 32)))
        self.engine, self.project_id, self.tokens = engine, project_id, {}

    def _auth(self, reviewer: Reviewer) -> dict[str, str]:
        if reviewer.id not in self.tokens:
            with self.engine.begin() as conn:
                self.tokens[reviewer.id] = auth.create_token(conn, user_id=reviewer.id, project_id=self.project_id,
                                                             kind="personal", name="sim")
        return {"Authorization": f"Bearer {self.tokens[reviewer.id]}"}

    def take(self, reviewer: Reviewer) -> Lease | None:
        r = self.client.get("/api/queue/next", headers=self._auth(reviewer))
        assert r.status_code in (200, 204), r.text
        if r.status_code == 204:
            return None
        got = r.json()
        return Lease(got["assignment_id"], got["rationale"]["id"], got["item"]["id"], got["rationale"]["version"],
                     datetime.fromisoformat(got["expires_at"]), resumed=False)

    def submit(self, reviewer: Reviewer, lease: Lease, body: dict) -> None:
        r = self.client.post(f"/api/assignments/{lease.assignment_id}/review", json=body, headers=self._auth(reviewer))
        assert r.status_code == 201, r.text


def _decisions(folder: Path, policy: str, seed: int) -> dict:
    engine = dbm.make_engine(str(folder / f"sim-{policy}-{seed}.db"))
    try:
        with engine.connect() as conn:
            version = dict(conn.execute(select(rationales.c.id, rationales.c.version)).all())
            out = {item: (state, kind, version.get(rid)) for item, state, kind, rid in conn.execute(
                select(items.c.id, items.c.state, decisions.c.kind, decisions.c.rationale_id)
                .join(decisions, decisions.c.item_id == items.c.id, isouter=True))}
            asked = sorted((e.item_id, e.detail["reason"]) for e in conn.execute(
                select(events.c.item_id, events.c.detail).where(events.c.kind == "consensus.extra_reviewer")))
        return {"items": out, "extra_reviewers": asked}
    finally:
        engine.dispose()


@pytest.mark.parametrize("policy", ["adaptive", "fixed-2"])
def test_simulator_and_http_api_reach_the_same_decisions(policy, tmp_path):
    n, seed = 60, 4
    direct = run_simulation(policy=policy, n_items=n, seed=seed, workdir=tmp_path / "direct").to_dict()
    http = run_simulation(policy=policy, n_items=n, seed=seed, workdir=tmp_path / "http", channel=HttpReviews).to_dict()
    a, b = _decisions(tmp_path / "direct", policy, seed), _decisions(tmp_path / "http", policy, seed)
    assert a["items"] == b["items"]
    assert a["extra_reviewers"] == b["extra_reviewers"]
    if policy == "adaptive":
        assert a["extra_reviewers"], "the adaptive policy asked for no extra reviewer: nothing was compared"
    assert direct["accepted"] + direct["excluded"] == n
    for key in ("reviews", "accepted", "excluded", "adjudications", "residual_defect_rate", "versions"):
        assert direct[key] == http[key], key
