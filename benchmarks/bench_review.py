"""The review app under load: concurrent reviewers over real HTTP, and the queue's invariants afterwards.

    python benchmarks/bench_review.py [--reviewers 50] [--reviews 2000] [--edit-share 0.03]
                                      [--db postgresql+psycopg://...  --wipe]

Seeds a fresh database (a SQLite file in a temporary folder by default; with --db, a throwaway
PostgreSQL database whose schema --wipe drops first), starts `clinreason serve` in its own process,
and lets N reviewer threads (one HTTP client each, bearer tokens) ask for the next item and submit a
review until exactly --reviews reviews are in. A few reviewers edit (a new version that others review).
First one reviewer works alone (--solo reviews: the latency of a request nobody else competes with), then
all reviewers at once, each asking again the moment it is answered. Prints p50/p95/max latency of
GET /api/queue/next and POST /api/assignments/{id}/review for both phases, throughput, and the invariants
(over both phases): no version with more than k reviews, no reviewer twice on a version, no reviewer on a
version they wrote, no lost submission (every 201 is a row), no error response.

The functions here are also used by tests/web/test_concurrency.py (in-process server, smaller run).
"""

from __future__ import annotations

import argparse
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DIMENSIONS = ["correctness", "reasoning", "sufficiency", "terminology", "clinical_value"]


# --- seeding ---------------------------------------------------------------------------------------

def seed(engine, *, project_id: int, items: int, reviewers: int, specialties=("cardiology", "neurology", None)):
    """`items` items in review (v1 each) and `reviewers` reviewers with personal tokens; returns the tokens."""
    import hashlib

    from argon2 import PasswordHasher
    from sqlalchemy import insert

    from clinreason.store import common as store_common
    from clinreason.store.tables import api_tokens, rationales, users
    from clinreason.store.tables import items as items_t

    ts = store_common.now()
    cheap = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash("load-test-password")
    item_rows, rationale_rows = [], []
    for n in range(items):
        iid = f"load{n:06d}"
        item_rows.append(dict(
            id=iid, project_id=project_id, content_hash=hashlib.sha256(iid.encode()).hexdigest(),
            question=f"Load question {n}: a 58-year-old with crushing chest pain. First drug?",
            options=[["A", "Aspirin"], ["B", "Morphine"], ["C", "Nitrates"], ["D", "Oxygen"]], answer_labels=["A"],
            language="en", specialty=specialties[n % len(specialties)], meta={}, state="in_review", strikes=0,
            auto_retries=0, created_at=ts, updated_at=ts))
        rationale_rows.append(dict(
            id=f"{iid}v1", item_id=iid, version=1, parent_version=None, origin="generated", author="model:load",
            steps=["Chest pain suggests ACS.", "Aspirin first.", "Final answer: A"], final_answer=["A"],
            text="Chest pain suggests ACS.\nAspirin first.\nFinal answer: A", model="load", params={},
            parse_status="ok", prompt_tokens=0, completion_tokens=0, cost=0.0, created_at=ts))
    tokens = []
    with engine.begin() as conn:
        for start in range(0, items, 500):
            conn.execute(insert(items_t), item_rows[start:start + 500])
            conn.execute(insert(rationales), rationale_rows[start:start + 500])
        for r in range(reviewers):
            uid = conn.execute(insert(users).values(
                username=f"rev{r:03d}", role="reviewer", specialties=[specialties[r % 2]], password_hash=cheap,
                active=True, created_at=ts)).inserted_primary_key[0]
            token = f"cr_load_{r:03d}_" + hashlib.sha256(f"{r}{ts}".encode()).hexdigest()[:24]
            conn.execute(insert(api_tokens).values(token_hash=hashlib.sha256(token.encode()).hexdigest(), user_id=uid,
                                                   project_id=project_id, kind="personal", name="load",
                                                   created_at=ts))
            tokens.append(token)
    return tokens


# --- the reviewers ---------------------------------------------------------------------------------

@dataclass
class LoadResult:
    next_s: list[float] = field(default_factory=list)
    submit_s: list[float] = field(default_factory=list)
    review_ids: list[str] = field(default_factory=list)
    edits: int = 0
    empty: int = 0
    conflicts: int = 0  # an edit refused with 409 because someone else's edit superseded the version
    errors: list[str] = field(default_factory=list)
    wall_s: float = 0.0


class _Budget:
    """Exactly `total` submissions: a reviewer reserves one before asking for work, returns it on 204."""

    def __init__(self, total: int):
        self.left = total
        self.lock = threading.Lock()

    def take(self) -> bool:
        with self.lock:
            if self.left <= 0:
                return False
            self.left -= 1
            return True

    def give_back(self) -> None:
        with self.lock:
            self.left += 1


def _reviewer(base_url: str, token: str, budget: _Budget, result: LoadResult, lock: threading.Lock,
              rng: random.Random, edit_share: float) -> None:
    import httpx

    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=120) as client:
        while budget.take():
            t0 = time.perf_counter()
            r = client.get("/api/queue/next")
            t1 = time.perf_counter()
            with lock:
                result.next_s.append(t1 - t0)
            if r.status_code == 204:
                budget.give_back()
                with lock:
                    result.empty += 1
                return
            if r.status_code != 200:
                budget.give_back()
                with lock:
                    result.errors.append(f"next: {r.status_code} {r.text[:200]}")
                return
            got = r.json()
            scores = {d: rng.choice([4, 5, 5]) for d in DIMENSIONS}
            body: dict[str, Any] = {"verdict": "accept", "scores": scores, "comments": {}}
            if rng.random() < edit_share and got["rationale"]["version"] < 3:
                body.update(verdict="edit", edited_text=got["rationale"]["text"] + f"\n(clarified by {token[8:11]})",
                            comments={"reasoning": "added a step"})
            t2 = time.perf_counter()
            s = client.post(f"/api/assignments/{got['assignment_id']}/review", json=body)
            t3 = time.perf_counter()
            with lock:
                result.submit_s.append(t3 - t2)
                if s.status_code == 201:
                    result.review_ids.append(s.json()["review_id"])
                    result.edits += body["verdict"] == "edit"
                elif s.status_code == 409 and body["verdict"] == "edit":
                    result.conflicts += 1
                else:
                    result.errors.append(f"submit: {s.status_code} {s.text[:200]}")
            if s.status_code == 409 and body["verdict"] == "edit":
                # like a reviewer told "the rationale changed while you reviewed it": give the item back
                budget.give_back()
                client.post(f"/api/assignments/{got['assignment_id']}/release")


def run_reviewers(base_url: str, tokens: list[str], *, reviews: int, edit_share: float = 0.03,
                  seed_value: int = 7) -> LoadResult:
    """All reviewers at once (each in its own thread, started together) until `reviews` are submitted."""
    result, lock, budget = LoadResult(), threading.Lock(), _Budget(reviews)
    barrier = threading.Barrier(len(tokens))

    def start(i: int, token: str) -> None:
        barrier.wait()
        _reviewer(base_url, token, budget, result, lock, random.Random(seed_value * 1000 + i), edit_share)

    threads = [threading.Thread(target=start, args=(i, t)) for i, t in enumerate(tokens)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result.wall_s = time.perf_counter() - t0
    return result


# --- invariants ------------------------------------------------------------------------------------

def check_invariants(engine, *, project_id: int, overlap: int, returned_ids: list[str]) -> dict[str, int]:
    """Counts of every violation (all must be 0) plus totals, read back from the database."""
    from sqlalchemy import func, literal, select

    from clinreason.store.tables import assignments, items, rationales, reviews, users

    in_project = select(items.c.id).where(items.c.project_id == project_id)
    with engine.connect() as conn:
        per_version = select(reviews.c.rationale_id, func.count().label("n")).where(
            reviews.c.item_id.in_(in_project)).group_by(reviews.c.rationale_id).subquery()
        over = conn.execute(select(func.count()).select_from(per_version).where(per_version.c.n > overlap)).scalar_one()
        dup_q = select(reviews.c.rationale_id, reviews.c.reviewer_id).where(reviews.c.item_id.in_(in_project)) \
            .group_by(reviews.c.rationale_id, reviews.c.reviewer_id).having(func.count() > 1).subquery()
        dups = conn.execute(select(func.count()).select_from(dup_q)).scalar_one()
        self_reviews = conn.execute(
            select(func.count()).select_from(reviews.join(rationales, rationales.c.id == reviews.c.rationale_id)
                                             .join(users, users.c.id == reviews.c.reviewer_id))
            .where(reviews.c.item_id.in_(in_project), rationales.c.author == literal("user:") + users.c.username)
        ).scalar_one()
        stored = set(conn.execute(select(reviews.c.id).where(reviews.c.item_id.in_(in_project))).scalars())
        open_leases = conn.execute(select(func.count()).select_from(assignments).where(
            assignments.c.item_id.in_(in_project), assignments.c.status == "open")).scalar_one()
        versions = conn.execute(select(func.count()).select_from(rationales).where(
            rationales.c.item_id.in_(in_project))).scalar_one()
    returned = set(returned_ids)
    return {
        "versions_over_k": over, "duplicate_reviewer_per_version": dups, "self_reviews_of_own_edit": self_reviews,
        "lost_submissions": len(returned - stored), "unreported_rows": len(stored - returned),
        "duplicate_review_ids": len(returned_ids) - len(returned),
        "reviews_stored": len(stored), "versions": versions, "open_leases_left": open_leases,
    }


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def summary_lines(result: LoadResult, invariants: dict[str, int]) -> list[str]:
    ms = lambda v: f"{v * 1000:7.1f} ms"  # noqa: E731
    lines = [
        f"submitted {len(result.review_ids)} reviews ({result.edits} edits) in {result.wall_s:.1f} s "
        f"= {len(result.review_ids) / result.wall_s:.0f} reviews/s; {len(result.errors)} error responses; "
        f"{result.conflicts} edits refused (409) because another edit superseded the version",
        f"GET  /api/queue/next            n={len(result.next_s):5d}  p50 {ms(percentile(result.next_s, .5))}  "
        f"p95 {ms(percentile(result.next_s, .95))}  max {ms(max(result.next_s, default=0))}",
        f"POST /api/assignments/{{id}}/review n={len(result.submit_s):5d}  p50 {ms(percentile(result.submit_s, .5))}  "
        f"p95 {ms(percentile(result.submit_s, .95))}  max {ms(max(result.submit_s, default=0))}",
        "invariants: " + ", ".join(f"{k}={v}" for k, v in invariants.items()),
    ]
    return lines


# --- the benchmark ---------------------------------------------------------------------------------

def open_database(parser: argparse.ArgumentParser, url: str, *, wipe: bool):
    """The benchmark's engine on `url`. A PostgreSQL database is only used with --wipe: its public schema is
    dropped and recreated first (a benchmark's figures need an empty database)."""
    from sqlalchemy import create_engine, text

    from clinreason.store import db

    if url.startswith("postgres"):
        if not wipe:
            parser.error("--db on PostgreSQL needs --wipe (the schema is dropped and recreated)")
        admin = create_engine(db.normalise_url(url), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        admin.dispose()
    return db.make_engine(url)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reviewers", type=int, default=50)
    parser.add_argument("--reviews", type=int, default=2000)
    parser.add_argument("--edit-share", type=float, default=0.03)
    parser.add_argument("--overlap", type=int, default=2)
    parser.add_argument("--solo", type=int, default=100,
                        help="reviews by one reviewer alone first: the uncontended latency of each request")
    parser.add_argument("--db", help="database URL (default: a fresh SQLite file)")
    parser.add_argument("--wipe", action="store_true", help="drop and recreate the PostgreSQL schema given by --db")
    args = parser.parse_args()


    from clinreason.config import ProjectConfig
    from clinreason.store import db
    from clinreason.store import projects as store_projects

    workdir = Path(tempfile.mkdtemp(prefix="clinreason-bench-review-"))
    url = args.db or f"sqlite:///{workdir / 'bench.db'}"
    engine = open_database(parser, url, wipe=args.wipe)
    db.upgrade(engine)
    pc = ProjectConfig()
    pc.review.overlap = args.overlap
    with engine.begin() as conn:
        project, _ = store_projects.ensure_project(conn, name="default", config=pc.model_dump(mode="json", exclude={"rubric"}),
                                         rubric=pc.rubric)
    n_items = int((args.reviews + args.solo) / args.overlap * 1.15) + args.reviewers
    tokens = seed(engine, project_id=project["id"], items=n_items, reviewers=args.reviewers)
    port = _free_port()
    config = workdir / "clinreason.toml"
    config.write_text(f'name = "default"\n[review]\noverlap = {args.overlap}\n', encoding="utf-8")
    server = subprocess.Popen([sys.executable, "-m", "clinreason.cli", "serve", "--db", url, "--port", str(port),
                               "--config", str(config)], stdout=subprocess.DEVNULL, stderr=open(workdir / "server.log", "wb"), cwd=workdir)
    try:
        import httpx

        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/openapi.json", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit(f"the server did not start: see {workdir / 'server.log'}")
            time.sleep(0.2)
        backend = engine.dialect.name
        print(f"{args.reviewers} reviewers, {args.reviews} reviews, k={args.overlap}, {n_items} items, "
              f"database {backend}, server `clinreason serve` in its own process")
        solo = run_reviewers(f"http://127.0.0.1:{port}", tokens[:1], reviews=args.solo, edit_share=args.edit_share)
        result = run_reviewers(f"http://127.0.0.1:{port}", tokens, reviews=args.reviews, edit_share=args.edit_share)
    finally:
        server.terminate()
        server.wait(timeout=30)
    invariants = check_invariants(engine, project_id=project["id"], overlap=args.overlap,
                                  returned_ids=solo.review_ids + result.review_ids)
    print(f"-- one reviewer alone ({args.solo} reviews): the latency of a request when nobody else is waiting")
    for line in summary_lines(solo, invariants)[:3]:
        print(line)
    print(f"-- {args.reviewers} reviewers at once, each asking again as soon as answered (closed loop, no think time)")
    for line in summary_lines(result, invariants):
        print(line)
    bad = {k: v for k, v in invariants.items() if k in (
        "versions_over_k", "duplicate_reviewer_per_version", "self_reviews_of_own_edit", "lost_submissions",
        "unreported_rows", "duplicate_review_ids") and v}
    if bad or result.errors or solo.errors or len(result.review_ids) != args.reviews:
        print(f"FAILED: {bad or ''} {result.errors[:3]} submitted {len(result.review_ids)} of {args.reviews}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
