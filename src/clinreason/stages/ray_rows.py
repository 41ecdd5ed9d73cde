"""What runs inside Ray for `generate --engine ray` (stages/ray_engine.py is the driver): the stage's pure
row functions — `http_preprocess` / `vllm_preprocess` (a row into the processor's input) and
`http_postprocess` / `vllm_postprocess` (the processor's output into flat result columns) — and the HTTP
session the HTTP processor is given.

Every Ray worker imports this module to run them, so it imports little: no database, no configuration, no
Ray (a worker already has it).

Why a session of our own. Ray's HTTP stage as shipped (2.60) awaits a batch's requests one after another,
retries only 408/429/502-504, and raises — failing the whole dataset — when retries run out or a body is not
JSON. `EndpointSession` (given through `session_factory`, a documented field of HttpRequestProcessorConfig)
starts every request of a batch at once, retries as the native backend does (408/409/425/429/5xx, timeouts,
cut connections; Retry-After honoured), drops `response_format` for a server that rejects it, sets the
`Idempotency-Key` header, and always hands Ray one JSON envelope per row: a request that fails for good
becomes a failed item with its reason, never a gap and never a crashed run.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from typing import Any

from clinreason.llm.base import ChatMessage, LLMParams
from clinreason.llm.openai_backend import RETRYABLE_STATUSES, OpenAIBackend, parse_retry_after
from clinreason.llm.resilience import backoff_delay
from clinreason.llm.thinking import split_thinking

#: where a row's payload carries what is not for the server (the idempotency key, sent as a header)
PRIVATE = "_clinreason"
_BODY_SNIPPET = 300
#: the columns of every result row
RESULT_COLUMNS = ("item_id", "version", "text", "reasoning", "prompt_tokens", "completion_tokens", "latency_ms",
                  "attempts", "served_model", "error")


def request_of(row: dict[str, Any]) -> tuple[list[ChatMessage], LLMParams]:
    request = json.loads(row["request"])
    return request["messages"], LLMParams(**request["params"], idempotency_key=row["idempotency_key"] or None)


def http_preprocess(row: dict[str, Any], *, model: str) -> dict[str, Any]:
    """A row into the HTTP processor's `payload`: the very body the native backend sends (model, messages,
    temperature, max_tokens, top_p, seed, response_format), plus the idempotency key, which the session
    takes out again and sends as the `Idempotency-Key` header."""
    messages, params = request_of(row)
    payload = OpenAIBackend("http://ray-processor.invalid", model).build_payload(
        messages, params, with_response_format=True)
    payload[PRIVATE] = {"idempotency_key": row["idempotency_key"]}
    return {"payload": payload}


def vllm_preprocess(row: dict[str, Any]) -> dict[str, Any]:
    """A row into the vLLM processor's `messages` and `sampling_params` (the same parameters; a JSON schema
    becomes vLLM's structured output)."""
    messages, params = request_of(row)
    sampling: dict[str, Any] = {"temperature": params.temperature, "max_tokens": params.max_tokens,
                                "top_p": params.top_p}
    if params.seed is not None:
        sampling["seed"] = params.seed
    if params.json_schema is not None:
        sampling["structured_outputs"] = {"json": params.json_schema}
    return {"messages": messages, "sampling_params": sampling}


def _result(row: dict[str, Any], **values: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"item_id": row["item_id"], "version": int(row["version"]), "text": None, "reasoning": None,
                           "prompt_tokens": 0, "completion_tokens": 0, "latency_ms": 0.0, "attempts": 1,
                           "served_model": None, "error": None}
    out.update(values)
    return out


def chat_body_result(row: dict[str, Any], body: Any, *, latency_ms: float = 0.0, attempts: int = 1,
                     where: str = "the endpoint") -> dict[str, Any]:
    """An OpenAI chat.completion body as a result row — or, for a body that carries `error` (or is no
    completion at all), an error row with the body's own reason."""
    if not isinstance(body, dict) or "error" in body or body.get("object") == "error":
        reason = body.get("error") if isinstance(body, dict) else body
        if isinstance(reason, dict):
            reason = reason.get("message") or json.dumps(reason, ensure_ascii=False)
        if isinstance(body, dict) and body.get("object") == "error":
            reason = body.get("message") or reason
        return _result(row, attempts=attempts, latency_ms=latency_ms,
                       error=f"LLM request failed: {where} answered with an error: {str(reason)[:_BODY_SNIPPET]}")
    try:
        message = body["choices"][0]["message"]
    except (KeyError, IndexError, TypeError):
        snippet = json.dumps(body, ensure_ascii=False)[:_BODY_SNIPPET]
        return _result(row, attempts=attempts, latency_ms=latency_ms,
                       error=f"LLM request failed: {where}: malformed response body: {snippet!r}")
    answer, inline = split_thinking(message.get("content") or "")
    served = message.get("reasoning_content") or message.get("reasoning")
    parts = [part for part in (served, inline) if part]
    usage = body.get("usage") or {}
    return _result(row, text=answer, reasoning="\n\n".join(parts) if parts else None,
                   prompt_tokens=int(usage.get("prompt_tokens") or 0),
                   completion_tokens=int(usage.get("completion_tokens") or 0),
                   latency_ms=float(latency_ms), attempts=int(attempts), served_model=body.get("model"))


def http_postprocess(row: dict[str, Any]) -> dict[str, Any]:
    """The HTTP processor's output row (`http_response`: the session's envelope, or a bare body when Ray's
    own session was used) into a result row of flat columns."""
    response = row.get("http_response")
    if isinstance(response, dict) and "envelope" in response:
        if response.get("error"):
            return _result(row, attempts=int(response.get("attempts") or 1),
                           latency_ms=float(response.get("latency_ms") or 0.0), error=str(response["error"]))
        try:
            body = json.loads(response["body"])
        except (TypeError, ValueError):
            body = response["body"]
        return chat_body_result(row, body, latency_ms=float(response.get("latency_ms") or 0.0),
                                attempts=int(response.get("attempts") or 1), where=str(response.get("url")))
    return chat_body_result(row, response)


def vllm_postprocess(row: dict[str, Any]) -> dict[str, Any]:
    """The vLLM processor's output row into a result row (its token counts are the engine's own)."""
    failure = row.get("__inference_error__")
    if failure:
        return _result(row, error=f"LLM request failed: vLLM engine: {str(failure)[:_BODY_SNIPPET]}")
    answer, reasoning = split_thinking(row.get("generated_text") or "")
    return _result(row, text=answer, reasoning=reasoning, prompt_tokens=int(row.get("num_input_tokens") or 0),
                   completion_tokens=int(row.get("num_generated_tokens") or 0),
                   latency_ms=float(row.get("time_taken_llm") or 0.0) * 1000)


# -- the session the HTTP processor uses (runs inside the Ray actors) ------------------------------------

class EndpointSessionFactory:
    """`HttpRequestProcessorConfig.session_factory`: picklable, shipped to every HTTP actor, which calls it
    once per batch. The API key travels inside it (never in a header of the config, which Ray may log)."""

    def __init__(self, *, api_key: str | None, timeout: float, max_attempts: int, connections: int,
                 base_delay: float = 0.5, max_delay: float = 30.0):
        self._api_key = api_key
        self.timeout, self.max_attempts, self.connections = timeout, max_attempts, connections
        self.base_delay, self.max_delay = base_delay, max_delay

    def __repr__(self) -> str:
        return f"EndpointSessionFactory(timeout={self.timeout}, max_attempts={self.max_attempts})"

    def __call__(self) -> EndpointSession:
        return EndpointSession(self, self._api_key)


class _Answer:
    """What `async with await session.post(...) as response` gives Ray's HTTP stage: always status 200,
    and `json()` the envelope — a final answer, the retrying is already done."""

    status = 200
    reason = "OK"

    def __init__(self, envelope: dict[str, Any]):
        self._envelope = envelope

    async def __aenter__(self) -> _Answer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def json(self) -> dict[str, Any]:
        return self._envelope


class _Started:
    """A request already on its way (Ray awaits it later)."""

    def __init__(self, task: asyncio.Task[dict[str, Any]]):
        self._task = task

    def __await__(self) -> Any:
        async def answer() -> _Answer:
            return _Answer(await self._task)
        return answer().__await__()


class EndpointSession:
    """Duck-types the part of aiohttp.ClientSession that Ray's HTTP stage uses (`async with`, `post`)."""

    def __init__(self, factory: EndpointSessionFactory, api_key: str | None):
        self.factory, self._api_key = factory, api_key
        self._http: Any = None
        self._tasks: set[asyncio.Task[dict[str, Any]]] = set()

    async def __aenter__(self) -> EndpointSession:
        import aiohttp

        connector = aiohttp.TCPConnector(limit=self.factory.connections, limit_per_host=self.factory.connections)
        self._http = aiohttp.ClientSession(connector=connector,
                                           timeout=aiohttp.ClientTimeout(total=self.factory.timeout))
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._http.close()

    def post(self, url: str, *, headers: dict[str, str] | None = None, data: Any = None) -> _Started:
        task = asyncio.ensure_future(self._exchange(url, dict(headers or {}), data))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return _Started(task)

    def _redact(self, text: str) -> str:
        return text.replace(self._api_key, "***") if self._api_key and self._api_key in text else text

    async def _exchange(self, url: str, headers: dict[str, str], data: Any) -> dict[str, Any]:
        """One row's request, retried as the native backend's are; returns the envelope."""
        import aiohttp

        payload = json.loads(data)
        private = payload.pop(PRIVATE, None) or {}
        if private.get("idempotency_key"):
            headers["Idempotency-Key"] = private["idempotency_key"]
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        started = time.perf_counter()
        attempt, error = 0, ""
        while True:
            attempt += 1
            retry_after: float | None = None
            try:
                async with self._http.post(url, data=json.dumps(payload, ensure_ascii=False), headers=headers) as resp:
                    status, text = resp.status, (await resp.read()).decode("utf-8", errors="replace")
                    retry_after = parse_retry_after(resp.headers.get("Retry-After"))
            except (asyncio.TimeoutError, TimeoutError) as exc:
                status, text, retryable = 0, "", True
                error = f"{url}: no answer within {self.factory.timeout:g} s ({type(exc).__name__})"
            except aiohttp.ClientError as exc:
                status, text, retryable = 0, "", True
                error = f"{url}: {type(exc).__name__}: {self._redact(str(exc))}"
            if status:
                if status < 300:
                    try:
                        json.loads(text)
                        return self._envelope(url, status, text, attempt, started)
                    except ValueError:
                        retryable = True
                        error = f"{url}: malformed response body: {self._redact(text)[:_BODY_SNIPPET]!r}"
                else:
                    if status == 400 and "response_format" in payload and "response_format" in text:
                        payload.pop("response_format")  # a server without JSON-schema output: ask without it
                        attempt -= 1
                        continue
                    retryable = status in RETRYABLE_STATUSES or status >= 500
                    error = f"{url} answered HTTP {status}: {self._redact(text)[:_BODY_SNIPPET]}"
            if not retryable or attempt >= self.factory.max_attempts:
                return self._envelope(url, status, text, attempt, started,
                                      error=f"LLM request failed: {error}"
                                            + (f" (after {attempt} attempts)" if attempt > 1 else ""))
            await asyncio.sleep(backoff_delay(attempt, base_delay=self.factory.base_delay,
                                              max_delay=self.factory.max_delay, rng=random.random,
                                              retry_after=retry_after))

    @staticmethod
    def _envelope(url: str, status: int, text: str, attempts: int, started: float, *,
                  error: str | None = None) -> dict[str, Any]:
        return {"envelope": 1, "url": url, "status": status, "body": "" if error else text, "error": error,
                "attempts": attempts, "latency_ms": (time.perf_counter() - started) * 1000}
