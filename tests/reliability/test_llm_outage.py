"""Drafting through LLM endpoint outages, against the fake server in another process over real sockets:
an endpoint that is down (503 on every request, or not even listening: connection refused) for a while and
then back, a storm of 429s with Retry-After, and bodies cut short or garbled. The run slows down, stops
hammering the dead endpoint (the circuit breaker), recovers by itself once the endpoint is back, and ends
every item drafted or `failed` with its reason stored; nothing crashes.

The outage lasts 6 s under `make test`; with CLINREASON_SOAK=1 (`make soak`) it lasts the 60 s of issue #7.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections import defaultdict
from pathlib import Path

import pytest

from clinreason.testing.helpers import cli, cli_env, fake_server_process, read_request_log, write_synthetic_bank

SOAK = os.environ.get("CLINREASON_SOAK") == "1"
OUTAGE = 60.0 if SOAK else 6.0
STORM = 20.0 if SOAK else 4.0
CONCURRENCY, MAX_ATTEMPTS = 8, 5
#: the default breaker of ResilientBackend: opens after max(5, concurrency) failures, cools down 5 s
THRESHOLD, COOLDOWN = max(5, CONCURRENCY), 5.0


def _project(tmp_path: Path, n: int) -> tuple[Path, Path]:
    db = tmp_path / "c.db"
    env = cli_env(db, None)
    (tmp_path / "clinreason.toml").write_text(
        f"[llm]\ntimeout = 2.0\nmax_attempts = {MAX_ATTEMPTS}\nconcurrency = {CONCURRENCY}\n")
    assert cli(["init"], env, tmp_path).returncode == 0
    write_synthetic_bank(tmp_path / "bank.jsonl", n, seed=9)
    assert cli(["import", "bank.jsonl"], env, tmp_path).returncode == 0
    return tmp_path, db


def _generate(tmp_path: Path, db: Path, fake_server_flags: list[str]) -> tuple[dict, dict, list[dict], float]:
    """Run `clinreason generate` against a fake server started with these flags; returns the run's report,
    `status --json` afterwards, the server's request log and the wall time."""
    log = tmp_path / "requests.jsonl"
    with fake_server_process(log=log, latency=0.02, extra=fake_server_flags) as url:
        started = time.monotonic()
        out = cli(["generate", "--json", "--concurrency", str(CONCURRENCY)], cli_env(db, url), tmp_path,
                  timeout=600)
        wall = time.monotonic() - started
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr[-2000:]
    status = cli(["status", "--json"], cli_env(db, None), tmp_path)
    assert status.returncode == 0, status.stderr
    return json.loads(out.stdout), json.loads(status.stdout), read_request_log(log), wall


def _every_item_drafted_or_failed_with_a_reason(status: dict, report: dict, n: int) -> tuple[int, int]:
    by_state = status["by_state"]
    drafted, failed = by_state.get("screening", 0), by_state.get("failed", 0)
    assert drafted + failed == n, by_state
    assert (drafted, failed) == (report["stored"], report["failed"])
    assert sum(status["failures"].values()) == failed
    assert all(reason.startswith("LLM request failed") for reason in status["failures"]), status["failures"]
    return drafted, failed


def test_an_endpoint_down_then_back_is_not_hammered_and_the_run_recovers(tmp_path):
    """503 on every request for OUTAGE seconds from the start, then healthy. Without a breaker, every item
    in flight would spend all its attempts on the dead endpoint: items × attempts requests. With it, the
    endpoint sees at most one failing wave (THRESHOLD requests to open the circuit, plus those already in
    flight when it opened: CONCURRENCY) and then one probe per cooldown."""
    n = 60 if SOAK else 40
    cwd, db = _project(tmp_path, n)
    report, status, log, wall = _generate(cwd, db, ["--down-for", str(OUTAGE), "--down-mode", "503",
                                                    "--retry-after", "1"])
    drafted, failed = _every_item_drafted_or_failed_with_a_reason(status, report, n)
    during = [r for r in log if r["fault"] == "down"]
    bound = THRESHOLD + CONCURRENCY + math.ceil(OUTAGE / COOLDOWN) + 1
    print(f"outage {OUTAGE:g} s: {len(during)} requests reached the dead endpoint (bound {bound}, without a breaker "
          f"up to {n * MAX_ATTEMPTS}); drafted {drafted}, failed {failed}, wall {wall:.1f} s")
    assert during, "the outage was not exercised"
    assert len(during) <= bound, f"{len(during)} requests hit the dead endpoint; the breaker allows {bound}"
    # recovery by itself: once the endpoint is back, drafting resumes in the same run
    after = [r for r in log if r["fault"] is None and r["status"] == 200]
    assert drafted >= 1 and len(after) >= drafted
    assert min(r["monotonic"] for r in after) > max(r["monotonic"] for r in during)
    assert wall >= OUTAGE  # it waited the outage out rather than failing everything at once
    assert failed == 0, "an outage shorter than [llm] outage_patience (300 s) must cost no item"


def test_connection_refused_mid_run_then_back_recovers_by_itself(tmp_path):
    """After the first 12 answers the endpoint stops listening (connection refused, as a stopped inference
    server) for OUTAGE seconds, then listens again: the run rides it out and drafts the rest by itself."""
    n = 60 if SOAK else 40
    cwd, db = _project(tmp_path, n)
    report, status, log, wall = _generate(cwd, db, ["--down-for", str(OUTAGE), "--down-after-requests", "12",
                                                    "--down-mode", "refuse", "--latency", "0.05"])
    drafted, failed = _every_item_drafted_or_failed_with_a_reason(status, report, n)
    served = sorted(r["monotonic"] for r in log if r["status"] == 200)
    gaps = [b - a for a, b in zip(served, served[1:])]
    cut = gaps.index(max(gaps))
    print(f"refused for {OUTAGE:g} s after 12 answers: drafted {drafted}, failed {failed}, longest gap between "
          f"answers {max(gaps):.1f} s, {len(served) - cut - 1} answers after it, wall {wall:.1f} s, "
          f"errors {report['errors']}")
    assert max(gaps) >= OUTAGE * 0.9, "the endpoint was never unreachable"
    before_gap = sum(r["monotonic"] < served[cut] + max(gaps) / 2 for r in log)  # none arrive while refused
    assert before_gap >= 12, f"the outage began after {before_gap} requests, before the 12th"
    assert len(served) - cut - 1 >= 1, "nothing was drafted once the endpoint listened again"
    # While the circuit is open (and when its probe fails) a request waits instead of spending attempts,
    # up to [llm] outage_patience (300 s): an outage shorter than that costs no item.
    assert failed == 0, failed


def test_a_429_storm_slows_the_run_down_and_every_item_still_gets_drafted(tmp_path):
    """Every request is answered 429 with Retry-After: 1 for STORM seconds. The client honours Retry-After
    (no item asks again sooner), the breaker spares the endpoint a flood, and once the storm passes every
    item is drafted — none is lost to a storm shorter than the retry budget."""
    n = 40
    cwd, db = _project(tmp_path, n)
    report, status, log, wall = _generate(cwd, db, ["--storm-429", str(STORM), "--retry-after", "1"])
    drafted, failed = _every_item_drafted_or_failed_with_a_reason(status, report, n)
    storm = [r for r in log if r["fault"] == "storm_429"]
    by_key: dict[str, list[float]] = defaultdict(list)
    for r in log:
        by_key[r["idempotency_key"]].append(r["monotonic"])
    too_soon = [key for key, times in by_key.items()
                for a, b in zip(times, times[1:]) if key in {s["idempotency_key"] for s in storm} and b - a < 1.0]
    bound = THRESHOLD + CONCURRENCY + math.ceil(STORM / COOLDOWN) + 1
    print(f"429 storm {STORM:g} s: {len(storm)} requests rate-limited (bound {bound}), drafted {drafted}, "
          f"failed {failed}, wall {wall:.1f} s")
    assert storm and len(storm) <= bound
    assert not too_soon, f"retried sooner than Retry-After: {too_soon[:3]}"
    assert wall >= STORM
    assert failed == 0  # a storm shorter than the outage patience costs no item


@pytest.mark.parametrize("flags", [["--truncated", "0.3"], ["--malformed", "0.3"],
                                   ["--truncated", "0.15", "--malformed", "0.15", "--timeout", "0.05"]],
                         ids=["cut-bodies", "invalid-json", "mixed"])
def test_cut_or_garbled_answers_are_retried_and_the_run_completes(tmp_path, flags):
    """Bodies cut mid-JSON (Content-Length promises more than arrives), complete bodies that are not valid
    JSON, and requests that hang past the timeout: each is retried; every item ends drafted or failed with
    its reason, and with five attempts against a 30 % fault rate nearly all are drafted."""
    n = 40
    cwd, db = _project(tmp_path, n)
    report, status, log, wall = _generate(cwd, db, [*flags, "--seed", "4"])
    drafted, failed = _every_item_drafted_or_failed_with_a_reason(status, report, n)
    faults = defaultdict(int)
    for r in log:
        faults[r["fault"] or "ok"] += 1
    print(f"{' '.join(flags)}: faults {dict(faults)}, drafted {drafted}, failed {failed}, wall {wall:.1f} s")
    assert faults["truncated"] + faults["malformed"] + faults["timeout"] >= 5
    assert drafted >= n * 0.9
