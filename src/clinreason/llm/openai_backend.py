"""Any OpenAI-compatible chat endpoint (vLLM, SGLang, Ollama, llama.cpp server, DeepSeek, OpenAI …).

One HTTP request per :meth:`OpenAIBackend.complete`; retrying is not done here but by
:class:`clinreason.llm.resilience.ResilientBackend`, so this module only has to say *whether* a failure
is worth retrying. It never logs the API key nor lets it reach an exception message.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import aiohttp

from clinreason.llm.base import ChatMessage, Completion, LLMError, LLMParams
from clinreason.llm.thinking import split_thinking

log = logging.getLogger(__name__)

#: USD per one million tokens, (prompt, completion), keyed by model id
PriceTable = dict[str, tuple[float, float]]

#: statuses where the same request may well succeed later
RETRYABLE_STATUSES = frozenset({408, 409, 425, 429})
_BODY_SNIPPET = 300


@dataclass(slots=True)
class _Response:
    """What we keep of an HTTP answer, read completely before the connection goes back to the pool."""

    status_code: int
    text: str
    headers: dict[str, str]

    def json(self) -> Any:
        return json.loads(self.text)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds, or an HTTP date (RFC 9110 §10.2.3)."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    return max(0.0, seconds)


def cost_of(prices: PriceTable | None, model: str, prompt_tokens: int, completion_tokens: int) -> float:
    """Dollar cost of one call; 0.0 when the model is not in the table (self-hosted models cost nothing here)."""
    if not prices or model not in prices:
        return 0.0
    per_prompt, per_completion = prices[model]
    return (prompt_tokens * per_prompt + completion_tokens * per_completion) / 1_000_000


class OpenAIBackend:
    """POSTs ``{base_url}/chat/completions``; ``base_url`` includes the version, e.g. ``http://host:8000/v1``.

    ``max_connections`` bounds the sockets kept open to the server. The HTTP client is aiohttp: at 64
    requests in flight it spends about a sixth of the CPU per request that httpx does (measured in
    benchmarks/bench_generate.py), and that CPU is what caps one worker's throughput.
    """

    def __init__(self, base_url: str, model: str, api_key: str | None = None, timeout: float = 60.0,
                 prices: PriceTable | None = None, *, max_connections: int = 128):
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.model_id = model
        self.timeout = timeout
        self.prices = dict(prices or {})
        self._api_key = api_key
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        #: flips to False the first time the server rejects ``response_format``; we then stop sending it
        self.supports_response_format = True

    def __repr__(self) -> str:  # the key must not leak through a repr in a log line or traceback
        return f"OpenAIBackend(base_url={self.base_url!r}, model={self.model!r})"

    def _http(self) -> aiohttp.ClientSession:
        # Built on first use, not in __init__: nothing connects at construction, and the pool binds to
        # the event loop that actually makes the calls.
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._max_connections, limit_per_host=self._max_connections)
            self._session = aiohttp.ClientSession(connector=connector,
                                                  timeout=aiohttp.ClientTimeout(total=self.timeout))
        return self._session

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()

    def build_payload(self, messages: list[ChatMessage], params: LLMParams, *,
                      with_response_format: bool) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "model": self.model,
            "messages": list(messages),
            "temperature": params.temperature,
            "max_tokens": params.max_tokens,
            "top_p": params.top_p,
        }
        if params.seed is not None:
            payload["seed"] = params.seed
        if with_response_format and params.json_schema is not None:
            payload["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "rationale", "schema": params.json_schema},
            }
        return payload

    def _headers(self, params: LLMParams) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        if params.idempotency_key:
            headers["Idempotency-Key"] = params.idempotency_key
        return headers

    async def complete(self, messages: list[ChatMessage], params: LLMParams) -> Completion:
        started = time.perf_counter()
        use_format = self.supports_response_format and params.json_schema is not None
        response = await self._post(self.build_payload(messages, params, with_response_format=use_format),
                                    params)
        if use_format and response.status_code == 400 and "response_format" in response.text:
            log.info("%s rejects response_format; sending without it from now on", self.base_url)
            self.supports_response_format = False
            use_format = False
            response = await self._post(self.build_payload(messages, params, with_response_format=False),
                                        params)
        latency_ms = (time.perf_counter() - started) * 1000
        if response.status_code >= 300:
            raise self._status_error(response)
        completion = self._parse(response)
        completion.latency_ms = latency_ms
        completion.extra["response_format"] = use_format
        return completion

    async def _post(self, payload: dict[str, Any], params: LLMParams) -> _Response:
        url = f"{self.base_url}/chat/completions"
        try:
            async with self._http().post(url, json=payload, headers=self._headers(params)) as response:
                raw = await response.read()
                return _Response(response.status, raw.decode("utf-8", errors="replace"),
                                 {k.lower(): v for k, v in response.headers.items()})
        except (asyncio.TimeoutError, TimeoutError) as exc:
            raise LLMError(f"{url}: no answer within {self.timeout:g} s ({type(exc).__name__})",
                           retryable=True) from None
        except aiohttp.ClientError as exc:
            # connection refused/reset, or the server closed mid-body (a truncated response)
            raise LLMError(f"{url}: {type(exc).__name__}: {self._redact(str(exc))}",
                           retryable=True) from None

    def _status_error(self, response: _Response) -> LLMError:
        status = response.status_code
        retryable = status in RETRYABLE_STATUSES or status >= 500
        snippet = self._redact(response.text)[:_BODY_SNIPPET]  # redact first: a cut could split the key
        return LLMError(f"{self.base_url}/chat/completions answered HTTP {status}: {snippet}",
                        retryable=retryable, status=status,
                        retry_after=parse_retry_after(response.headers.get("retry-after")))

    def _parse(self, response: _Response) -> Completion:
        try:
            body = response.json()
            choice = body["choices"][0]
            message = choice["message"]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            # A proxy that cut the body short, or a server in trouble: worth another try.
            raise LLMError(f"{self.base_url}/chat/completions: malformed response body "
                           f"({type(exc).__name__}): {self._redact(response.text)[:_BODY_SNIPPET]!r}",
                           retryable=True, status=response.status_code) from None
        answer, inline_thinking = split_thinking(message.get("content") or "")
        served_reasoning = message.get("reasoning_content") or message.get("reasoning")
        parts = [part for part in (served_reasoning, inline_thinking) if part]
        usage = body.get("usage") or {}
        prompt_tokens = int(usage.get("prompt_tokens") or 0)
        completion_tokens = int(usage.get("completion_tokens") or 0)
        return Completion(
            text=answer,
            model=self.model_id,
            reasoning="\n\n".join(parts) if parts else None,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cost=cost_of(self.prices, self.model, prompt_tokens, completion_tokens),
            raw=body,
            finish_reason=choice.get("finish_reason"),
            extra={"served_model": body.get("model"), "response_id": body.get("id")},
        )

    def _redact(self, text: str) -> str:
        """Servers sometimes echo the request (headers included) into an error body."""
        if self._api_key and self._api_key in text:
            text = text.replace(self._api_key, "***")
        return text
