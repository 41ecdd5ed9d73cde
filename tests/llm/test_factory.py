"""make_backend: the configured backend, always behind retries and a concurrency limit."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from clinreason.llm.base import LLMBackend, LLMError, LLMParams
from clinreason.llm.factory import make_backend
from clinreason.llm.fake_backend import FakeBackend
from clinreason.llm.local_backend import MODEL_ID, LocalBackend
from clinreason.llm.openai_backend import OpenAIBackend
from clinreason.llm.resilience import ResilientBackend


def test_auto_uses_the_server_when_a_base_url_is_set() -> None:
    backend = make_backend(base_url="http://127.0.0.1:8000/v1", model="deepseek-r1", concurrency=16,
                           timeout=12)
    assert isinstance(backend, ResilientBackend) and isinstance(backend, LLMBackend)
    assert isinstance(backend.inner, OpenAIBackend)
    assert (backend.model_id, backend.concurrency, backend.inner.timeout) == ("deepseek-r1", 16, 12.0)


def test_auto_without_a_base_url_uses_the_embedded_model() -> None:
    backend = make_backend()
    assert isinstance(backend.inner, LocalBackend)
    assert backend.model_id == MODEL_ID and "SmolLM2" in backend.model_id


def test_reads_a_settings_object_and_keywords_win() -> None:
    secret = SimpleNamespace(get_secret_value=lambda: "sk-x")
    settings = SimpleNamespace(llm_base_url="http://h/v1", llm_model="m1", llm_api_key=secret,
                               llm_concurrency=4)
    backend = make_backend(settings, model="m2")
    assert backend.model_id == "m2" and backend.concurrency == 4
    assert backend.inner._api_key == "sk-x"


def test_mapping_settings_and_fake_backend() -> None:
    backend = make_backend({"backend": "fake", "max_attempts": 2})
    assert isinstance(backend.inner, FakeBackend) and backend.max_attempts == 2


async def test_fake_backend_answers_through_the_wrapper() -> None:
    backend = make_backend(backend="fake")
    completion = await backend.complete([{"role": "user", "content": "Gold answer: C"}], LLMParams())
    assert completion.text.endswith("Final answer: C") and completion.attempts == 1


def test_openai_needs_url_and_model_with_actionable_errors() -> None:
    with pytest.raises(LLMError, match="CLINREASON_LLM_BASE_URL"):
        make_backend(backend="openai", model="m")
    with pytest.raises(LLMError, match="CLINREASON_LLM_MODEL"):
        make_backend(base_url="http://h/v1")
    with pytest.raises(ValueError, match="backend must be one of"):
        make_backend(backend="gpu")
