"""The review queue and the read models with a large project: `--items` items waiting in review (default
100,000; `--items 1000000` for the issue's figure) plus `--reviews` reviews (default 2 × items) on items
already accepted by consensus.

    python benchmarks/bench_scale.py [--items 100000] [--reviews N] [--phases seed,solo,open,closed,read]
                                     [--db postgresql+psycopg://... --wipe] [--workers 2] [--json]
                                     [--server-profile DIR [--turns-only]]

Seeding writes straight into the tables (sqlite3 executemany on SQLite, COPY on PostgreSQL), not through
the import stage; it prints its wall time and the process's peak RSS. Then, each figure beside its limit:
- solo: one reviewer alone, in process: assign_next_review and submit_review, p95 of each;
- open: 50 reviewers over HTTP against `clinreason serve --workers N`, each one review every 10 s
  (open loop: the pace is fixed, --open-seconds only shortens the run), p95 of next and submit < 50 ms;
- closed: the same reviewers asking again as soon as answered (capacity, reviews/s: ≥ 200 on SQLite,
  ≥ 150 on PostgreSQL), with the invariants of tests/web/test_concurrency.py counted afterwards (all 0);
- with --server-profile DIR the server is benchmarks/profiled_server.py instead (the same app under uvicorn
  with the options `serve` gives it, under cProfile, or with --turns-only only its write turns timed): DIR/open
  and DIR/closed hold each phase's profiles and the time its write transactions waited for this process's
  write turn, waited in BEGIN IMMEDIATE (the other processes' writers), spent inside and in COMMIT, and each
  request's time in the server; `python benchmarks/profiled_server.py DIR/closed` prints them;
- read: what `status --json`, `agreement --json`, `stats --json` compute and GET /dashboard (as an admin),
  each < 1 s.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import resource
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import Report  # noqa: E402
from bench_review import DIMENSIONS, _free_port, check_invariants, open_database, percentile, run_reviewers  # noqa: E402

SPECIALTIES = ("cardiology", "neurology", None)
STAMP = datetime(2025, 3, 1, 8, 0, 0, tzinfo=UTC)
BATCH = 20_000


# --- seeding ---------------------------------------------------------------------------------------

class Bulk:
    """Rows straight into tables: sqlite3 executemany, or COPY on PostgreSQL (one transaction per batch)."""

    def __init__(self, engine):
        self.engine = engine
        self.pg = engine.dialect.name == "postgresql"
        if self.pg:
            self.raw = engine.raw_connection()
            self.con = self.raw.driver_connection
        else:
            import sqlite3

            self.con = sqlite3.connect(engine.url.database)
            self.con.execute("PRAGMA synchronous=OFF")

    def value(self, v: Any) -> Any:
        if self.pg:
            if isinstance(v, (dict, list)):
                return json.dumps(v)
            return v
        if isinstance(v, datetime):
            return v.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
        if isinstance(v, (dict, list)):
            return json.dumps(v)
        if isinstance(v, bool):
            return int(v)
        return v

    def insert(self, table: str, columns: tuple[str, ...], rows: list[tuple]) -> None:
        if not rows:
            return
        if self.pg:
            with self.con.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row([self.value(v) for v in row])
        else:
            marks = ", ".join("?" for _ in columns)
            self.con.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})",
                                 [tuple(self.value(v) for v in row) for row in rows])

    def commit(self) -> None:
        self.con.commit()

    def close(self) -> None:
        if self.pg:
            self.raw.close()
        else:
            self.con.close()


ITEM_COLS = ("id", "project_id", "content_hash", "question", "options", "answer_labels", "language", "specialty",
             "meta", "state", "strikes", "auto_retries", "created_at", "updated_at")
RAT_COLS = ("id", "item_id", "version", "origin", "author", "steps", "final_answer", "text", "model", "params",
            "parse_status", "prompt_tokens", "completion_tokens", "cost", "created_at")
REV_COLS = ("id", "rationale_id", "item_id", "reviewer_id", "verdict", "scores", "comments", "seconds_spent",
            "rubric_version", "created_at")
STEPS = ["Chest pain suggests ACS.", "Aspirin first.", "Final answer: A"]
OPTIONS = [["A", "Aspirin"], ["B", "Morphine"], ["C", "Nitrates"], ["D", "Oxygen"]]


def _item(n: int, prefix: str, project_id: int, state: str, at: datetime) -> tuple:
    iid = f"{prefix}{n:07d}"
    return (iid, project_id, hashlib.sha256(iid.encode()).hexdigest(),
            f"Question {n}: a 58-year-old with crushing chest pain. First drug?", OPTIONS, ["A"], "en",
            SPECIALTIES[n % len(SPECIALTIES)], {}, state, 0, 0, at, at)


def _rationale(iid: str, at: datetime) -> tuple:
    return (f"{iid}v1", iid, 1, "generated", "model:load", STEPS, ["A"], "\n".join(STEPS), "load-model",
            {"temperature": 0.2}, "ok", 300, 200, 0.001, at)


def seed_scale(engine, *, project_id: int, waiting: int, reviews: int, reviewers: int, seed: int = 5) -> dict[str, Any]:
    """`waiting` items in review (v1 each, none reviewed), `reviews // 2` accepted items with two reviews
    each and a consensus decision, `reviewers` reviewers (bearer tokens) and one admin. Returns the tokens."""
    rng = random.Random(seed)
    bulk = Bulk(engine)
    cheap = "$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHQ$0x0x"  # never used to sign in: bearer tokens only
    user_rows, token_rows, tokens = [], [], []
    for r in range(reviewers + 1):
        admin = r == reviewers
        user_rows.append((r + 1, "admin0" if admin else f"rev{r:03d}", "admin" if admin else "reviewer",
                          [] if admin else [SPECIALTIES[r % 2]], cheap, True, STAMP))
        token = f"cr_scale_{r:03d}_" + hashlib.sha256(f"{r}{seed}".encode()).hexdigest()[:24]
        token_rows.append((hashlib.sha256(token.encode()).hexdigest(), r + 1, project_id, "personal", "load", STAMP))
        tokens.append(token)
    bulk.insert("users", ("id", "username", "role", "specialties", "password_hash", "active", "created_at"), user_rows)
    bulk.insert("api_tokens", ("token_hash", "user_id", "project_id", "kind", "name", "created_at"), token_rows)
    bulk.commit()
    if bulk.pg:  # the ids were given explicitly: move the sequence past them
        with bulk.con.cursor() as cur:
            cur.execute("SELECT setval(pg_get_serial_sequence('users', 'id'), (SELECT max(id) FROM users))")
        bulk.commit()
    for start in range(0, waiting, BATCH):
        rows = [_item(n, "w", project_id, "in_review", STAMP + timedelta(microseconds=n))
                for n in range(start, min(start + BATCH, waiting))]
        bulk.insert("items", ITEM_COLS, rows)
        bulk.insert("rationales", RAT_COLS, [_rationale(r[0], STAMP) for r in rows])
        bulk.insert("item_sources", ("item_id", "source", "file", "record", "license", "imported_at"),
                    [(r[0], "medqa", "medqa.jsonl", r[0], "MIT", STAMP) for r in rows])
        bulk.commit()
    done = reviews // 2
    for start in range(0, done, BATCH):
        rows = [_item(n, "d", project_id, "accepted", STAMP - timedelta(days=30) + timedelta(seconds=n))
                for n in range(start, min(start + BATCH, done))]
        revs, decs = [], []
        for row in rows:
            iid, day = row[0], row[12]
            for j, who in enumerate(rng.sample(range(1, reviewers + 1), 2)):
                scores = {d: rng.choice((3, 4, 4, 5, 5, 5)) for d in DIMENSIONS}
                revs.append((f"{iid}r{j}", f"{iid}v1", iid, who, "accept", scores, {},
                             round(rng.uniform(40, 400), 1), 1, day))
            decs.append((iid, "consensus", f"{iid}v1", "consensus", "", day))
        bulk.insert("items", ITEM_COLS, rows)
        bulk.insert("rationales", RAT_COLS, [_rationale(r[0], r[12]) for r in rows])
        bulk.insert("item_sources", ("item_id", "source", "file", "record", "license", "imported_at"),
                    [(r[0], "cmexam", "cmexam.xlsx", r[0], "research use only", STAMP) for r in rows])
        bulk.insert("reviews", REV_COLS, revs)
        bulk.insert("decisions", ("item_id", "kind", "rationale_id", "decided_by", "reason", "created_at"), decs)
        bulk.commit()
    if bulk.pg:
        with bulk.con.cursor() as cur:
            cur.execute("ANALYZE")
        bulk.commit()
    else:
        bulk.con.execute("ANALYZE")
        bulk.commit()
    bulk.close()
    return {"tokens": tokens[:reviewers], "admin_token": tokens[reviewers], "done_items": done}


# --- in process: one reviewer alone ----------------------------------------------------------------

def solo(engine, *, project_id: int, rubric: dict[str, Any], n: int, overlap: int) -> tuple[list[float], list[float]]:
    """assign_next_review and submit_review timed one after the other, each its own transaction."""
    from clinreason.stages import review as review_stage
    from clinreason.store import accounts

    with engine.connect() as conn:
        user = next(u for u in accounts.list_users(conn) if u.username == "rev000")
    reviewer = review_stage.Reviewer(user.id, user.username, tuple(user.specialties))
    nexts, submits = [], []
    rng = random.Random(3)
    for _ in range(n):
        t0 = time.perf_counter()
        with engine.begin() as conn:
            lease = review_stage.assign_next_review(conn, project_id=project_id, reviewer=reviewer, overlap=overlap)
        t1 = time.perf_counter()
        assert lease is not None
        body = {"verdict": "accept", "scores": {d: rng.choice([4, 5, 5]) for d in DIMENSIONS}, "comments": {}}
        with engine.begin() as conn:
            review_stage.submit_review(conn, project_id=project_id, assignment_id=lease.assignment_id,
                                       reviewer=reviewer, body=body, rubric_body=rubric, overlap=overlap)
        t2 = time.perf_counter()
        nexts.append(t1 - t0)
        submits.append(t2 - t1)
    return nexts, submits


# --- over HTTP: the open loop ----------------------------------------------------------------------

def open_loop(base_url: str, tokens: list[str], *, period_s: float, duration_s: float) -> dict[str, Any]:
    """Each reviewer asks for an item and submits it once every `period_s`, starting staggered; requests
    keep to that schedule whatever the answers take (open loop)."""
    import httpx

    lock = threading.Lock()
    out: dict[str, Any] = {"next": [], "submit": [], "errors": [], "ids": []}
    t_start = time.perf_counter() + 0.5

    def reviewer(i: int, token: str) -> None:
        rng = random.Random(i)
        with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as client:
            k = 0
            while True:
                due = t_start + i * period_s / len(tokens) + k * period_s
                if due - t_start > duration_s:
                    return
                time.sleep(max(0.0, due - time.perf_counter()))
                k += 1
                t0 = time.perf_counter()
                r = client.get("/api/queue/next")
                t1 = time.perf_counter()
                if r.status_code != 200:
                    with lock:
                        out["errors"].append(f"next {r.status_code}")
                    continue
                body = {"verdict": "accept", "scores": {d: rng.choice([4, 5, 5]) for d in DIMENSIONS}, "comments": {}}
                s = client.post(f"/api/assignments/{r.json()['assignment_id']}/review", json=body)
                t2 = time.perf_counter()
                with lock:
                    out["next"].append(t1 - t0)
                    out["submit"].append(t2 - t1)
                    if s.status_code == 201:
                        out["ids"].append(s.json()["review_id"])
                    else:
                        out["errors"].append(f"submit {s.status_code} {s.text[:100]}")

    threads = [threading.Thread(target=reviewer, args=(i, t)) for i, t in enumerate(tokens)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def warm_up(base_url: str, tokens: list[str], *, pairs: int) -> int:
    """Next + submit `pairs` times, each on a new connection (so every server process gets some): the first
    requests a fresh process serves import modules and compile statements; that is start-up, not load."""
    import httpx

    done = 0
    for i in range(pairs):
        token = tokens[i % len(tokens)]
        with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=120) as client:
            r = client.get("/api/queue/next")
            if r.status_code != 200:
                continue
            body = {"verdict": "accept", "scores": {d: 5 for d in DIMENSIONS}, "comments": {}}
            done += client.post(f"/api/assignments/{r.json()['assignment_id']}/review", json=body).status_code == 201
    return done


def server_cpu_seconds(root_pid: int) -> float:
    """CPU seconds (user + system) used so far by the server process and every process below it (Linux /proc):
    what a review costs the server, whatever else the machine is busy with."""
    import os

    stats: dict[int, tuple[int, float]] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        stats[int(entry)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    tree, frontier = {root_pid}, [root_pid]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, _) in stats.items():
            if ppid == parent and pid not in tree:
                tree.add(pid)
                frontier.append(pid)
    return sum(stats[pid][1] for pid in tree if pid in stats)


def start_server(url: str, workdir: Path, *, overlap: int, workers: int, profile_dir: Path | None = None,
                 turns_only: bool = False) -> tuple[subprocess.Popen, str]:
    """`clinreason serve --workers N`; with `profile_dir`, the same app under cProfile instead
    (benchmarks/profiled_server.py, started by uvicorn with the options `serve` gives it)."""
    import os

    import httpx

    port = _free_port()
    config = workdir / "clinreason.toml"
    config.write_text(f'name = "default"\n[review]\noverlap = {overlap}\n', encoding="utf-8")
    env = None
    if profile_dir is None:
        cmd = [sys.executable, "-m", "clinreason.cli", "serve", "--db", url, "--port", str(port), "--config",
               str(config), "--no-worker", "--workers", str(workers)]
    else:
        env = {**os.environ, "CLINREASON_DB": url, "CLINREASON_PROJECT": "default", "CLINREASON_CONFIG": str(config),
               "CLINREASON_SERVER_PROFILE": str(profile_dir),
               "CLINREASON_SERVER_PROFILE_TURNS_ONLY": "1" if turns_only else "0"}
        cmd = [sys.executable, "-m", "uvicorn", "--app-dir", str(Path(__file__).resolve().parent), "--factory",
               "--workers", str(workers), "--host", "127.0.0.1", "--port", str(port), "--no-proxy-headers",
               "--no-server-header", "--log-level", "info", "--http", "clinreason.web.protocol:NoDelayHTTPProtocol",
               "profiled_server:app"]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(workdir / "server.log", "wb"), cwd=workdir,
                              env=env)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"{base}/openapi.json", timeout=2).status_code == 200:
                return server, base
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or server.poll() is not None:
            raise SystemExit(f"the server did not start: see {workdir / 'server.log'}")
        time.sleep(0.3)


def _signal_server_processes(server: subprocess.Popen, signum: int) -> int:
    import os

    sent = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == server.pid:
                os.kill(int(entry), signum)
                sent += 1
    return sent


def restart_server_profiles(server: subprocess.Popen, profile_dir: Path | None) -> None:
    """Start the profiled server's processes' profiles afresh (SIGUSR1 to each process below the server)."""
    import signal

    if profile_dir is not None:
        _signal_server_processes(server, signal.SIGUSR1)
        time.sleep(0.5)  # each process resets on its writer's next look (every 0.1 s)


def keep_server_profiles(server: subprocess.Popen, profile_dir: Path | None, phase: str) -> Path | None:
    """Have the profiled processes write what they profiled (SIGUSR2) and move it to profile_dir/phase."""
    import shutil
    import signal

    if profile_dir is None:
        return None
    for f in profile_dir.glob("server-*"):
        f.unlink()
    sent = _signal_server_processes(server, signal.SIGUSR2)
    deadline = time.monotonic() + 60
    while len(list(profile_dir.glob("server-*.done"))) < sent and time.monotonic() < deadline:
        time.sleep(0.2)
    target = profile_dir / phase
    target.mkdir(exist_ok=True)
    for f in profile_dir.glob("server-*"):
        shutil.move(f, target / f.name)
    return target


# --- read models -----------------------------------------------------------------------------------

def timed(fn) -> tuple[float, Any]:
    t0 = time.perf_counter()
    value = fn()
    return time.perf_counter() - t0, value


def read_models(engine, *, project_id: int, base_url: str | None, admin_token: str,
                which: set[str]) -> dict[str, tuple[float, Any]]:
    """What each verb computes, timed on a fresh connection (as the CLI does), and the dashboard over HTTP."""
    from clinreason.analytics.agreement import agreement_report
    from clinreason.analytics.stats import project_stats
    from clinreason.store.readmodels import status_counts

    out: dict[str, tuple[float, Any]] = {}
    with engine.connect() as conn:
        out["status"] = timed(lambda: status_counts(conn, project_id=project_id))
    if "agreement" in which:
        with engine.connect() as conn:
            out["agreement"] = timed(lambda: agreement_report(conn, project_id=project_id))
    if "stats" in which:
        with engine.connect() as conn:
            out["stats"] = timed(lambda: project_stats(conn, project_id=project_id))
    if base_url and "dashboard" in which:
        import httpx

        with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {admin_token}"}, timeout=600) as c:
            out["dashboard"] = timed(lambda: c.get("/dashboard"))
    return out


# --- the benchmark ---------------------------------------------------------------------------------

def main() -> int:
    report = Report.from_argv()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=100_000, help="items waiting in review")
    parser.add_argument("--reviews", type=int, default=None, help="reviews on accepted items (default: 2 × items)")
    parser.add_argument("--phases", default="seed,solo,open,closed,read")
    parser.add_argument("--reviewers", type=int, default=50)
    parser.add_argument("--overlap", type=int, default=2)
    parser.add_argument("--solo", type=int, default=200, help="next+submit pairs by one reviewer alone, in process")
    parser.add_argument("--period", type=float, default=10.0, help="seconds between one reviewer's reviews (open loop)")
    parser.add_argument("--open-seconds", type=float, default=30.0, help="how long the open loop runs")
    parser.add_argument("--closed-reviews", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2, help="`serve --workers`")
    parser.add_argument("--warm-up", type=int, default=20, help="next+submit pairs before measuring (not counted)")
    parser.add_argument("--db", help="database URL (default: a fresh SQLite file)")
    parser.add_argument("--wipe", action="store_true", help="drop and recreate the PostgreSQL schema given by --db")
    parser.add_argument("--read", default="status,agreement,stats,dashboard", help="which read models to time")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--profile", help="write a cProfile of the solo phase to this file")
    parser.add_argument("--server-profile", help="run the server under cProfile (benchmarks/profiled_server.py) and "
                        "keep its profiles and write-turn waits of the open and closed phases in this folder")
    parser.add_argument("--turns-only", action="store_true",
                        help="with --server-profile: only time the write turns (no cProfile)")
    args = parser.parse_args()
    phases = set(args.phases.split(","))
    profile_dir = Path(args.server_profile).resolve() if args.server_profile else None
    reviews = 2 * args.items if args.reviews is None else args.reviews


    from clinreason.config import ProjectConfig
    from clinreason.store import db
    from clinreason.store import projects as store_projects

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="clinreason-bench-scale-"))
    workdir.mkdir(parents=True, exist_ok=True)
    url = args.db or f"sqlite:///{workdir / 'scale.db'}"
    engine = open_database(parser, url, wipe=args.wipe)
    backend = engine.dialect.name
    db.upgrade(engine)
    pc = ProjectConfig()
    pc.review.overlap = args.overlap
    with engine.begin() as conn:
        project, _ = store_projects.ensure_project(conn, name="default",
                                                   config=pc.model_dump(mode="json", exclude={"rubric"}),
                                                   rubric=pc.rubric)
    pid = project["id"]
    t0 = time.perf_counter()
    seeded = seed_scale(engine, project_id=pid, waiting=args.items, reviews=reviews, reviewers=args.reviewers)
    seed_s = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    report.note(f"{backend}: seeded {args.items:,} items waiting in review and {seeded['done_items']:,} accepted "
                f"items with {2 * seeded['done_items']:,} reviews in {seed_s:.1f} s (peak RSS {peak_mb:.0f} MB)")
    from clinreason.store.projects import latest_rubric

    with engine.connect() as conn:
        rubric = latest_rubric(conn, project_id=pid)
    failed = False
    if "solo" in phases:
        if args.profile:
            import cProfile

            prof = cProfile.Profile()
            prof.enable()
        cpu0 = time.process_time()
        nexts, submits = solo(engine, project_id=pid, rubric=rubric, n=args.solo, overlap=args.overlap)
        report.note(f"CPU per next+submit pair in process: {(time.process_time() - cpu0) / args.solo * 1000:.1f} ms")
        if args.profile:
            prof.disable()
            prof.dump_stats(args.profile)
        report.note(f"-- one reviewer alone, in process, {args.solo} pairs (p50 next {percentile(nexts, .5)*1000:.1f} ms, "
                    f"submit {percentile(submits, .5)*1000:.1f} ms)")
        report.figure(f"scale_{backend}_solo_next_p95_ms", value=percentile(nexts, .95) * 1000, limit=50.0,
                      higher_is_better=False, unit="ms")
        report.figure(f"scale_{backend}_solo_submit_p95_ms", value=percentile(submits, .95) * 1000, limit=50.0,
                      higher_is_better=False, unit="ms")
    server = base = None
    try:
        if phases & {"open", "closed", "read"}:
            server, base = start_server(url, workdir, overlap=args.overlap, workers=args.workers,
                                        profile_dir=profile_dir, turns_only=args.turns_only)
            warmed = warm_up(base, seeded["tokens"], pairs=args.warm_up)
            report.note(f"-- server `clinreason serve --workers {args.workers}` warmed up with {warmed} reviews "
                        "(not measured)")
        if "open" in phases:
            restart_server_profiles(server, profile_dir)
            cpu0 = server_cpu_seconds(server.pid)
            res = open_loop(base, seeded["tokens"], period_s=args.period, duration_s=args.open_seconds)
            report.note(f"server CPU per next+submit pair: "
                        f"{(server_cpu_seconds(server.pid) - cpu0) / max(1, len(res['ids'])) * 1000:.1f} ms")
            kept = keep_server_profiles(server, profile_dir, "open")
            if kept:
                report.note(f"server profile of the open loop: python benchmarks/profiled_server.py {kept}")
            report.note(f"-- open loop: {len(seeded['tokens'])} reviewers, one review each every {args.period:g} s, "
                        f"for {args.open_seconds:g} s: {len(res['ids'])} reviews, {len(res['errors'])} errors")
            report.figure(f"scale_{backend}_open_next_p95_ms", value=percentile(res["next"], .95) * 1000, limit=50.0,
                          higher_is_better=False, unit="ms")
            report.figure(f"scale_{backend}_open_submit_p95_ms", value=percentile(res["submit"], .95) * 1000,
                          limit=50.0, higher_is_better=False, unit="ms")
            failed |= bool(res["errors"])
            if res["errors"]:
                report.note(f"errors: {res['errors'][:5]}")
        if "closed" in phases:
            restart_server_profiles(server, profile_dir)
            cpu0, client0 = server_cpu_seconds(server.pid), time.process_time()
            res = run_reviewers(base, seeded["tokens"], reviews=args.closed_reviews, edit_share=0.03)
            report.note(f"CPU per next+submit pair: server "
                        f"{(server_cpu_seconds(server.pid) - cpu0) / max(1, len(res.review_ids)) * 1000:.1f} ms, "
                        f"client {(time.process_time() - client0) / max(1, len(res.review_ids)) * 1000:.1f} ms")
            kept = keep_server_profiles(server, profile_dir, "closed")
            if kept:
                report.note(f"server profile of the closed loop: python benchmarks/profiled_server.py {kept}")
            inv = check_invariants(engine, project_id=pid, overlap=args.overlap, returned_ids=res.review_ids)
            report.note(f"-- closed loop: {len(res.review_ids)} reviews ({res.edits} edits) in {res.wall_s:.1f} s, "
                        f"{len(res.errors)} errors; p95 next {percentile(res.next_s, .95)*1000:.0f} ms, "
                        f"submit {percentile(res.submit_s, .95)*1000:.0f} ms; invariants: "
                        + ", ".join(f"{k}={v}" for k, v in inv.items()))
            report.figure(f"scale_{backend}_closed_reviews_per_s", value=len(res.review_ids) / res.wall_s,
                          limit=200.0 if backend == "sqlite" else 150.0, higher_is_better=True, unit="/s")
            broken = sum(inv[k] for k in ("versions_over_k", "duplicate_reviewer_per_version",
                                          "self_reviews_of_own_edit", "lost_submissions", "duplicate_review_ids"))
            report.note(f"invariant violations (must be 0): {broken}")
            failed |= bool(broken or res.errors)
        if "read" in phases:
            found = read_models(engine, project_id=pid, base_url=base, admin_token=seeded["admin_token"],
                                which=set(args.read.split(",")))
            status = found["status"][1]
            report.note(f"-- read models over {status['items']:,} items, {status['reviews']:,} reviews")
            for name, (seconds, value) in found.items():
                if name == "dashboard" and value.status_code != 200:
                    report.note(f"dashboard answered {value.status_code}")
                    failed = True
                report.figure(f"scale_{backend}_{name}_seconds", value=seconds, limit=1.0, higher_is_better=False,
                              unit="s")
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=60)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
