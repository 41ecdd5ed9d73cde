"""The LLM API key lives in the environment only: never in the database, the request log's error
texts, or anything the CLI prints; and neither it nor a user's password, bearer token or session cookie is
ever written to a log — the web server's, the worker's, or the LLM layer's at DEBUG level."""

from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import select

from clinreason.testing.helpers import cli, cli_env, fake_server_process, read_request_log, write_synthetic_bank

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


# --- logs: the web server, the worker, the LLM layer ------------------------------------------------------

PASSWORD = "correct horse battery staple 9"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until(check, timeout: float, what: str):
    import time

    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = check()
        except (OSError, httpx.TransportError):
            result = None
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_the_web_server_and_its_worker_never_log_keys_passwords_tokens_or_cookies(tmp_path):
    """`clinreason serve` (web app + in-process worker) as a real process: an admin signs in by form and by
    API, calls the API with the bearer token, hits error paths (404, 422, 401, a wrong password), and the
    worker drafts against an LLM endpoint that refuses the key and echoes the request headers back in its
    error body. Then everything the process printed is searched for every secret."""
    import subprocess
    import sys

    import httpx

    db = tmp_path / "c.db"
    write_synthetic_bank(tmp_path / "bank.jsonl", 6)
    port = _free_port()
    with fake_server_process(log=tmp_path / "llm.jsonl", extra=["--echo-headers-status", "401"]) as url:
        env = cli_env(db, url, CLINREASON_LLM_API_KEY=SECRET)
        assert cli(["init"], env, tmp_path).returncode == 0
        assert cli(["import", "bank.jsonl"], env, tmp_path).returncode == 0
        added = cli(["users", "add", "root", "--role", "admin", "--password-stdin"], env, tmp_path,
                    input=PASSWORD + "\n")
        assert added.returncode == 0, added.stderr
        server = subprocess.Popen([sys.executable, "-m", "clinreason.cli", "serve", "--port", str(port), "--worker"],
                                  env={**env, "PYTHONUNBUFFERED": "1"}, cwd=tmp_path, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True)
        secrets: list[str] = [SECRET, PASSWORD]
        try:
            base = f"http://127.0.0.1:{port}"
            with httpx.Client(base_url=base, timeout=10, follow_redirects=True) as web:
                _wait_until(lambda: web.get("/login").status_code == 200, 60, "the server to start")
                token = web.post("/api/login", json={"username": "root", "password": PASSWORD}).json()["token"]
                secrets.append(token)
                auth = {"Authorization": f"Bearer {token}"}
                assert web.get("/api/me", headers=auth).status_code == 200
                assert web.get("/api/items/does-not-exist", headers=auth).status_code == 404
                assert web.post("/api/assignments/x/review", headers=auth, json={"verdict": 5}).status_code in (
                    403, 404, 422)
                assert web.get("/api/me", headers={"Authorization": f"Bearer {token}x"}).status_code == 401
                assert web.post("/api/login", json={"username": "root", "password": PASSWORD + "!"}).status_code == 401
                page = web.get("/login")
                csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
                r = web.post("/login", data={"username": "root", "password": PASSWORD, "csrf_token": csrf})
                session = web.cookies.get("clinreason_session")
                assert r.status_code == 200 and session
                secrets.append(session)
                assert web.get("/dashboard").status_code == 200
                # the worker meets the endpoint that refuses the key: every item ends `failed`
                _wait_until(lambda: web.get("/api/status", headers=auth).json()["by_state"].get("failed") == 6,
                            90, "the worker to fail all six items")
                status = web.get("/api/status", headers=auth).json()
        finally:
            server.terminate()
            output, _ = server.communicate(timeout=20)
    assert "GET /api/me" in output, "the access log was not captured"  # we did look at the right stream
    assert all("LLM request failed" in reason and "HTTP 401" in reason for reason in status["failures"])
    for secret in secrets:
        assert secret not in output, f"a secret ({secret[:6]}…) was written to the server's log"
    echoed = [r for r in read_request_log(tmp_path / "llm.jsonl") if r["fault"] == "echo_headers"]
    assert echoed and all(r["authorized"] for r in echoed)  # the key was sent, and echoed back to us
    for path in tmp_path.iterdir():
        if path.is_file() and path.suffix != ".jsonl":
            assert SECRET.encode() not in path.read_bytes(), path.name


@pytest.mark.parametrize("status", [401, 500])
def test_llm_errors_that_echo_the_key_are_redacted_even_at_debug_level(engine, project, tmp_path, caplog, status):
    """Drafting in-process with every logger at DEBUG (aiohttp, asyncio, the resilience layer, SQLAlchemy):
    an endpoint that echoes the Authorization header into its error body (401: given up at once; 500:
    retried, each retry logged) leaks the key neither into a log record nor into the stored failure."""
    import asyncio
    import logging

    from clinreason.config import ProjectConfig
    from clinreason.llm.factory import make_backend
    from clinreason.stages.ingest import import_path
    from clinreason.stages.runner import DRAFT, run_llm_stage
    from clinreason.store.tables import items
    from clinreason.testing.fake_server import FakeOpenAIServer, FaultPlan

    import_path(engine, project="default", path=write_synthetic_bank(tmp_path / "bank.jsonl", 4), fmt="jsonl")
    caplog.set_level(logging.DEBUG)
    with FakeOpenAIServer.running_in_thread(fault_plan=FaultPlan(echo_headers_status=status)) as server:
        backend = make_backend(backend="openai", base_url=server.base_url, model="fake-model", api_key=SECRET,
                               max_attempts=3, concurrency=2, outage_patience=0)  # fail fast: no outage wait

        async def draft():
            try:
                return await run_llm_stage(engine, project=project, pc=ProjectConfig(), backend=backend, kind=DRAFT)
            finally:
                await backend.aclose()

        report = asyncio.run(draft())
    assert report.failed == 4 and server.requests and all(r["authorized"] for r in server.requests)
    logged = "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    assert "attempt" in logged or status == 401  # the retries were logged, so we searched real log lines
    assert SECRET not in logged
    with engine.connect() as conn:
        reasons = [r for r in conn.execute(select(items.c.fail_reason)).scalars()]
    assert len(reasons) == 4 and all(SECRET not in r for r in reasons), reasons
    assert "Bearer ***" in logged + "".join(reasons)  # the echo reached us, redacted


def test_a_key_cut_by_the_error_snippet_is_not_half_shown():
    """The error message keeps the first 300 characters of the body: a key that straddles the cut must be
    redacted before cutting, or its first half would be shown."""
    from clinreason.llm.openai_backend import _BODY_SNIPPET, OpenAIBackend, _Response

    backend = OpenAIBackend("http://127.0.0.1:9/v1", "m", api_key=SECRET)
    for offset in range(_BODY_SNIPPET - len(SECRET), _BODY_SNIPPET + 1):
        body = "x" * offset + SECRET + " trailing"
        for message in (str(backend._status_error(_Response(401, body, {}))),
                        _parse_error(backend, _Response(200, body, {}))):
            assert not any(SECRET[:n] in message for n in range(8, len(SECRET) + 1)), (offset, message[-40:])


def _parse_error(backend, response) -> str:
    from clinreason.llm.base import LLMError

    try:
        backend._parse(response)
    except LLMError as exc:
        return str(exc)
    raise AssertionError("a body that is not JSON was parsed")
