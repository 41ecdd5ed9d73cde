"""Drafting against a fake OpenAI-compatible server in another process, over real sockets: killed
with SIGKILL mid-run and restarted; and under injected faults."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from clinreason.testing.helpers import cli, cli_env, fake_server_process, read_request_log, write_synthetic_bank


@pytest.fixture
def project_dir(tmp_path):
    db = tmp_path / "c.db"
    env = cli_env(db, None)
    assert cli(["init"], env, tmp_path).returncode == 0
    return tmp_path, db


def _status(env, cwd):
    out = cli(["status", "--json"], env, cwd)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_sigkill_at_random_moments_loses_nothing_and_repeats_only_in_flight_requests(project_dir):
    cwd, db = project_dir
    n, concurrency, kills = 300, 16, 3
    write_synthetic_bank(cwd / "bank.jsonl", n)
    assert cli(["import", "bank.jsonl"], cli_env(db, None), cwd).returncode == 0
    log = cwd / "requests.jsonl"
    rng = random.Random(11)
    with fake_server_process(log=log, latency=0.05) as url:
        env = cli_env(db, url)
        for _ in range(kills):
            proc = subprocess.Popen([sys.executable, "-m", "clinreason.cli", "generate", "--concurrency",
                                     str(concurrency)], env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            time.sleep(rng.uniform(1.0, 2.5))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        final = cli(["generate", "--concurrency", str(concurrency)], env, cwd)
        assert final.returncode == 0, final.stderr
    status = _status(cli_env(db, None), cwd)
    assert status["items"] == n and status["rationales"] == n  # exactly one current draft per item
    assert status["by_state"]["screening"] == n
    per_key = Counter(r["idempotency_key"] for r in read_request_log(log) if r["path"].endswith("/chat/completions"))
    assert len(per_key) == n
    repeated = sum(c - 1 for c in per_key.values() if c > 1)
    assert repeated <= kills * concurrency, f"{repeated} requests sent twice, more than were in flight"
    assert not list((cwd / "c.db.responses").glob("*.jsonl"))  # what the killed runs had received is stored


def test_injected_faults_end_every_item_drafted_or_failed_with_a_reason(project_dir):
    cwd, db = project_dir
    n = 120
    write_synthetic_bank(cwd / "bank.jsonl", n, seed=3)
    assert cli(["import", "bank.jsonl"], cli_env(db, None), cwd).returncode == 0
    (cwd / "clinreason.toml").write_text('[llm]\ntimeout = 2.0\nmax_attempts = 3\nconcurrency = 16\n')
    assert cli(["init"], cli_env(db, None), cwd).returncode == 0  # the project's configuration lives in the database
    log = cwd / "requests.jsonl"
    faults = ["--error-500", "0.2", "--error-429", "0.1", "--retry-after", "1", "--timeout", "0.05",
              "--malformed", "0.05", "--seed", "5"]
    with fake_server_process(log=log, latency=0.01, extra=faults) as url:
        out = cli(["generate", "--json"], cli_env(db, url), cwd, timeout=300)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    status = _status(cli_env(db, None), cwd)
    drafted, failed = status["by_state"]["screening"], status["by_state"]["failed"]
    assert drafted + failed == n and drafted == report["stored"] and failed == report["failed"]
    assert drafted > n * 0.8  # three attempts beat a 40 % fault rate for most items
    assert sum(status["failures"].values()) == failed and all("LLM request failed" in k for k in status["failures"])
    seen = Counter(r.get("fault") or "ok" for r in read_request_log(log))
    assert seen["error_500"] and seen["error_429"] and seen["timeout"] and seen["malformed"]
    human = cli(["status"], cli_env(db, None), cwd).stdout
    if failed:
        assert "failed:" in human
