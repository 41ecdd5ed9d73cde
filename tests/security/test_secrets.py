"""The LLM API key lives in the environment only: never in the database, the request log's error
texts, or anything the CLI prints."""

from __future__ import annotations

import json

from clinreason.devtools import cli, cli_env, fake_server_process, write_synthetic_bank

SECRET = "sk-test-DO-NOT-LEAK-4f1e2d"


def test_api_key_never_reaches_the_database_or_the_output(tmp_path):
    db = tmp_path / "c.db"
    write_synthetic_bank(tmp_path / "bank.jsonl", 12)
    with fake_server_process(log=tmp_path / "llm.jsonl", latency=0.0,
                             extra=["--error-500", "0.5", "--seed", "2"]) as url:
        env = cli_env(db, url, CLINREASON_LLM_API_KEY=SECRET)
        outputs = [cli(["init"], env, tmp_path), cli(["import", "bank.jsonl"], env, tmp_path),
                   cli(["generate", "--json"], env, tmp_path), cli(["status", "--json"], env, tmp_path)]
    assert all(o.returncode == 0 for o in outputs), [o.stderr for o in outputs]
    printed = "".join(o.stdout + o.stderr for o in outputs)
    assert SECRET not in printed
    for path in tmp_path.iterdir():  # the database (and its WAL), the config file, the request log
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path.name
    log = [json.loads(line) for line in (tmp_path / "llm.jsonl").read_text().splitlines()]
    assert log and all(r["authorized"] for r in log)  # the key was sent, as a header, and only there
