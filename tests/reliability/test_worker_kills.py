"""The worker (`clinreason run`) against a fake OpenAI-compatible server in another process, killed with
SIGKILL at random points of drafting, screening and automatic regeneration, and restarted until the work
is done: no item lost, no rationale version stored twice, every version screened once, and no paid
request repeated for the same idempotency key unless it was in flight when the worker died.

Every fifth question is in Chinese; the fake server drafts in English, so those drafts fail the blocking
`language` check and are regenerated automatically (`max_auto_retries` = 2) before they reach the
experts, flagged. Short: 150 items and 6 kills; `make soak`: 1,000 items and 20 kills. When the workers finish
everything before all the kills have landed (a fast machine), another batch of as many items is imported
and the kills go on: the count of kills never depends on the machine's speed."""

from __future__ import annotations

import random
import signal
import socket
import subprocess
import sys
import time
from collections import Counter, defaultdict

import pytest
from reliability.scenario import process_env, reader, record_figures, sized
from sqlalchemy import func, select

from clinreason.store import common as store_common
from clinreason.store.tables import checks, events, items, rationales
from clinreason.testing.helpers import cli, fake_server_process, read_request_log, write_bilingual_bank

pytestmark = pytest.mark.soak

#: the phase a kill aims at -> the state its items are claimed in while the worker is in it
PHASES = {"drafting": "generating", "screening": "screening", "regeneration": "regenerating"}
STATE_PHASE = {state: phase for phase, state in PHASES.items()}
MAX_AUTO_RETRIES = 2


def _live_claims(engine, worker: str) -> dict[str, set[str]]:
    """Items `worker` holds a live claim on, by state."""
    with engine.connect() as conn:
        rows = conn.execute(select(items.c.state, items.c.id).where(
            items.c.claimed_by == worker, items.c.claimed_until > store_common.now())).all()
    found: dict[str, set[str]] = defaultdict(set)
    for state, item_id in rows:
        found[state].add(item_id)
    return found


def _wait_for_phase(engine, proc: subprocess.Popen, worker: str, state: str, timeout: float) -> bool:
    """Poll until the worker holds claims in `state`; False if it exits (work done) or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if _live_claims(engine, worker).get(state):
            return True
        time.sleep(0.005)
    return False


def _start_worker(env, cwd, concurrency: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "clinreason.cli", "run", "--once", "--concurrency",
                             str(concurrency), "--poll", "0.2"], env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def test_worker_killed_at_random_points_of_every_phase_loses_and_repeats_nothing(database, tmp_path):
    backend, url = database
    n, n_kills = sized(150, 1000), sized(6, 20)
    concurrency, seed = sized(8, 16), sized(17, 23)
    rng = random.Random(seed)
    env = process_env(url)
    (tmp_path / "clinreason.toml").write_text(f"[generate]\nmax_auto_retries = {MAX_AUTO_RETRIES}\n")
    assert cli(["init"], env, tmp_path).returncode == 0
    batches = 0

    def import_batch() -> None:
        # a fresh batch of n questions (other words, so other ids); the first before any worker starts,
        # more only when the workers finished everything before the kills could all land
        nonlocal batches
        bank = tmp_path / f"bank-{batches}.jsonl"
        write_bilingual_bank(bank, n, zh_every=5, seed=seed + 1000 * batches)
        imported = cli(["import", bank.name], env, tmp_path)
        assert imported.returncode == 0, imported.stderr
        batches += 1

    import_batch()
    engine = reader(url)
    log = tmp_path / "requests.jsonl"
    host = socket.gethostname()
    # drafting is the longest phase and regeneration starts only once drafts were screened: aim in this order
    order = ["drafting", "screening", "regeneration"]
    jitter = {"drafting": 0.6, "screening": 0.03, "regeneration": 0.3}
    kills: list[dict] = []
    attempts = 0
    with fake_server_process(log=log, latency=0.1) as base_url:
        wenv = process_env(url, base_url)
        confirmed = lambda: {phase for k in kills for phase in k["phases"]}  # noqa: E731
        while (len(kills) < n_kills or confirmed() != set(PHASES)) and attempts < 3 * n_kills + 6:
            target = order[attempts % 3] if len(kills) < n_kills else next(
                p for p in order if p not in confirmed())
            attempts += 1
            proc = _start_worker(wenv, tmp_path, concurrency)
            worker = f"{host}:{proc.pid}"
            if not _wait_for_phase(engine, proc, worker, PHASES[target], timeout=60):
                if proc.poll() is None:
                    proc.kill()
                proc.wait()
                if proc.returncode == 0 and not _work_left(engine):
                    import_batch()  # the work ran out before this kill could land: give the next run more
                continue
            time.sleep(rng.uniform(0, jitter[target]))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            held = _live_claims(engine, worker)
            kills.append({"aimed_at": target, "phases": sorted(STATE_PHASE[s] for s in held if s in STATE_PHASE),
                          "llm_items": held.get("generating", set()) | held.get("regenerating", set())})
        final = subprocess.run([sys.executable, "-m", "clinreason.cli", "run", "--once", "--concurrency",
                                str(concurrency), "--poll", "0.2"], env=wenv, cwd=tmp_path, capture_output=True,
                               text=True, timeout=600)
    assert final.returncode == 0, final.stderr[-3000:]
    phases_hit = Counter(p for k in kills for p in k["phases"])
    assert len(kills) >= n_kills and set(phases_hit) == set(PHASES), (len(kills), phases_hit, batches)
    total = n * batches

    with engine.connect() as conn:
        item_rows = conn.execute(select(items.c.id, items.c.language, items.c.state, items.c.auto_retries,
                                        items.c.flag_reason, items.c.fail_reason, items.c.claimed_by)).all()
        versions = conn.execute(select(rationales.c.id, rationales.c.item_id, rationales.c.version,
                                       rationales.c.idempotency_key)).all()
        check_counts = conn.execute(select(checks.c.rationale_id, checks.c.name, func.count())
                                    .group_by(checks.c.rationale_id, checks.c.name)).all()
        transitions = conn.execute(select(events.c.item_id, events.c.before, events.c.after)
                                   .where(events.c.kind == "item.transition")).all()
    engine.dispose()

    # no lost item: every one went through screening into the review queue
    assert len(item_rows) == total
    states = Counter(r.state for r in item_rows)
    assert states == {"in_review": total}, states
    zh = {r.id for r in item_rows if r.language == "zh"}
    assert len(zh) == batches * (n // 5)
    for r in item_rows:
        assert r.auto_retries == (MAX_AUTO_RETRIES if r.id in zh else 0), r
        assert (r.flag_reason is not None) == (r.id in zh), r  # still failing the language check: flagged
    # no duplicate version, none missing: v1..vk, k = 1 + automatic regenerations
    per_item = defaultdict(list)
    for v in versions:
        per_item[v.item_id].append(v.version)
    duplicates = sum(c - 1 for c in Counter((v.item_id, v.version) for v in versions).values())
    assert duplicates == 0
    for r in item_rows:
        expected = 1 + (MAX_AUTO_RETRIES if r.id in zh else 0)
        assert sorted(per_item[r.id]) == list(range(1, expected + 1)), (r.id, per_item[r.id])
    # every version screened exactly once: one row per check, no version unscreened
    assert all(c == 1 for _, _, c in check_counts), [row for row in check_counts if row[2] > 1][:5]
    assert {rid for rid, _, _ in check_counts} == {v.id for v in versions}
    # exactly one current draft per item: it entered the review queue once, after its last screening
    moves = Counter((t.item_id, (t.before or {}).get("state"), (t.after or {}).get("state")) for t in transitions)
    for r in item_rows:
        assert moves[(r.id, "screening", "in_review")] == 1, r.id
        assert moves[(r.id, "screening", "regenerating")] == r.auto_retries, r.id
    # requests: one key per stored version; a key sent twice only when its item was in flight at a kill
    chat = [rec for rec in read_request_log(log) if rec["path"].endswith("/chat/completions")]
    per_key = Counter(rec["idempotency_key"] for rec in chat)
    assert set(per_key) == {v.idempotency_key for v in versions}
    repeated = {key: c - 1 for key, c in per_key.items() if c > 1}
    in_flight_items = set().union(*(k["llm_items"] for k in kills))
    assert {key.rsplit(":v", 1)[0] for key in repeated} <= in_flight_items
    bound = sum(min(len(k["llm_items"]), concurrency) for k in kills)
    assert sum(repeated.values()) <= bound, f"{sum(repeated.values())} repeats, at most {bound} were in flight"

    record_figures(f"worker-kills-{backend}", {
        "command": "clinreason run --once (killed with SIGKILL, restarted)", "backend": backend,
        "runs": attempts + 1, "kills": len(kills), "kills_by_phase": dict(phases_hit), "items": total,
        "batches": batches,
        "regenerated_items": len(zh), "versions": len(versions), "requests": len(chat),
        "repeated_requests": sum(repeated.values()), "repeat_bound_in_flight": bound, "lost": 0, "duplicates": duplicates,
    })


def _work_left(engine) -> bool:
    with engine.connect() as conn:
        return bool(conn.execute(select(func.count()).where(
            items.c.state.in_(["imported", "generating", "screening", "regenerating"]))).scalar_one())


def test_screening_killed_mid_batch_is_finished_by_the_next_run(database, tmp_path):
    """`clinreason screen` killed while it holds a batch: the next `clinreason screen` on this host takes
    the dead process's claims over at once (not after the 15-minute lease) and screens every draft once."""
    backend, url = database
    n = sized(300, 2000)
    env = process_env(url)
    assert cli(["init"], env, tmp_path).returncode == 0
    write_bilingual_bank(tmp_path / "bank.jsonl", n, zh_every=0, seed=3)
    assert cli(["import", "bank.jsonl"], env, tmp_path).returncode == 0
    with fake_server_process(log=tmp_path / "requests.jsonl") as base_url:
        drafted = cli(["generate", "--concurrency", "16"], process_env(url, base_url), tmp_path, timeout=300)
    assert drafted.returncode == 0, drafted.stderr
    engine = reader(url)
    proc = subprocess.Popen([sys.executable, "-m", "clinreason.cli", "screen"], env=env, cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    worker = f"{socket.gethostname()}:{proc.pid}"
    assert _wait_for_phase(engine, proc, worker, "screening", timeout=60), "screening ended before the kill"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    held = len(_live_claims(engine, worker).get("screening", ()))
    assert held > 0
    again = cli(["screen", "--json"], env, tmp_path, timeout=300)
    assert again.returncode == 0, again.stderr
    with engine.connect() as conn:
        states = Counter(conn.execute(select(items.c.state)).scalars())
        twice = conn.execute(select(func.count()).select_from(
            select(checks.c.rationale_id).group_by(checks.c.rationale_id, checks.c.name)
            .having(func.count() > 1).subquery())).scalar_one()
    engine.dispose()
    assert states == {"in_review": n}, f"{states}: the killed run's {held} claimed drafts were left behind"
    assert twice == 0
    record_figures(f"screen-kill-{backend}", {"command": "clinreason screen (killed with SIGKILL, rerun)",
                                              "backend": backend, "runs": 2, "kills": 1, "items": n,
                                              "claimed_at_kill": held, "lost": 0, "duplicates": twice})
