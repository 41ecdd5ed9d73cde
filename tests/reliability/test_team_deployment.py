"""The team deployment of the README, end to end on PostgreSQL: two `clinreason run` workers and
`clinreason serve --workers 3` (three web processes), every item flowing import -> drafted -> screened ->
reviewed over HTTP by several reviewers -> accepted, none lost, none drafted or reviewed twice.

Half the reviewers use bearer tokens, half sign in through the login form and send the session cookie
with its CSRF token; every request opens a new connection, so the three processes share the work and a
session made by one process is honoured by the others (sessions, CSRF tokens and login limits live in
the database). Short: 60 items x 4 reviewers; `make soak`: 600 x 8."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from reliability.scenario import process_env, reader, record_figures, sized
from sqlalchemy import func, select

from clinreason.store.tables import assignments, checks, decisions, events, items, rationales, reviews
from clinreason.testing.helpers import (
    cli,
    fake_server_process,
    read_request_log,
    serving,
    write_synthetic_bank,
)

pytestmark = pytest.mark.soak

PASSWORD = "a long enough team password"
SCORES = {"correctness": 5, "reasoning": 4, "sufficiency": 5, "terminology": 4, "clinical_value": 5}
WEB_PROCESSES = 3


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


class Reviewer(threading.Thread):
    """Takes the next item and accepts it, until the main thread says every item is decided."""

    def __init__(self, name: str, url: str, *, browser: bool, done: threading.Event):
        super().__init__(name=name, daemon=True)
        self.username, self.url, self.browser, self.done = name, url, browser, done
        self.reviewed = 0
        self.error: str | None = None

    def _client(self) -> httpx.Client:
        # a new connection per request: uvicorn's processes each accept their share
        return httpx.Client(base_url=self.url, timeout=30, headers={"Connection": "close"})

    def _sign_in(self, http: httpx.Client) -> dict[str, str]:
        if not self.browser:
            r = http.post("/api/login", json={"username": self.username, "password": PASSWORD})
            assert r.status_code == 200, r.text
            return {"Authorization": f"Bearer {r.json()['token']}"}
        page = http.get("/login")
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        r = http.post("/login", data={"username": self.username, "password": PASSWORD, "csrf_token": csrf, "next": ""})
        assert r.status_code == 303, r.text
        review_page = http.get("/review")  # the session's CSRF token, as the browser gets it
        assert review_page.status_code == 200, review_page.text
        return {"X-CSRF-Token": re.search(r'name="csrf_token" value="([^"]+)"', review_page.text).group(1)}

    def run(self) -> None:
        try:
            with self._client() as http:
                headers = self._sign_in(http)
                while not self.done.is_set():
                    nxt = http.get("/api/queue/next", headers=headers)
                    if nxt.status_code == 204:
                        self.done.wait(0.2)  # the workers are still drafting: ask again
                        continue
                    assert nxt.status_code == 200, nxt.text
                    body = {"verdict": "accept", "scores": SCORES, "comments": {"general": f"ok ({self.username})"}}
                    r = http.post(f"/api/assignments/{nxt.json()['assignment_id']}/review", json=body,
                                  headers=headers)
                    assert r.status_code == 201, r.text
                    self.reviewed += 1
        except Exception as exc:  # noqa: BLE001 - reported by the test
            self.error = f"{self.username}: {exc!r}"


def test_two_workers_and_a_multi_process_web_server_take_every_item_to_accepted(own_pg_url, tmp_path):
    n, n_reviewers = sized(60, 600), sized(4, 8)
    env = process_env(own_pg_url)
    assert cli(["init"], env, tmp_path).returncode == 0
    write_synthetic_bank(tmp_path / "bank.jsonl", n, seed=31)
    assert cli(["import", "bank.jsonl"], env, tmp_path).returncode == 0
    names = [f"expert{i}" for i in range(n_reviewers)]
    adds = [subprocess.Popen([sys.executable, "-m", "clinreason.cli", "users", "add", name, "--role", "reviewer",
                              "--password-stdin"], env=env, cwd=tmp_path, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for name in names]
    assert all(p.communicate(PASSWORD + "\n", timeout=120)[0].startswith("added") for p in adds)

    engine = reader(own_pg_url)
    log = tmp_path / "requests.jsonl"
    done = threading.Event()
    started = time.monotonic()
    with fake_server_process(log=log, latency=0.02) as base_url:
        wenv = process_env(own_pg_url, base_url)
        workers = [subprocess.Popen([sys.executable, "-m", "clinreason.cli", "run", "--concurrency", "8", "--poll",
                                     "0.2"], env=wenv, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True) for _ in range(2)]
        reviewers: list[Reviewer] = []
        with serving(env, tmp_path, extra=["--workers", str(WEB_PROCESSES)], log=tmp_path / "serve.log") as (base,
                                                                                                           server):
            try:
                assert len(_children(server.pid)) >= WEB_PROCESSES, "serve --workers 3 runs three web processes"
                reviewers = [Reviewer(name, base, browser=i % 2 == 1, done=done) for i, name in enumerate(names)]
                for r in reviewers:
                    r.start()
                deadline = time.monotonic() + sized(240, 1800)
                while time.monotonic() < deadline and all(r.is_alive() for r in reviewers):
                    with engine.connect() as conn:
                        accepted = conn.execute(select(func.count()).where(items.c.state == "accepted")).scalar_one()
                    if accepted == n:
                        break
                    time.sleep(0.2)
            finally:
                done.set()
                for r in reviewers:
                    r.join(timeout=60)
                for w in workers:
                    w.send_signal(signal.SIGTERM)  # graceful: what is in flight finishes and is stored
                outs = [w.communicate(timeout=120) for w in workers]
    elapsed = time.monotonic() - started
    assert [r.error for r in reviewers if r.error] == []
    assert all(w.returncode == 0 for w in workers), [o[1][-2000:] for o in outs]
    drafted = [int(o[0].split("drafted ")[1].split(",")[0]) for o in outs]

    with engine.connect() as conn:
        states = Counter(conn.execute(select(items.c.state)).scalars())
        versions = conn.execute(select(rationales.c.item_id, rationales.c.version)).all()
        per_version = Counter(conn.execute(select(reviews.c.rationale_id)).scalars())
        pairs = Counter(conn.execute(select(reviews.c.rationale_id, reviews.c.reviewer_id)).all())
        leases = Counter(conn.execute(select(assignments.c.rationale_id, assignments.c.reviewer_id)).all())
        n_decisions = conn.execute(select(func.count()).select_from(decisions)
                                   .where(decisions.c.kind == "consensus")).scalar_one()
        screened_twice = conn.execute(select(func.count()).select_from(
            select(checks.c.rationale_id).group_by(checks.c.rationale_id, checks.c.name)
            .having(func.count() > 1).subquery())).scalar_one()
        submitted_events = conn.execute(select(func.count()).where(events.c.kind == "review.submitted")).scalar_one()
    engine.dispose()

    assert states == {"accepted": n}, states
    assert len(versions) == n == len({v.item_id for v in versions})  # one draft each, none regenerated
    assert n_decisions == n and screened_twice == 0
    assert set(per_version.values()) == {2} and len(per_version) == n  # overlap 2: two reviews per version
    assert max(pairs.values()) == 1 and max(leases.values()) == 1  # no reviewer saw a version twice
    assert submitted_events == sum(per_version.values()) == sum(r.reviewed for r in reviewers)
    assert all(r.reviewed > 0 for r in reviewers), [(r.username, r.reviewed) for r in reviewers]
    per_key = Counter(rec["idempotency_key"] for rec in read_request_log(log))
    assert len(per_key) == n and set(per_key.values()) == {1}  # every draft paid for once
    assert sum(drafted) == n, drafted
    record_figures("team-deployment-postgresql", {
        "command": f"2 x clinreason run + clinreason serve --workers {WEB_PROCESSES} (PostgreSQL)",
        "backend": "postgresql", "runs": 1, "faults": 0, "items": n, "reviewers": n_reviewers,
        "browser_session_reviewers": sum(r.browser for r in reviewers), "drafted_per_worker": drafted,
        "reviews": sum(per_version.values()), "reviews_per_reviewer": {r.username: r.reviewed for r in reviewers},
        "seconds": round(elapsed, 1), "lost": 0, "duplicates": 0,
    })
