"""The pure helpers of the HTTP backend: Retry-After parsing, pricing, the request body."""

from __future__ import annotations

import email.utils

import pytest

from clinreason.llm.base import LLMParams
from clinreason.llm.openai_backend import OpenAIBackend, cost_of, parse_retry_after


@pytest.mark.parametrize(("header", "seconds"), [("3", 3.0), (" 0.5 ", 0.5), ("-2", 0.0), ("", None),
                                                 (None, None), ("soon", None)])
def test_retry_after_seconds(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header) == seconds


def test_retry_after_http_date() -> None:
    now = 1_700_000_000.0
    header = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after(header, now=now) == pytest.approx(30.0)
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now=now) == 0.0


def test_cost_per_million_tokens() -> None:
    prices = {"deepseek-reasoner": (0.55, 2.19)}
    assert cost_of(prices, "deepseek-reasoner", 1_000_000, 500_000) == pytest.approx(0.55 + 1.095)
    assert cost_of(prices, "unknown", 10, 10) == 0.0
    assert cost_of(None, "deepseek-reasoner", 10, 10) == 0.0


def test_payload_omits_seed_when_unset_and_the_key_stays_out_of_repr() -> None:
    backend = OpenAIBackend("http://127.0.0.1:1/v1/", "m", api_key="sk-secret")
    payload = backend.build_payload([{"role": "user", "content": "q"}], LLMParams(seed=None),
                                    with_response_format=True)
    assert "seed" not in payload and "response_format" not in payload
    assert backend.base_url == "http://127.0.0.1:1/v1"
    assert "sk-secret" not in repr(backend)
