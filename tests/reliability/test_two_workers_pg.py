"""Two `clinreason run` workers on one PostgreSQL database share the work: every item drafted exactly
once (the fake server's request log proves it) and screened once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter

from sqlalchemy import create_engine, text

from clinreason.testing.helpers import cli, fake_server_process, read_request_log, write_synthetic_bank


def test_two_workers_process_each_item_exactly_once(pg_url, tmp_path):
    n = 1000
    env = {**os.environ, "CLINREASON_DB": pg_url, "HF_HUB_OFFLINE": "1"}
    assert cli(["init"], env, tmp_path).returncode == 0
    write_synthetic_bank(tmp_path / "bank.jsonl", n, seed=21)
    assert cli(["import", "bank.jsonl"], env, tmp_path).returncode == 0
    log = tmp_path / "requests.jsonl"
    with fake_server_process(log=log, latency=0.02) as url:
        wenv = {**env, "CLINREASON_LLM_BASE_URL": url, "CLINREASON_LLM_MODEL": "fake-model"}
        workers = [subprocess.Popen([sys.executable, "-m", "clinreason.cli", "run", "--once", "--concurrency", "16",
                                     "--poll", "0.2"], env=wenv, cwd=tmp_path, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True) for _ in range(2)]
        outs = [w.communicate(timeout=600) for w in workers]
    assert all(w.returncode == 0 for w in workers), [o[1][-2000:] for o in outs]
    drafted = [int(o[0].split("drafted ")[1].split(",")[0]) for o in outs]
    assert sum(drafted) == n and all(d > 0 for d in drafted), drafted  # both did real work
    per_key = Counter(r["idempotency_key"] for r in read_request_log(log))
    assert len(per_key) == n and set(per_key.values()) == {1}
    status = json.loads(cli(["status", "--json"], env, tmp_path).stdout)
    assert status["rationales"] == n and status["by_state"]["in_review"] == n
    engine = create_engine(pg_url.replace("postgresql+psycopg", "postgresql+psycopg"))
    with engine.connect() as conn:
        screened_twice = conn.execute(text(
            "select count(*) from (select rationale_id, name from checks group by rationale_id, name "
            "having count(*) > 1) t")).scalar()
    engine.dispose()
    assert screened_twice == 0
