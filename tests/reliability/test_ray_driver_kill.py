"""`generate --engine ray`: the driver SIGKILLed mid-run and started again loses nothing and drafts no
item twice; what it asks again is bounded by the wave it had handed to Ray.

On SQLite and PostgreSQL (the `database` fixture of this folder). The driver runs as a real process (`python -m clinreason.cli`) joining this module's local Ray through
`--ray-address`, against the fake server in a process of its own. Skips when Ray is not installed, except
under CI=true."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
from sqlalchemy import create_engine, func, select

from clinreason.store.tables import rationales
from clinreason.testing.helpers import cli, cli_env, fake_server_process, read_request_log, write_synthetic_bank


@pytest.fixture(scope="module")
def ray_address():
    if importlib.util.find_spec("ray") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but ray is not importable: the dev extra installs ray[data] for the Ray engine's tests")
        pytest.skip("ray is not installed (pip install 'clinreason[cluster]'): the Ray engine's tests need it")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def _stored(url: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(rationales)).scalar_one()
    finally:
        engine.dispose()


def test_a_killed_driver_loses_nothing_and_drafts_nothing_twice(ray_address, database, tmp_path):
    _, db_url = database
    n, wave = 150, 50
    state = tmp_path / "state"  # where a server database's journal lives (XDG_STATE_HOME)

    def env_for(base_url):
        return {**cli_env(tmp_path / "unused.db", base_url, RAY_USAGE_STATS_ENABLED="0", XDG_STATE_HOME=str(state)),
                "CLINREASON_DB": db_url}

    (tmp_path / "clinreason.toml").write_text(f"[llm]\nconcurrency = 16\n\n[generate]\nray_wave = {wave}\n")
    assert cli(["init"], env_for(None), tmp_path).returncode == 0
    write_synthetic_bank(tmp_path / "bank.jsonl", n)
    assert cli(["import", "bank.jsonl"], env_for(None), tmp_path).returncode == 0
    log = tmp_path / "requests.jsonl"
    with fake_server_process(log=log, latency=0.5) as url:
        env = env_for(url)
        command = [sys.executable, "-m", "clinreason.cli", "generate", "--engine", "ray", "--ray-address", ray_address]
        driver = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 240
        # killed inside the second wave: its first answers stored, the others in Ray's hands
        while _stored(db_url) <= wave and driver.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)  # waiting for progress to kill into, not for an outcome
        assert driver.poll() is None, "the driver ended before it could be killed: " + driver.stderr.read().decode()[-2000:]
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        at_kill = _stored(db_url)
        assert 0 < at_kill < n
        final = subprocess.run([*command, "--json"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=400)
        assert final.returncode == 0, final.stderr[-3000:]
    report = json.loads(final.stdout)
    status = json.loads(cli(["status", "--json"], env_for(None), tmp_path).stdout)
    assert status["items"] == n and status["rationales"] == n  # 0 lost, 0 duplicate versions
    assert status["by_state"]["screening"] == n
    per_key = Counter(r["idempotency_key"] for r in read_request_log(log) if r["path"].endswith("/chat/completions"))
    assert len(per_key) == n and set(per_key) <= {f"{k.split(':')[0]}:v1" for k in per_key}
    repeated = sum(c - 1 for c in per_key.values() if c > 1)
    # asked again: only what Ray held for the killed driver (its wave, less what it had journaled)
    assert repeated <= wave, f"{repeated} requests sent twice; the killed driver had at most {wave} in Ray's hands"
    assert report["stored"] + report["recovered"] + at_kill >= n
    print(f"stored before the kill {at_kill}, recovered from the journal {report['recovered']}, asked twice {repeated}")
    assert not list(tmp_path.rglob("*.responses/*.jsonl")) and not list(state.rglob("*.jsonl"))  # all stored
