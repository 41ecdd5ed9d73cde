"""OpenAIBackend against FakeOpenAIServer over real HTTP on 127.0.0.1: the wire contract and its failures."""

from __future__ import annotations

import time

import pytest

from clinreason.llm.base import LLMError, LLMParams
from clinreason.llm.openai_backend import OpenAIBackend
from clinreason.llm.resilience import CircuitBreaker, ResilientBackend
from clinreason.testing.fake_server import FaultPlan, chat_response

SECRET = "sk-test-do-not-leak-0123456789"
SCHEMA = {"type": "object", "properties": {"steps": {"type": "array"}, "final_answer": {"type": "string"}}}


@pytest.fixture
async def connect():
    """Make OpenAIBackends for a server; every one is closed at teardown."""
    backends: list[OpenAIBackend] = []

    def make(server, **kwargs) -> OpenAIBackend:
        kwargs.setdefault("timeout", 5.0)
        backend = OpenAIBackend(server.base_url, "fake-model", **kwargs)
        backends.append(backend)
        return backend

    yield make
    for backend in backends:
        await backend.aclose()


async def test_success_carries_text_usage_cost_and_latency(start_server, connect, question_messages) -> None:
    server = await start_server()
    backend = connect(server, prices={"fake-model": (2.0, 8.0)})
    completion = await backend.complete(question_messages, LLMParams(temperature=0.3, seed=11))

    assert completion.text.endswith("Final answer: A")
    assert completion.model == backend.model_id == "fake-model"
    assert completion.prompt_tokens > 0 and completion.completion_tokens > 0
    expected = (completion.prompt_tokens * 2.0 + completion.completion_tokens * 8.0) / 1e6
    assert completion.cost == pytest.approx(expected)
    assert completion.latency_ms > 0
    assert completion.finish_reason == "stop"
    assert completion.raw["choices"][0]["message"]["content"].endswith("Final answer: A")
    assert completion.reasoning is None
    assert server.requests[0]["messages"] == question_messages


async def test_sampling_parameters_reach_the_server(start_server, connect, question_messages) -> None:
    seen: list[dict] = []

    def responder(request: dict) -> str:
        seen.append(request)
        return "Final answer: A"

    server = await start_server(responder=responder)
    await connect(server).complete(question_messages, LLMParams(temperature=0.3, max_tokens=99, top_p=0.9,
                                                                seed=5))
    assert {key: seen[0][key] for key in ("model", "temperature", "max_tokens", "top_p", "seed")} == {
        "model": "fake-model", "temperature": 0.3, "max_tokens": 99, "top_p": 0.9, "seed": 5}
    assert "response_format" not in seen[0]


async def test_unpriced_model_costs_nothing(start_server, connect, question_messages) -> None:
    server = await start_server()
    completion = await connect(server, prices={"other": (1.0, 1.0)}).complete(question_messages, LLMParams())
    assert completion.cost == 0.0


async def test_reasoning_content_is_captured(start_server, connect, question_messages) -> None:
    server = await start_server(include_reasoning=True)
    completion = await connect(server).complete(question_messages, LLMParams())
    assert completion.reasoning and "findings" in completion.reasoning
    assert completion.text.endswith("Final answer: A")


async def test_inline_think_block_is_split_out(start_server, connect, question_messages) -> None:
    server = await start_server(responder=lambda request: "<think>low MCV → iron</think>\nFinal answer: A")
    completion = await connect(server).complete(question_messages, LLMParams())
    assert completion.text == "Final answer: A"
    assert completion.reasoning == "low MCV → iron"


async def test_429_retry_after_is_honoured(start_server, connect, recording_sleep, question_messages) -> None:
    server = await start_server(fault_plan=FaultPlan(scripted=["error_429"], retry_after=3))
    backend = ResilientBackend(connect(server), sleep=recording_sleep)
    completion = await backend.complete(question_messages, LLMParams())
    assert completion.attempts == 2
    assert recording_sleep.delays[0] >= 3.0
    assert [r["status"] for r in server.requests] == [429, 200]


async def test_429_error_exposes_retry_after_and_status(start_server, connect, question_messages) -> None:
    server = await start_server(fault_plan=FaultPlan(scripted=["error_429"], retry_after=1.5))
    with pytest.raises(LLMError) as caught:
        await connect(server).complete(question_messages, LLMParams())
    assert (caught.value.status, caught.value.retryable, caught.value.retry_after) == (429, True, 1.5)


async def test_500_then_success(start_server, connect, recording_sleep, question_messages) -> None:
    server = await start_server(fault_plan=FaultPlan(scripted=["error_500"]))
    completion = await ResilientBackend(connect(server), sleep=recording_sleep).complete(question_messages,
                                                                                         LLMParams())
    assert completion.attempts == 2 and completion.text.endswith("Final answer: A")
    assert [r["status"] for r in server.requests] == [500, 200]


async def test_timeout_is_a_retryable_error(start_server, connect, question_messages) -> None:
    server = await start_server(fault_plan=FaultPlan(scripted=["timeout"]))
    started = time.monotonic()
    with pytest.raises(LLMError, match="no answer within 0.3 s") as caught:
        await connect(server, timeout=0.3).complete(question_messages, LLMParams())
    assert caught.value.retryable
    assert time.monotonic() - started < 3


async def test_malformed_json_is_retryable(start_server, connect, question_messages) -> None:
    server = await start_server(fault_plan=FaultPlan(scripted=["malformed"]))
    backend = connect(server)
    with pytest.raises(LLMError, match="malformed response body") as caught:
        await backend.complete(question_messages, LLMParams())
    assert caught.value.retryable
    # the connection survives: the next request on it works
    assert (await backend.complete(question_messages, LLMParams())).text.endswith("Final answer: A")


async def test_truncated_body_is_retryable(start_server, connect, question_messages) -> None:
    server = await start_server(fault_plan=FaultPlan(scripted=["truncated"]))
    backend = connect(server)
    with pytest.raises(LLMError) as caught:
        await backend.complete(question_messages, LLMParams())
    assert caught.value.retryable
    assert (await backend.complete(question_messages, LLMParams())).text.endswith("Final answer: A")


async def test_dead_endpoint_is_retryable(start_server, connect, question_messages) -> None:
    server = await start_server()
    server.go_down(60, mode="close")
    with pytest.raises(LLMError) as caught:
        await connect(server).complete(question_messages, LLMParams())
    assert caught.value.retryable
    server.go_down(60, mode="503")
    with pytest.raises(LLMError) as caught:
        await connect(server).complete(question_messages, LLMParams())
    assert caught.value.status == 503 and caught.value.retryable


async def test_nothing_listening_is_retryable(connect, question_messages) -> None:
    class Nowhere:
        base_url = "http://127.0.0.1:9/v1"  # the discard port: nothing listens there

    with pytest.raises(LLMError, match="Connect") as caught:
        await connect(Nowhere).complete(question_messages, LLMParams())
    assert caught.value.retryable


async def test_client_error_is_not_retryable(start_server, connect, question_messages) -> None:
    def reject(request: dict) -> dict:
        raise AssertionError("not reached")

    server = await start_server(responder=reject)

    class WrongPath:
        base_url = server.base_url + "/nope"

    with pytest.raises(LLMError, match="HTTP 404") as caught:
        await connect(WrongPath).complete(question_messages, LLMParams())
    assert not caught.value.retryable and caught.value.status == 404


async def test_response_format_sent_when_a_schema_is_given(start_server, connect, question_messages) -> None:
    seen: list[dict] = []
    server = await start_server(responder=lambda request: seen.append(request) or "{}")
    completion = await connect(server).complete(question_messages, LLMParams(json_schema=SCHEMA))
    assert seen[0]["response_format"] == {"type": "json_schema",
                                          "json_schema": {"name": "rationale", "schema": SCHEMA}}
    assert completion.extra["response_format"] is True


async def test_response_format_unsupported_falls_back_and_is_remembered(start_server, connect,
                                                                        question_messages) -> None:
    server = await start_server(supports_response_format=False)
    backend = connect(server)
    completion = await backend.complete(question_messages, LLMParams(json_schema=SCHEMA))
    assert completion.text.endswith("Final answer: A")
    assert completion.extra["response_format"] is False
    assert [(r["response_format"], r["status"]) for r in server.requests] == [(True, 400), (False, 200)]
    await backend.complete(question_messages, LLMParams(json_schema=SCHEMA))
    assert server.requests[-1]["response_format"] is False and len(server.requests) == 3


async def test_idempotency_key_reaches_the_server_log(start_server, connect, recording_sleep, tmp_path,
                                                      question_messages) -> None:
    server = await start_server(fault_plan=FaultPlan(scripted=["error_500"]))
    backend = ResilientBackend(connect(server), sleep=recording_sleep)
    await backend.complete(question_messages, LLMParams(idempotency_key="item-42:v1"))
    assert [r["idempotency_key"] for r in server.requests] == ["item-42:v1", "item-42:v1"]
    dump = tmp_path / "requests.jsonl"
    server.dump_log(dump)
    assert dump.read_text().count('"idempotency_key": "item-42:v1"') == 2


async def test_api_key_is_sent_but_never_shown(start_server, connect, recording_sleep, question_messages) -> None:
    def echo_key_back(request: dict) -> dict:
        return {"error": f"I got {SECRET}"}  # a hostile server echoing the key into a body

    server = await start_server(fault_plan=FaultPlan(scripted=["error_500", "error_429"], retry_after=0),
                                responder=echo_key_back)
    backend = connect(server, api_key=SECRET)
    resilient = ResilientBackend(backend, max_attempts=3, sleep=recording_sleep,
                                 breaker=CircuitBreaker(failure_threshold=10))
    with pytest.raises(LLMError) as caught:
        await resilient.complete(question_messages, LLMParams())
    assert all(r["authorized"] for r in server.requests)
    error = caught.value
    texts = [str(error), repr(error), str(error.__cause__), repr(backend), repr(resilient)]
    assert "malformed" in str(error)  # the third answer had no choices
    assert all(SECRET not in text for text in texts)
    assert SECRET not in str(server.requests)


async def test_responder_may_return_a_whole_body(start_server, connect, question_messages) -> None:
    def body(request: dict) -> dict:
        answer = chat_response(request, "Final answer: C")
        answer["choices"][0]["finish_reason"] = "length"
        return answer

    server = await start_server(responder=body)
    completion = await connect(server).complete(question_messages, LLMParams())
    assert (completion.text, completion.finish_reason) == ("Final answer: C", "length")
