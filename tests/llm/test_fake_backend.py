"""FakeBackend: scripted answers for tests of the stages, with every call recorded."""

from __future__ import annotations

import pytest

from clinreason.llm.base import ChatMessage, Completion, LLMBackend, LLMError, LLMParams
from clinreason.llm.fake_backend import FakeBackend, default_rationale, gold_answer_in


def user(text: str) -> list[ChatMessage]:
    return [{"role": "user", "content": text}]


async def test_default_answer_reaches_the_gold_answer(question_messages: list[ChatMessage]) -> None:
    completion = await FakeBackend().complete(question_messages, LLMParams())
    lines = completion.text.splitlines()
    assert lines[0].startswith("Step 1:")
    assert lines[-1] == "Final answer: A"
    assert completion.model == "fake-model"
    assert completion.prompt_tokens > 0 and completion.completion_tokens > 0


async def test_default_answer_uses_the_last_user_message_and_falls_back_to_a() -> None:
    messages: list[ChatMessage] = [{"role": "user", "content": "Gold answer: B"},
                                   {"role": "assistant", "content": "…"},
                                   {"role": "user", "content": "Please revise.\nGold answer: C, D"}]
    assert gold_answer_in(messages) == "C, D"
    assert default_rationale(messages).endswith("Final answer: C, D")
    assert default_rationale(user("no gold here")).endswith("Final answer: A")


async def test_queue_then_handler_then_default() -> None:
    fake = FakeBackend(["first"], handler=lambda messages, params: f"echo {messages[-1]['content']}")
    assert (await fake.complete(user("1"), LLMParams())).text == "first"
    assert (await fake.complete(user("2"), LLMParams())).text == "echo 2"


async def test_async_handler_is_awaited() -> None:
    async def handler(messages: list[ChatMessage], params: LLMParams) -> str:
        return f"t={params.temperature}"

    assert (await FakeBackend(handler=handler).complete(user("x"), LLMParams(temperature=0.7))).text == "t=0.7"


async def test_queued_exception_is_raised_and_completion_returned_as_is() -> None:
    ready = Completion(text="canned", model="m", prompt_tokens=3)
    fake = FakeBackend([LLMError("boom", retryable=True), ready])
    with pytest.raises(LLMError, match="boom"):
        await fake.complete(user("x"), LLMParams())
    assert await fake.complete(user("x"), LLMParams()) is ready


async def test_calls_are_recorded_for_assertions() -> None:
    fake = FakeBackend()
    params = LLMParams(seed=7, idempotency_key="item-1:v1")
    await fake.complete(user("hello"), params)
    assert len(fake.calls) == 1
    assert fake.calls[0].messages == user("hello")
    assert fake.calls[0].params is params


async def test_think_blocks_in_canned_text_are_split_like_a_real_backend() -> None:
    completion = await FakeBackend(["<think>hmm</think>Final answer: B"]).complete(user("x"), LLMParams())
    assert (completion.text, completion.reasoning) == ("Final answer: B", "hmm")


async def test_is_an_llm_backend_and_closes() -> None:
    fake = FakeBackend(model_id="scripted")
    assert isinstance(fake, LLMBackend)
    await fake.aclose()
    assert fake.closed and fake.model_id == "scripted"
