"""PostgreSQL going away under a running system: a `pg_ctl restart` (every session cut, the server back at
once) and a stop of a few seconds (20 s under `make soak`), each in the middle of the work.

- `clinreason run` drafting against the fake OpenAI-compatible server in another process: the worker
  process survives both, pauses while the database is down and carries on by itself; afterwards every
  item is drafted once and screened once, none is lost, and no paid request is sent twice (what arrived
  while the database was down waited in the worker's journal).
- `clinreason serve` (with its in-process worker) while 10 reviewers submit over HTTP (half with bearer tokens, half signed in through
  the login form with the session cookie and its CSRF token, fetching the HTML review page too): every
  answer is a success or a 503 with Retry-After — never a 500 or a traceback in the server's log —, the
  server recovers by itself, and every review is stored exactly once.

Each test runs a PostgreSQL cluster of its own (scripts/pg-test.sh with PGTEST_STATE), so restarting it
cannot disturb the other tests on the suite's shared cluster. They skip without PostgreSQL's server
binaries, and fail under CI=true."""

from __future__ import annotations

import glob
import os
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
from sqlalchemy.exc import OperationalError
from web import factories

from clinreason.store import db as store_db
from clinreason.store.tables import assignments, checks, decisions, events, items, rationales, reviews
from clinreason.testing.helpers import (
    cli,
    fake_server_process,
    read_request_log,
    serving,
    write_synthetic_bank,
)

pytestmark = pytest.mark.soak

REPO = Path(__file__).resolve().parents[2]
PG_TEST = REPO / "scripts" / "pg-test.sh"
#: how long the database stays down in the stop-and-start fault
DOWN_SECONDS = sized(4.0, 20.0)
SCORES = {"correctness": 5, "reasoning": 5, "sufficiency": 4, "terminology": 5, "clinical_value": 4}


class Cluster:
    """A throwaway PostgreSQL cluster of this test's own (scripts/pg-test.sh with its own state folder)."""

    def __init__(self, state: Path):
        self.env = {**os.environ, "PGTEST_STATE": str(state)}
        self.url = self._pg("start").strip()
        self.faults: list[dict] = []

    def _pg(self, verb: str) -> str:
        done = subprocess.run([str(PG_TEST), verb], env=self.env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"pg-test.sh {verb}: {done.stderr}"
        return done.stdout

    def restart(self) -> None:
        started = time.monotonic()
        self._pg("restart")
        self.faults.append({"fault": "pg_ctl restart", "seconds": round(time.monotonic() - started, 2)})

    def stop_for(self, seconds: float) -> None:
        started = time.monotonic()
        self._pg("down")
        time.sleep(seconds)  # the outage itself: its length is what the scenario is about
        self._pg("up")
        self.faults.append({"fault": f"pg_ctl stop, start {seconds:g} s later",
                            "seconds": round(time.monotonic() - started, 2)})

    def remove(self) -> None:
        subprocess.run([str(PG_TEST), "stop"], env=self.env, capture_output=True, timeout=120)


@pytest.fixture
def cluster(tmp_path):
    if not glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"):
        message = "PostgreSQL server binaries not found (apt-get install -y postgresql): cannot restart a cluster"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true: {message}")
        pytest.skip(message)
    c = Cluster(tmp_path / "pgstate")
    try:
        yield c
    finally:
        c.remove()


def _count(engine, query) -> int | None:
    """A count, or None while the database is not answering (the test's own reads during a fault)."""
    try:
        with engine.connect() as conn:
            return conn.execute(query).scalar_one()
    except OperationalError:
        return None


def _wait_for(predicate, *, timeout: float, what: str, alive=lambda: True) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert alive(), f"the process under test died while waiting for {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


# --- clinreason run ----------------------------------------------------------------------------------

def test_worker_survives_a_restart_and_a_stop_of_the_database_mid_drafting(cluster, tmp_path):
    n, concurrency = sized(160, 600), 8
    url = cluster.url
    env = process_env(url)
    assert cli(["init"], env, tmp_path).returncode == 0
    write_synthetic_bank(tmp_path / "bank.jsonl", n, seed=41)
    assert cli(["import", "bank.jsonl"], env, tmp_path).returncode == 0
    engine = reader(url)
    drafted = select(func.count()).select_from(rationales)
    in_flight = select(func.count()).where(items.c.state == "generating")
    waiting = select(func.count()).where(items.c.state.in_(["imported", "generating", "screening"]))
    log = tmp_path / "requests.jsonl"
    at_fault: list[dict] = []
    with fake_server_process(log=log, latency=0.25) as base_url:
        worker_log = tmp_path / "worker.log"
        with worker_log.open("w") as err_file:
            worker = subprocess.Popen([sys.executable, "-m", "clinreason.cli", "run", "--concurrency",
                                       str(concurrency), "--poll", "0.2"], env=process_env(url, base_url),
                                      cwd=tmp_path, stdout=subprocess.PIPE, stderr=err_file, text=True)
        try:
            alive = lambda: worker.poll() is None  # noqa: E731
            for share, fault in ((0.2, cluster.restart), (0.5, lambda: cluster.stop_for(DOWN_SECONDS))):
                # a round drafts a batch, then screens it: wait until requests are in flight again
                _wait_for(lambda: (_count(engine, drafted) or 0) >= share * n and (_count(engine, in_flight) or 0) > 0,
                          timeout=300, alive=alive, what=f"{share:.0%} of the items drafted, and more in flight")
                at_fault.append({"drafted": _count(engine, drafted), "in_flight": _count(engine, in_flight)})
                engine.dispose()
                fault()
            _wait_for(lambda: _count(engine, waiting) == 0, timeout=300, alive=alive,
                      what="every item drafted and screened after the faults")
            assert worker.poll() is None, "the worker ended by itself"
        except AssertionError as failed:
            raise AssertionError(f"{failed}\n--- the worker's log:\n{worker_log.read_text()[-3000:]}") from None
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.communicate(timeout=120)
    err = worker_log.read_text()
    assert worker.returncode == 0, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    assert all(f["in_flight"] for f in at_fault), f"a fault landed while nothing was being drafted: {at_fault}"
    assert all(f["drafted"] < n for f in at_fault), at_fault

    with engine.connect() as conn:
        states = Counter(conn.execute(select(items.c.state)).scalars())
        per_item = Counter(conn.execute(select(rationales.c.item_id)).scalars())
        keys = set(conn.execute(select(rationales.c.idempotency_key)).scalars())
        screened_twice = conn.execute(select(func.count()).select_from(
            select(checks.c.rationale_id).group_by(checks.c.rationale_id, checks.c.name)
            .having(func.count() > 1).subquery())).scalar_one()
        unscreened = conn.execute(select(func.count()).select_from(rationales).where(
            ~rationales.c.id.in_(select(checks.c.rationale_id)))).scalar_one()
    engine.dispose()
    lost = n - states.get("in_review", 0)
    duplicated = sum(c - 1 for c in per_item.values())
    chat = [r for r in read_request_log(log) if r["path"].endswith("/chat/completions")]
    per_key = Counter(r["idempotency_key"] for r in chat)
    repeats = sum(c - 1 for c in per_key.values())
    assert states == {"in_review": n}, states
    assert len(per_item) == n and duplicated == 0
    assert screened_twice == 0 and unscreened == 0
    assert set(per_key) == keys
    assert repeats == 0, f"{repeats} paid requests sent again: {[k for k, c in per_key.items() if c > 1][:5]}"
    record_figures("db-restart-worker-postgresql", {
        "command": "clinreason run (PostgreSQL restarted, then stopped and started, mid-drafting)",
        "backend": "postgresql", "runs": 1, "faults": cluster.faults, "at_fault": at_fault, "items": n,
        "concurrency": concurrency, "requests": len(chat), "repeats": repeats, "lost": lost,
        "duplicated": duplicated, "screened_twice": screened_twice,
        "retries_logged": err.count("the database is not answering"),
    })


# --- clinreason serve --------------------------------------------------------------------------------

class Reviewer(threading.Thread):
    """Takes the next item and accepts it until the queue is empty. A 503 must carry Retry-After; the
    reviewer then asks again (sooner than it says, to meet the outage often). Every other answer than
    the expected one is recorded as an error."""

    def __init__(self, name: str, password: str, base: str, *, browser: bool, done: threading.Event):
        super().__init__(name=name, daemon=True)
        self.username, self.password, self.base, self.browser, self.done = name, password, base, browser, done
        self.reviewed: list[str] = []  # assignments acknowledged with 201
        self.resent_after_503: set[str] = set()  # submissions answered 503 at least once
        self.closed_after_503: list[str] = []  # a resend answered 409: the first try had been stored
        self.answers: Counter = Counter()
        self.errors: list[str] = []

    def _call(self, http: httpx.Client, method: str, path: str, expect: tuple[int, ...], **kw) -> httpx.Response:
        """One request, repeated while the answer is 503 (or the connection is refused meanwhile)."""
        deadline = time.monotonic() + 120
        while True:
            r = http.request(method, path, **kw)
            self.answers[r.status_code] += 1
            if r.status_code != 503:
                if r.status_code not in expect:
                    self.errors.append(f"{method} {path}: {r.status_code} {r.text[:300]}")
                return r
            if not r.headers.get("retry-after", "").isdigit():
                self.errors.append(f"{method} {path}: 503 without Retry-After")
            if path.startswith("/api/") and "json" not in r.headers.get("content-type", ""):
                self.errors.append(f"{method} {path}: the API's 503 is not JSON")
            if not path.startswith("/api/") and "<html" not in r.text.lower():
                self.errors.append(f"{method} {path}: the page's 503 is not an HTML page")
            if time.monotonic() > deadline:
                self.errors.append(f"{method} {path}: still 503 after 120 s")
                return r
            time.sleep(min(float(r.headers.get("retry-after") or 1), 0.3))

    def _sign_in(self, http: httpx.Client) -> dict[str, str]:
        if not self.browser:
            r = self._call(http, "POST", "/api/login", (200,), json={"username": self.username,
                                                                      "password": self.password})
            return {"Authorization": f"Bearer {r.json()['token']}"}
        page = self._call(http, "GET", "/login", (200,))
        r = self._call(http, "POST", "/login", (303,), data={"username": self.username, "password": self.password,
                                                              "csrf_token": factories.csrf_of(page.text), "next": ""})
        assert r.status_code == 303
        return {}

    def _csrf(self, http: httpx.Client) -> dict[str, str]:
        """The session's CSRF token, from the HTML review page, as the browser gets it."""
        page = self._call(http, "GET", "/review", (200,))
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        return {"X-CSRF-Token": token.group(1)} if token else {}

    def run(self) -> None:
        try:
            with httpx.Client(base_url=self.base, timeout=60) as http:
                auth = self._sign_in(http)
                while not self.done.is_set():
                    headers = {**auth, **(self._csrf(http) if self.browser else {})}
                    nxt = self._call(http, "GET", "/api/queue/next", (200, 204), headers=headers)
                    if nxt.status_code == 204:
                        return
                    if nxt.status_code != 200:
                        return
                    assignment = nxt.json()["assignment_id"]
                    self._call(http, "GET", f"/api/items/{nxt.json()['item']['id']}", (200,), headers=headers)
                    self._submit(http, assignment, headers)
        except Exception as exc:  # noqa: BLE001 - reported by the test
            self.errors.append(f"{self.username}: {exc!r}")

    def _submit(self, http: httpx.Client, assignment: str, headers: dict[str, str]) -> None:
        body = {"verdict": "accept", "scores": SCORES, "comments": {"general": f"ok ({self.username})"}}
        path = f"/api/assignments/{assignment}/review"
        while True:
            r = http.post(path, json=body, headers=headers)
            self.answers[r.status_code] += 1
            if r.status_code == 201:
                self.reviewed.append(assignment)
                return
            if r.status_code == 503 and r.headers.get("retry-after", "").isdigit():
                self.resent_after_503.add(assignment)  # not stored (or not known to be): send it again
                time.sleep(0.3)
                continue
            if r.status_code == 409 and assignment in self.resent_after_503:
                self.closed_after_503.append(assignment)  # the try that got the 503 had been stored after all
                return
            self.errors.append(f"POST {path}: {r.status_code} {r.text[:300]}")
            return


def test_serve_answers_503_while_the_database_is_down_and_recovers_by_itself(cluster, tmp_path):
    n_reviewers, n_items = 10, sized(80, 400)
    url = cluster.url
    env = process_env(url)
    (tmp_path / "clinreason.toml").write_text("[review]\noverlap = 1\n")
    assert cli(["init"], env, tmp_path).returncode == 0
    engine = store_db.make_engine(url)
    try:
        with engine.begin() as conn:
            from clinreason.store import projects as store_projects

            project = store_projects.require_project(conn, name="default")
            users = [factories.make_user(conn, username=f"rev{i:02d}") for i in range(n_reviewers)]
            for _ in range(n_items):
                factories.make_item(conn, project_id=project["id"])
    finally:
        engine.dispose()
    log = tmp_path / "serve.log"
    done = threading.Event()
    reviewers: list[Reviewer] = []
    # with its in-process worker (polling for drafts to screen) so that the outage meets that loop too
    with fake_server_process(log=tmp_path / "requests.jsonl") as llm, \
            serving(process_env(url, llm), tmp_path, extra=["--worker"], log=log) as (base, server):
        try:
            reviewers = [Reviewer(u["username"], u["password"], base, browser=i % 2 == 1, done=done)
                         for i, u in enumerate(users)]
            for r in reviewers:
                r.start()
            acked = lambda: sum(len(r.reviewed) for r in reviewers)  # noqa: E731
            at_fault = []
            for share, fault in ((0.25, cluster.restart), (0.5, lambda: cluster.stop_for(DOWN_SECONDS))):
                _wait_for(lambda: acked() >= share * n_items or not any(r.is_alive() for r in reviewers),
                          timeout=300, what=f"{share:.0%} of the reviews", alive=lambda: server.poll() is None)
                at_fault.append({"reviews_acknowledged": acked()})
                fault()
            for r in reviewers:
                r.join(timeout=300)
            assert server.poll() is None, "the server ended"
        finally:
            done.set()
    errors = [e for r in reviewers for e in r.errors]
    assert errors == [], errors[:10]
    assert all(f["reviews_acknowledged"] < n_items for f in at_fault), f"a fault landed after the work: {at_fault}"
    answers = sum((r.answers for r in reviewers), Counter())
    assert answers[503] > 0, "no request met the database while it was down"
    assert answers[500] == 0
    served = log.read_text(errors="replace")
    assert "Traceback" not in served, served[-3000:]

    check = reader(url)
    with check.connect() as conn:
        states = Counter(conn.execute(select(items.c.state)).scalars())
        per_assignment = Counter(conn.execute(select(reviews.c.assignment_id)).scalars())
        per_item = Counter(conn.execute(select(assignments.c.item_id).where(
            assignments.c.id.in_(select(reviews.c.assignment_id)))).scalars())
        stored = set(per_assignment)
        n_events = conn.execute(select(func.count()).where(events.c.kind == "review.submitted")).scalar_one()
        n_decisions = conn.execute(select(func.count()).select_from(decisions)
                                   .where(decisions.c.kind == "consensus")).scalar_one()
    check.dispose()
    acknowledged = {a for r in reviewers for a in r.reviewed}
    closed_after_503 = {a for r in reviewers for a in r.closed_after_503}
    lost = len((acknowledged | closed_after_503) - stored)
    duplicated = sum(c - 1 for c in per_assignment.values()) + sum(c - 1 for c in per_item.values())
    assert states == {"accepted": n_items}, states
    assert lost == 0 and duplicated == 0
    assert len(stored) == n_items == n_events == n_decisions
    assert stored == acknowledged | closed_after_503
    record_figures("db-restart-serve-postgresql", {
        "command": "clinreason serve --worker, 10 reviewers (PostgreSQL restarted, then stopped and started)",
        "backend": "postgresql", "runs": 1, "faults": cluster.faults, "at_fault": at_fault, "items": n_items,
        "reviewers": n_reviewers, "browser_session_reviewers": sum(r.browser for r in reviewers),
        "requests": sum(answers.values()), "answers": {str(k): v for k, v in sorted(answers.items())},
        "reviews": len(stored), "repeats": len({a for r in reviewers for a in r.resent_after_503}),
        "stored_before_a_503": len(closed_after_503), "lost": lost, "duplicated": duplicated,
    })
