"""A backend that answers from a script, for tests and dry runs of the whole loop.

Tests queue answers (or errors) and then assert on ``.calls`` — what the stage actually sent — the way
a recorded conversation would be checked, without a model or a socket.
"""

from __future__ import annotations

import inspect
import re
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import NamedTuple

from clinreason.llm.base import ChatMessage, Completion, LLMParams
from clinreason.llm.thinking import split_thinking

#: a queued answer: text, a ready Completion, or an exception to raise in place of answering
FakeResponse = str | Completion | BaseException
Handler = Callable[[list[ChatMessage], LLMParams], "str | Completion | Awaitable[str | Completion]"]

_GOLD = re.compile(r"^\s*Gold answer:\s*(?P<answer>.+?)\s*$", re.IGNORECASE | re.MULTILINE)


class FakeCall(NamedTuple):
    messages: list[ChatMessage]
    params: LLMParams


def gold_answer_in(messages: list[ChatMessage]) -> str | None:
    """The ``Gold answer: X`` line of the last user message (the explain-mode prompt carries one)."""
    for message in reversed(messages):
        if message.get("role") == "user":
            found = _GOLD.search(message.get("content") or "")
            return found.group("answer") if found else None
    return None


def default_rationale(messages: list[ChatMessage]) -> str:
    """A well-formed, deterministic rationale that reaches the gold answer (``A`` when none is given)."""
    answer = gold_answer_in(messages) or "A"
    return (
        "Step 1: Identify the key findings in the question stem.\n"
        "Step 2: Weigh each option against those findings.\n"
        "Step 3: Rule out the options that contradict the findings.\n"
        f"Step 4: Option {answer} is the only one consistent with every finding.\n"
        f"Final answer: {answer}"
    )


def rough_token_count(text: str) -> int:
    """About how many tokens a text costs: good enough for fake usage numbers, never zero for text."""
    return max(1, len(text) // 4) if text else 0


class FakeBackend:
    """Answers from ``responses`` in order, then from ``handler``, then with :func:`default_rationale`."""

    def __init__(self, responses: Iterable[FakeResponse] | None = None, model_id: str = "fake-model",
                 handler: Handler | None = None):
        self.model_id = model_id
        self.handler = handler
        self.responses: deque[FakeResponse] = deque(responses or ())
        self.calls: list[FakeCall] = []
        self.closed = False

    def queue(self, *responses: FakeResponse) -> None:
        self.responses.extend(responses)

    async def complete(self, messages: list[ChatMessage], params: LLMParams) -> Completion:
        self.calls.append(FakeCall(list(messages), params))
        if self.responses:
            answer: str | Completion | BaseException = self.responses.popleft()
        elif self.handler is not None:
            produced = self.handler(messages, params)
            answer = await produced if inspect.isawaitable(produced) else produced
        else:
            answer = default_rationale(messages)
        if isinstance(answer, BaseException):
            raise answer
        if isinstance(answer, Completion):
            return answer
        text, reasoning = split_thinking(answer)
        return Completion(
            text=text,
            model=self.model_id,
            reasoning=reasoning,
            prompt_tokens=sum(rough_token_count(m.get("content") or "") for m in messages),
            completion_tokens=rough_token_count(answer),
            raw=answer,
            finish_reason="stop",
        )

    async def aclose(self) -> None:
        self.closed = True
