"""FakeOpenAIServer itself: the tool every contract test and benchmark stands on."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from clinreason.llm.base import LLMParams
from clinreason.llm.openai_backend import OpenAIBackend
from clinreason.testing.fake_server import FakeOpenAIServer, FaultPlan

CHAT = {"model": "m", "messages": [{"role": "user", "content": "Q?\nGold answer: D"}]}


def test_runs_in_a_thread_for_synchronous_callers() -> None:
    with FakeOpenAIServer.running_in_thread(include_reasoning=True) as server:
        answer = httpx.post(f"{server.base_url}/chat/completions", json=CHAT, timeout=5).json()
        models = httpx.get(f"{server.base_url}/models", timeout=5).json()
    message = answer["choices"][0]["message"]
    assert message["content"].endswith("Final answer: D") and message["reasoning_content"]
    assert answer["usage"]["total_tokens"] == answer["usage"]["prompt_tokens"] + answer["usage"][
        "completion_tokens"]
    assert models["data"][0]["id"] == "fake-model"
    with pytest.raises(httpx.ConnectError):  # stopped on leaving the block
        httpx.post(f"{server.base_url}/chat/completions", json=CHAT, timeout=5)


def test_keep_alive_serves_many_requests_on_one_connection() -> None:
    with FakeOpenAIServer.running_in_thread() as server, httpx.Client(timeout=5) as client:
        statuses = [client.post(f"{server.base_url}/chat/completions", json=CHAT).status_code
                    for _ in range(20)]
    assert statuses == [200] * 20


def test_unknown_route_and_bad_body() -> None:
    with FakeOpenAIServer.running_in_thread() as server:
        assert httpx.get(f"{server.base_url}/nothing", timeout=5).status_code == 404
        bad = httpx.post(f"{server.base_url}/chat/completions", content=b"{not json", timeout=5)
        assert bad.status_code == 400


def test_random_fault_plan_is_reproducible_and_roughly_at_rate() -> None:
    def draw(seed: int) -> list[str | None]:
        server = FakeOpenAIServer(fault_plan=FaultPlan(error_500=0.2, malformed=0.1, seed=seed))
        return [server._next_fault() for _ in range(2000)]

    first = draw(3)
    assert first == draw(3) and first != draw(4)
    assert 0.15 < first.count("error_500") / 2000 < 0.25
    assert 0.06 < first.count("malformed") / 2000 < 0.14
    assert first.count("timeout") == 0


def test_fault_plan_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        FaultPlan(error_500=0.7, error_429=0.7)
    with pytest.raises(ValueError):
        FaultPlan(scripted=["explode"])
    with pytest.raises(ValueError):
        FakeOpenAIServer().inject("explode")


async def test_scripted_faults_come_first_then_the_rates(start_server) -> None:
    server = await start_server(fault_plan=FaultPlan(scripted=["error_500", "ok", "error_429"]))
    server.inject("error_500")
    async with httpx.AsyncClient(timeout=5) as client:
        statuses = [(await client.post(f"{server.base_url}/chat/completions", json=CHAT)).status_code
                    for _ in range(5)]
    assert statuses == [500, 200, 429, 500, 200]
    assert server.fault_counts() == {"error_500": 2, "error_429": 1, "ok": 2}


async def test_down_until_passes(start_server) -> None:
    """Down until the given moment, then up again (the moment is moved, not waited for: no wall-clock race)."""
    server = await start_server(fault_plan=FaultPlan(down_until=time.monotonic() + 3600, down_mode="503"))
    async with httpx.AsyncClient(timeout=5) as client:
        first = await client.post(f"{server.base_url}/chat/completions", json=CHAT)
        server.fault_plan.down_until = time.monotonic() - 1
        later = await client.post(f"{server.base_url}/chat/completions", json=CHAT)
    assert (first.status_code, first.headers["retry-after"], later.status_code) == (503, "1", 200)


async def test_stop_releases_a_hanging_request(start_server) -> None:
    server = await start_server(fault_plan=FaultPlan(scripted=["timeout"]))
    async with httpx.AsyncClient(timeout=10) as client:
        pending = asyncio.create_task(client.post(f"{server.base_url}/chat/completions", json=CHAT))
        while not server.requests:
            await asyncio.sleep(0.01)
        started = time.monotonic()
        await server.stop()
        with pytest.raises(httpx.HTTPError):
            await pending
    assert time.monotonic() - started < 2


async def test_sustains_concurrent_clients(start_server) -> None:
    """64 clients at once are all answered, on kept-alive connections (speed is measured in benchmarks/)."""
    server = await start_server()
    backend = OpenAIBackend(server.base_url, "fake-model", timeout=10)
    messages = CHAT["messages"]
    gate = asyncio.Semaphore(64)

    async def one() -> str:
        async with gate:
            return (await backend.complete(messages, LLMParams())).text

    texts = await asyncio.gather(*(one() for _ in range(400)))
    await backend.aclose()
    assert all(text.endswith("Final answer: D") for text in texts)
    assert len(server.requests) == 400


def test_command_line_serves_and_logs(tmp_path) -> None:
    log = tmp_path / "requests.jsonl"
    process = subprocess.Popen(
        [sys.executable, "-m", "clinreason.testing.fake_server", "--port", "0", "--error-500", "1",
         "--log", str(log)],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        banner = process.stdout.readline()
        base_url = banner.rsplit(" ", 1)[-1].strip()
        assert base_url.startswith("http://127.0.0.1:")
        answer = httpx.post(f"{base_url}/chat/completions", json=CHAT,
                            headers={"Idempotency-Key": "k1", "Authorization": "Bearer sk-secret"}, timeout=5)
        assert answer.status_code == 500
    finally:
        process.send_signal(signal.SIGTERM)
        summary, _ = process.communicate(timeout=10)
    assert process.returncode == 0 and "served 1 chat requests" in summary
    record = json.loads(log.read_text().splitlines()[0])
    assert (record["idempotency_key"], record["status"], record["fault"]) == ("k1", 500, "error_500")
    assert "sk-secret" not in log.read_text()


async def test_a_failing_responder_answers_500_instead_of_hanging(start_server) -> None:
    def broken(request: dict) -> str:
        raise KeyError("options")

    server = await start_server(responder=broken)
    async with httpx.AsyncClient(timeout=5) as client:
        answer = await client.post(f"{server.base_url}/chat/completions", json=CHAT)
    assert answer.status_code == 500 and "KeyError" in answer.text
    assert server.requests[0]["fault"] == "responder_error"
