"""`clinreason serve` (uvicorn, a real process) killed with SIGKILL while reviewers submit: every review is
stored completely (review row, its scores, the assignment closed, its event, the consensus decision and
the item's move to `accepted`) or not at all, an acknowledged review is never lost, and the autosaved
draft of a review that was not stored is still there after the restart, for its reviewer to send again.

Each round: the server starts, every reviewer (a bearer token from the first round, so tokens outlive
restarts) takes the next item, autosaves a draft, and all submit at once; the server is killed after a
random number of answers came back, while the others are in flight. Overlap is 1, so one accepting
review decides the item in the same transaction. Short: 3 rounds x 8 reviewers; `make soak`: 20 x 12."""

from __future__ import annotations

import random
import signal
import threading
import time
from collections import Counter

import httpx
import pytest
from reliability.scenario import process_env, reader, record_figures, sized
from sqlalchemy import select
from web import factories

from clinreason.store import db as store_db
from clinreason.store.tables import assignments, decisions, events, items, review_drafts, reviews
from clinreason.testing.helpers import cli, free_port, serve_process, wait_until_serving

pytestmark = pytest.mark.soak

SCORES = {"correctness": 5, "reasoning": 5, "sufficiency": 4, "terminology": 5, "clinical_value": 4}


class Server:
    def __init__(self, env, cwd, log):
        self.env, self.cwd, self.log = env, cwd, log
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = None

    def start(self) -> None:
        self.proc = serve_process(self.env, self.cwd, port=self.port, extra=["--no-worker"], log=self.log)
        wait_until_serving(f"{self.url}/openapi.json", self.proc)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)


def _seed(url: str, *, reviewers: int, items_needed: int) -> list[dict]:
    engine = store_db.make_engine(url)
    try:
        with engine.begin() as conn:
            from clinreason.store import projects as store_projects

            project = store_projects.require_project(conn, name="default")
            users = [factories.make_user(conn, username=f"rev{i:02d}") for i in range(reviewers)]
            for _ in range(items_needed):
                factories.make_item(conn, project_id=project["id"])
    finally:
        engine.dispose()
    return users


def _state(engine, assignment_id: str) -> dict:
    """Everything a submission writes, as the database has it now."""
    with engine.connect() as conn:
        a = conn.execute(select(assignments).where(assignments.c.id == assignment_id)).mappings().one()
        review = conn.execute(select(reviews).where(reviews.c.assignment_id == assignment_id)).mappings().all()
        draft = conn.execute(select(review_drafts.c.body).where(review_drafts.c.rationale_id == a["rationale_id"],
                                                                review_drafts.c.reviewer_id == a["reviewer_id"])).all()
        item_state = conn.execute(select(items.c.state).where(items.c.id == a["item_id"])).scalar_one()
        decision = conn.execute(select(decisions.c.kind).where(decisions.c.item_id == a["item_id"])).all()
        submitted = [e for e in conn.execute(select(events.c.detail).where(
            events.c.item_id == a["item_id"], events.c.kind == "review.submitted")).scalars()]
    return {"status": a["status"], "reviews": [dict(r) for r in review], "drafts": [d.body for d in draft],
            "item_state": item_state, "decisions": [d.kind for d in decision], "events": submitted}


def _assert_all_or_nothing(st: dict, body: dict) -> bool:
    """True when the review is stored (completely), False when nothing of it is; fails on anything between."""
    if st["reviews"]:
        (review,) = st["reviews"]
        assert review["scores"] == SCORES and review["verdict"] == "accept"
        assert review["comments"].get("general") == body["comments"]["general"]
        assert st["status"] == "submitted" and st["drafts"] == []
        assert [e["review_id"] for e in st["events"]] == [review["id"]]
        assert st["decisions"] == ["consensus"] and st["item_state"] == "accepted"
        return True
    assert st["status"] == "open" and st["events"] == [] and st["decisions"] == [] and st["item_state"] == "in_review"
    # the draft keeps what was typed; a draft without step marks is stored with an empty list of them
    assert st["drafts"] == [{**body, "steps": body.get("steps", [])}], \
        "the autosaved draft of a review that was not stored must survive"
    return False


def test_server_killed_mid_submission_stores_each_review_completely_or_not_at_all(database, tmp_path):
    backend, url = database
    n_reviewers, rounds = sized(8, 12), sized(3, 20)
    rng = random.Random(sized(5, 9))
    env = process_env(url)
    (tmp_path / "clinreason.toml").write_text("[review]\noverlap = 1\n")
    assert cli(["init"], env, tmp_path).returncode == 0
    users = _seed(url, reviewers=n_reviewers, items_needed=n_reviewers * (rounds + 2))
    engine = reader(url)
    server = Server(env, tmp_path, tmp_path / "serve.log")
    tokens: dict[str, str] = {}
    outcome = Counter()
    pending: dict[str, dict] = {}  # reviewer -> {"assignment_id", "body"} not stored yet
    taken: set[str] = set()  # every assignment handed out
    try:
        server.start()
        for rnd in range(rounds + 1):
            with httpx.Client(base_url=server.url, timeout=30) as http:
                for u in users:
                    name = u["username"]
                    if name not in tokens:
                        r = http.post("/api/login", json={"username": name, "password": u["password"]})
                        assert r.status_code == 200, r.text
                        tokens[name] = r.json()["token"]
                    auth = {"Authorization": f"Bearer {tokens[name]}"}
                    if name in pending:  # after the restart: the draft is there, retrievable by its reviewer
                        got = http.get(f"/api/assignments/{pending[name]['assignment_id']}", headers=auth)
                        assert got.status_code == 200, got.text
                        sent = pending[name]["body"]
                        assert got.json()["draft"]["body"] == {**sent, "steps": sent.get("steps", [])}
                    nxt = http.get("/api/queue/next", headers=auth)
                    assert nxt.status_code == 200, nxt.text
                    assignment_id = nxt.json()["assignment_id"]
                    if name in pending:
                        assert assignment_id == pending[name]["assignment_id"], "the lease outlives the restart"
                    body = {"verdict": "accept", "scores": SCORES, "comments": {"general": f"{name} round {rnd}"},
                            "edited_text": None}
                    saved = http.put(f"/api/assignments/{assignment_id}/draft", headers=auth,
                                     json={**body, "seconds_spent": 30.0 + rnd})
                    assert saved.status_code == 204, saved.text
                    pending[name] = {"assignment_id": assignment_id, "body": body}
                    taken.add(assignment_id)
            last = rnd == rounds  # a last round without a kill: every review left goes in
            acked = _submit_all(server, tokens, pending, kill_after=None if last else rng.randint(1, n_reviewers // 4),
                                rng=rng)
            if not last:
                server.kill()
                server.start()  # a restart runs recovery (SQLite's journal, PostgreSQL's WAL) before we look
            for name, entry in list(pending.items()):
                stored = _assert_all_or_nothing(_state(engine, entry["assignment_id"]), entry["body"])
                if name in acked:
                    assert stored, f"{name}'s review was acknowledged (201) and then lost"
                    outcome["acknowledged"] += 1
                elif stored:
                    outcome["stored_unacknowledged"] += 1  # committed; the answer died with the server
                else:
                    outcome["not_stored_draft_kept"] += 1
                if stored:
                    del pending[name]
        assert not pending
    finally:
        server.stop()
    with engine.connect() as conn:
        n_reviews = len(conn.execute(select(reviews.c.id)).all())
        per_assignment = Counter(conn.execute(select(reviews.c.assignment_id)).scalars())
        n_events = len(conn.execute(select(events.c.id).where(events.c.kind == "review.submitted")).all())
        n_accepted = len(conn.execute(select(items.c.id).where(items.c.state == "accepted")).all())
        n_drafts = len(conn.execute(select(review_drafts.c.rationale_id)).all())
    engine.dispose()
    duplicates = sum(c - 1 for c in per_assignment.values())
    assert duplicates == 0 and n_reviews == n_events == n_accepted == len(taken) and n_drafts == 0
    assert outcome["not_stored_draft_kept"] > 0, "no kill landed while a submission was in flight"
    record_figures(f"server-kill-{backend}", {
        "command": "clinreason serve --no-worker (killed with SIGKILL mid-submission, restarted)", "backend": backend,
        "runs": rounds + 1, "kills": rounds, "reviewers": n_reviewers, "items": n_reviewers * (rounds + 2),
        "submissions": sum(outcome.values()), "reviews": n_reviews, **outcome, "lost": 0, "duplicates": duplicates,
    })


def _submit_all(server: Server, tokens: dict[str, str], pending: dict[str, dict], *, kill_after: int | None,
                rng: random.Random) -> set[str]:
    """Every pending reviewer submits at once; with `kill_after`, the server is SIGKILLed right after that
    many answers came back. Returns the reviewers whose review was acknowledged with 201."""
    acked: set[str] = set()
    errors: list[str] = []
    answered = threading.Semaphore(0)
    barrier = threading.Barrier(len(pending))
    lock = threading.Lock()

    def submit(name: str, entry: dict) -> None:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            barrier.wait()
            try:
                r = http.post(f"/api/assignments/{entry['assignment_id']}/review", json=entry["body"],
                              headers={"Authorization": f"Bearer {tokens[name]}"})
                with lock:
                    if r.status_code == 201:
                        acked.add(name)
                    else:
                        errors.append(f"{name}: {r.status_code} {r.text}")
            except httpx.TransportError:
                pass  # the server died under this request
            finally:
                answered.release()

    threads = [threading.Thread(target=submit, args=item) for item in pending.items()]
    for t in threads:
        t.start()
    if kill_after is not None:
        for _ in range(kill_after):
            answered.acquire(timeout=60)
        time.sleep(rng.uniform(0, 0.005))
        server.kill()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    return acked
