"""Retries, a concurrency limit and a circuit breaker around any backend.

Backends only classify failures (``LLMError.retryable``, ``retry_after``); the policy of what to do
about them lives here, once, so the HTTP backend, the embedded model and the fake all behave alike.
Time is injected (``sleep``, ``clock``, ``rng``) so the policy is tested without waiting on the wall clock.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable

from clinreason.llm.base import ChatMessage, Completion, LLMBackend, LLMError, LLMParams

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]


def backoff_delay(attempt: int, *, base_delay: float, max_delay: float, rng: Callable[[], float],
                  retry_after: float | None = None) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based).

    Full jitter (a uniform draw below an exponentially growing cap) spreads clients that failed together
    so they do not come back together. A server's Retry-After is a floor, never shortened; a little jitter
    goes on top of it for the same reason.
    """
    cap = min(max_delay, base_delay * (2 ** (attempt - 1)))
    if retry_after is not None:
        return retry_after + rng() * min(base_delay, cap)
    return rng() * cap


class CircuitOpen(LLMError):
    """The breaker refused the call: the endpoint was not asked (says nothing new about the request)."""


class ProbeFailed(CircuitOpen):
    """The one probe of a half-open circuit failed: the endpoint is still down (an outage, not this
    request's fault), and the circuit is open for another cooldown."""


class CircuitBreaker:
    """Stops calling an endpoint that keeps failing, then lets one probe through after a cooldown.

    closed → (``failure_threshold`` consecutive failures) → open → (``cooldown`` s) → half-open: one call
    goes through; its success closes the circuit, its failure opens it for another cooldown.
    """

    CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"

    def __init__(self, failure_threshold: int = 5, cooldown: float = 10.0, clock: Clock = time.monotonic):
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        self.failure_threshold = failure_threshold
        self.cooldown = cooldown
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._probe_in_flight = False

    @property
    def state(self) -> str:
        if self._opened_at is None:
            return self.CLOSED
        if self._probe_in_flight or self.remaining_cooldown() == 0.0:
            return self.HALF_OPEN
        return self.OPEN

    def remaining_cooldown(self) -> float:
        if self._opened_at is None:
            return 0.0
        return max(0.0, self._opened_at + self.cooldown - self._clock())

    def before_call(self) -> bool:
        """Raise a retryable :class:`CircuitOpen` instead of letting a call reach a dead endpoint.
        Returns True when this call is the half-open circuit's probe."""
        if self._opened_at is None:
            return False
        remaining = self.remaining_cooldown()
        if remaining > 0.0:
            raise CircuitOpen(f"circuit open after {self._failures} consecutive failures; "
                              f"next try in {remaining:.1f} s", retryable=True, retry_after=remaining)
        if self._probe_in_flight:
            raise CircuitOpen("circuit half-open: waiting for the probe request to come back",
                              retryable=True, retry_after=min(1.0, self.cooldown))
        self._probe_in_flight = True
        return True

    def record_success(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._probe_in_flight = False

    def record_failure(self) -> None:
        self._failures += 1
        if self._probe_in_flight or self._failures >= self.failure_threshold:
            if self._opened_at is None or self._probe_in_flight:
                log.warning("LLM endpoint failed %d times in a row; pausing calls for %.1f s",
                            self._failures, self.cooldown)
            self._opened_at = self._clock()
            self._probe_in_flight = False

    def release_probe(self) -> None:
        """Forget a probe that ended without a verdict (cancelled), so the next call may probe again."""
        self._probe_in_flight = False


class ResilientBackend:
    """Wraps a backend: at most ``concurrency`` calls in flight, retryable failures retried with backoff.

    ``max_attempts`` counts the tries that reached the endpoint. While the circuit is open (and when the
    probe of a half-open circuit fails), a call waits instead of spending attempts — up to
    ``outage_patience`` seconds in all, so an endpoint that is down for a minute and comes back costs a
    pause, not a batch of failed items. Beyond that the rejections count as attempts, and a dead
    endpoint ends in an error after a bounded wait (the item goes to ``failed``, retryable by command).
    The semaphore is held only while the inner backend works, never while sleeping between tries.
    The default breaker opens after ``max(5, concurrency)`` consecutive failures and cools down for 5 s.
    """

    def __init__(self, inner: LLMBackend, max_attempts: int = 5, base_delay: float = 0.5,
                 max_delay: float = 30.0, concurrency: int = 8, sleep: Sleep = asyncio.sleep,
                 rng: Callable[[], float] = random.random, breaker: CircuitBreaker | None = None,
                 outage_patience: float = 300.0):
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.inner = inner
        self.model_id = inner.model_id
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.concurrency = concurrency
        # "Consecutive" failures interleave across concurrent calls: at high concurrency a flaky but
        # alive endpoint easily fails 5 in a row, while a dead one fails a whole wave. One wave it is.
        self.breaker = breaker if breaker is not None else CircuitBreaker(max(5, concurrency), cooldown=5.0)
        self.outage_patience = outage_patience
        self._sleep = sleep
        self._rng = rng
        self._slots = asyncio.Semaphore(concurrency)

    def __repr__(self) -> str:
        return f"ResilientBackend({self.inner!r}, max_attempts={self.max_attempts})"

    async def complete(self, messages: list[ChatMessage], params: LLMParams) -> Completion:
        last: LLMError | None = None
        waited = 0.0  # seconds spent waiting out an outage, no attempt spent
        attempt = 1
        while True:
            try:
                completion = await self._try_once(messages, params)
            except LLMError as exc:
                if not exc.retryable:
                    raise
                last = exc
                if isinstance(exc, CircuitOpen) and waited < self.outage_patience:
                    # the circuit is open (or its probe found the endpoint still down): wait, keep the attempt
                    pause = (exc.retry_after or 1.0) + self._rng() * self.base_delay
                    await self._sleep(pause)
                    waited += pause
                    continue
                if attempt == self.max_attempts:
                    break
                delay = backoff_delay(attempt, base_delay=self.base_delay, max_delay=self.max_delay,
                                      rng=self._rng, retry_after=exc.retry_after)
                log.info("attempt %d/%d failed (%s); retrying in %.2f s", attempt, self.max_attempts,
                         exc, delay)
                await self._sleep(delay)
                attempt += 1
                continue
            completion.attempts = attempt
            return completion
        assert last is not None
        tries = "attempt" if self.max_attempts == 1 else "attempts"
        raise LLMError(f"gave up after {self.max_attempts} {tries}; last error: {last}",
                       retryable=True, retry_after=last.retry_after, status=last.status) from last

    async def _try_once(self, messages: list[ChatMessage], params: LLMParams) -> Completion:
        async with self._slots:
            # Asked only once a slot is free: calls queued behind a failing wave must see the circuit open.
            probe = self.breaker.before_call()
            try:
                completion = await self.inner.complete(messages, params)
            except LLMError as exc:
                if exc.retryable:
                    self.breaker.record_failure()
                    if probe:
                        raise ProbeFailed(f"the endpoint is still down ({exc})", retryable=True,
                                          retry_after=self.breaker.remaining_cooldown(), status=exc.status) from exc
                else:
                    self.breaker.record_success()  # the endpoint is up; it disliked this request
                raise
            except BaseException:
                # a bug or a cancellation: says nothing about the endpoint, but must free a probe slot
                self.breaker.release_probe()
                raise
        self.breaker.record_success()
        return completion

    async def aclose(self) -> None:
        await self.inner.aclose()
