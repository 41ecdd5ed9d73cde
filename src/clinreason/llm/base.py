"""The LLM port: one async method, messages + params in, a Completion out.

Backends live one per module beside this file; stages only ever see this Protocol.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, TypedDict, runtime_checkable


class ChatMessage(TypedDict):
    role: str  # "system" | "user" | "assistant"
    content: str


@dataclass(frozen=True, slots=True)
class LLMParams:
    temperature: float = 0.2
    max_tokens: int = 768
    top_p: float = 1.0
    seed: int | None = 0
    #: a JSON schema the answer should follow, sent as response_format where the server supports it
    json_schema: dict[str, Any] | None = None
    #: sent as a header so a server (or our own request log) can recognise a retried request
    idempotency_key: str | None = None
    #: option labels; a backend that can constrain decoding (the embedded model) makes the text end with
    #: a line "Final answer: <labels>" chosen by the model among these
    answer_choices: tuple[str, ...] | None = None

    def cache_fields(self) -> dict[str, Any]:
        """The parameters that change the answer (the idempotency key does not)."""
        return {
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "top_p": self.top_p,
            "seed": self.seed,
            "json_schema": self.json_schema,
            "answer_choices": list(self.answer_choices) if self.answer_choices else None,
        }


@dataclass(slots=True)
class Completion:
    text: str
    model: str
    reasoning: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: float = 0.0
    cost: float = 0.0
    raw: Any = None
    finish_reason: str | None = None
    attempts: int = 1
    extra: dict[str, Any] = field(default_factory=dict)


class LLMError(RuntimeError):
    """A request that could not be completed. `retryable` says whether trying again may help."""

    def __init__(self, message: str, *, retryable: bool = False, retry_after: float | None = None,
                 status: int | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after
        self.status = status


@runtime_checkable
class LLMBackend(Protocol):
    #: the model id recorded with every rationale this backend drafts
    model_id: str

    async def complete(self, messages: list[ChatMessage], params: LLMParams) -> Completion: ...

    async def aclose(self) -> None: ...
