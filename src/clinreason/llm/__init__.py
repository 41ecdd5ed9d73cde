"""The LLM port and its backends (openai-compatible HTTP, embedded local model, fake)."""

from clinreason.llm.base import ChatMessage, Completion, LLMBackend, LLMError, LLMParams

__all__ = ["ChatMessage", "Completion", "LLMBackend", "LLMError", "LLMParams"]
