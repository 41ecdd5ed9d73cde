"""Retry policy and circuit breaker, driven by injected sleep/clock/rng: no wall-clock waiting."""

from __future__ import annotations

import asyncio

import pytest

from clinreason.llm.base import ChatMessage, Completion, LLMError, LLMParams
from clinreason.llm.fake_backend import FakeBackend
from clinreason.llm.resilience import CircuitBreaker, ResilientBackend, backoff_delay

MESSAGES: list[ChatMessage] = [{"role": "user", "content": "Gold answer: B"}]


def flaky(n: int, **error: object) -> list[object]:
    return [LLMError(f"fail {i}", retryable=True, **error) for i in range(n)]  # type: ignore[arg-type]


# -- backoff ---------------------------------------------------------------------------------------------

def test_full_jitter_grows_exponentially_and_is_capped() -> None:
    top = [backoff_delay(a, base_delay=0.5, max_delay=3.0, rng=lambda: 0.999999) for a in range(1, 6)]
    assert [round(d, 3) for d in top] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert backoff_delay(4, base_delay=0.5, max_delay=3.0, rng=lambda: 0.0) == 0.0


def test_retry_after_is_a_floor_with_jitter_on_top() -> None:
    assert backoff_delay(1, base_delay=0.5, max_delay=30, rng=lambda: 0.0, retry_after=7.0) == 7.0
    assert 7.0 < backoff_delay(1, base_delay=0.5, max_delay=30, rng=lambda: 0.9, retry_after=7.0) <= 7.5


# -- retries ---------------------------------------------------------------------------------------------

async def test_retries_retryable_errors_and_counts_attempts(recording_sleep) -> None:
    inner = FakeBackend(flaky(2))
    backend = ResilientBackend(inner, sleep=recording_sleep, rng=lambda: 0.5)
    completion = await backend.complete(MESSAGES, LLMParams())
    assert completion.text.endswith("Final answer: B")
    assert completion.attempts == 3
    assert len(inner.calls) == 3
    assert recording_sleep.delays == [0.25, 0.5]


async def test_honours_retry_after(recording_sleep) -> None:
    backend = ResilientBackend(FakeBackend(flaky(1, retry_after=12.0)), sleep=recording_sleep,
                               rng=lambda: 0.0)
    await backend.complete(MESSAGES, LLMParams())
    assert recording_sleep.delays == [12.0]


async def test_retry_after_beyond_max_delay_is_still_honoured(recording_sleep) -> None:
    backend = ResilientBackend(FakeBackend(flaky(1, retry_after=90.0)), max_delay=5, sleep=recording_sleep)
    await backend.complete(MESSAGES, LLMParams())
    assert recording_sleep.delays[0] >= 90.0


async def test_non_retryable_error_is_raised_at_once(recording_sleep) -> None:
    inner = FakeBackend([LLMError("HTTP 401: bad key", status=401)])
    with pytest.raises(LLMError, match="401") as caught:
        await ResilientBackend(inner, sleep=recording_sleep).complete(MESSAGES, LLMParams())
    assert not caught.value.retryable
    assert len(inner.calls) == 1 and recording_sleep.delays == []


async def test_gives_up_after_max_attempts_naming_count_and_cause(recording_sleep) -> None:
    inner = FakeBackend(flaky(3, status=503))
    backend = ResilientBackend(inner, max_attempts=3, sleep=recording_sleep,
                               breaker=CircuitBreaker(failure_threshold=100))
    with pytest.raises(LLMError, match=r"gave up after 3 attempts; last error: fail 2") as caught:
        await backend.complete(MESSAGES, LLMParams())
    assert caught.value.status == 503 and caught.value.retryable
    assert isinstance(caught.value.__cause__, LLMError)
    assert len(inner.calls) == 3 and len(recording_sleep.delays) == 2


async def test_same_params_are_sent_on_every_attempt(recording_sleep) -> None:
    inner = FakeBackend(flaky(1))
    params = LLMParams(idempotency_key="item-9:v2")
    await ResilientBackend(inner, sleep=recording_sleep).complete(MESSAGES, params)
    assert [call.params.idempotency_key for call in inner.calls] == ["item-9:v2", "item-9:v2"]


async def test_concurrency_limit_is_respected() -> None:
    in_flight = peak = 0
    release = asyncio.Event()

    async def handler(messages: list[ChatMessage], params: LLMParams) -> str:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await release.wait()
        in_flight -= 1
        return "ok"

    backend = ResilientBackend(FakeBackend(handler=handler), concurrency=3)
    tasks = [asyncio.create_task(backend.complete(MESSAGES, LLMParams())) for _ in range(10)]
    for _ in range(5):
        await asyncio.sleep(0)
    assert peak == 3
    release.set()
    assert [c.text for c in await asyncio.gather(*tasks)] == ["ok"] * 10
    assert peak == 3


async def test_model_id_and_aclose_pass_through() -> None:
    inner = FakeBackend(model_id="inner-model")
    backend = ResilientBackend(inner)
    assert backend.model_id == "inner-model"
    await backend.aclose()
    assert inner.closed


# -- circuit breaker -------------------------------------------------------------------------------------

def test_breaker_opens_after_consecutive_failures_and_half_opens_after_cooldown(clock) -> None:
    breaker = CircuitBreaker(failure_threshold=3, cooldown=10.0, clock=clock)
    for _ in range(2):
        breaker.before_call()
        breaker.record_failure()
    breaker.before_call()
    breaker.record_success()  # a success in between resets the count
    for _ in range(3):
        breaker.before_call()
        breaker.record_failure()
    assert breaker.state == "open"
    clock.advance(4.0)
    with pytest.raises(LLMError, match="circuit open") as caught:
        breaker.before_call()
    assert caught.value.retryable and caught.value.retry_after == pytest.approx(6.0)
    clock.advance(6.0)
    assert breaker.state == "half_open"
    breaker.before_call()  # the probe
    with pytest.raises(LLMError, match="half-open"):
        breaker.before_call()  # only one probe at a time
    breaker.record_success()
    assert breaker.state == "closed"
    breaker.before_call()


def test_failed_probe_reopens_for_a_full_cooldown(clock) -> None:
    breaker = CircuitBreaker(failure_threshold=1, cooldown=5.0, clock=clock)
    breaker.record_failure()
    clock.advance(5.0)
    breaker.before_call()
    breaker.record_failure()
    assert breaker.state == "open" and breaker.remaining_cooldown() == pytest.approx(5.0)


def test_cancelled_probe_frees_the_probe_slot(clock) -> None:
    breaker = CircuitBreaker(failure_threshold=1, cooldown=1.0, clock=clock)
    breaker.record_failure()
    clock.advance(1.0)
    breaker.before_call()
    breaker.release_probe()
    breaker.before_call()  # a new probe may go


async def test_open_circuit_stops_calls_reaching_a_dead_endpoint(clock, recording_sleep) -> None:
    inner = FakeBackend(flaky(50))
    breaker = CircuitBreaker(failure_threshold=2, cooldown=30.0, clock=clock)
    backend = ResilientBackend(inner, max_attempts=5, sleep=recording_sleep, rng=lambda: 0.0, breaker=breaker,
                               outage_patience=0)
    with pytest.raises(LLMError, match="gave up after 5 attempts; last error: circuit open"):
        await backend.complete(MESSAGES, LLMParams())
    assert len(inner.calls) == 2  # attempts 3-5 were refused by the breaker, never sent
    assert recording_sleep.delays[2:] == [30.0, 30.0]  # waits the remaining cooldown (clock frozen)


async def test_endpoint_recovers_after_cooldown(clock) -> None:
    inner = FakeBackend([*flaky(2), "recovered"])
    breaker = CircuitBreaker(failure_threshold=2, cooldown=30.0, clock=clock)

    async def sleep_moves_clock(seconds: float) -> None:
        clock.advance(seconds)

    backend = ResilientBackend(inner, sleep=sleep_moves_clock, rng=lambda: 0.0, breaker=breaker)
    completion = await backend.complete(MESSAGES, LLMParams())
    # two real failures, one refusal by the open circuit (a wait that spends no attempt), then the probe
    assert completion.text == "recovered" and completion.attempts == 3
    assert len(inner.calls) == 3
    assert breaker.state == "closed"


async def test_client_errors_do_not_open_the_circuit(recording_sleep) -> None:
    inner = FakeBackend([LLMError("HTTP 400", status=400) for _ in range(3)])
    breaker = CircuitBreaker(failure_threshold=2)
    backend = ResilientBackend(inner, sleep=recording_sleep, breaker=breaker)
    for _ in range(3):
        with pytest.raises(LLMError):
            await backend.complete(MESSAGES, LLMParams())
    assert breaker.state == "closed"


async def test_bugs_propagate_unchanged(recording_sleep) -> None:
    backend = ResilientBackend(FakeBackend([KeyError("bug")]), sleep=recording_sleep)
    with pytest.raises(KeyError):
        await backend.complete(MESSAGES, LLMParams())
    completion = await backend.complete(MESSAGES, LLMParams())
    assert isinstance(completion, Completion)


async def test_calls_queued_behind_a_failing_wave_never_reach_the_endpoint(clock, recording_sleep) -> None:
    def refuse(messages: list[ChatMessage], params: LLMParams) -> str:
        raise LLMError("connection refused", retryable=True)

    inner = FakeBackend(handler=refuse)
    breaker = CircuitBreaker(failure_threshold=2, cooldown=30.0, clock=clock)
    backend = ResilientBackend(inner, max_attempts=3, concurrency=2, sleep=recording_sleep, breaker=breaker)
    results = await asyncio.gather(*(backend.complete(MESSAGES, LLMParams()) for _ in range(6)),
                                   return_exceptions=True)
    assert all(isinstance(r, LLMError) and "gave up after 3 attempts" in str(r) for r in results)
    assert len(inner.calls) == 2  # one wave of `concurrency` calls, then the circuit held


def test_default_breaker_scales_with_concurrency() -> None:
    assert ResilientBackend(FakeBackend(), concurrency=64).breaker.failure_threshold == 64
    assert ResilientBackend(FakeBackend(), concurrency=2).breaker.failure_threshold == 5


class Outage:
    """An endpoint that fails every call until `until` on the injected clock, then answers."""

    def __init__(self, clock, until: float):
        self.clock, self.until, self.calls = clock, until, 0
        self.model_id = "outage"

    async def complete(self, messages, params):
        self.calls += 1
        if self.clock() < self.until:
            raise LLMError("HTTP 503", retryable=True, status=503)
        return Completion(text="back", model="outage")

    async def aclose(self) -> None:
        pass


def _moving(clock):
    async def sleep(seconds: float) -> None:
        clock.advance(seconds)

    return sleep


async def test_a_minute_long_outage_costs_a_pause_not_the_item(clock) -> None:
    inner = Outage(clock, until=clock() + 60.0)
    backend = ResilientBackend(inner, max_attempts=5, sleep=_moving(clock), rng=lambda: 0.0,
                               breaker=CircuitBreaker(failure_threshold=2, cooldown=5.0, clock=clock))
    completion = await backend.complete(MESSAGES, LLMParams())
    assert completion.text == "back" and completion.attempts <= 5
    assert inner.calls <= 2 + 60 / 5 + 1  # the failing pair, then one probe per cooldown


async def test_patience_is_bounded_so_a_dead_endpoint_still_fails_the_item(clock) -> None:
    inner = Outage(clock, until=float("inf"))
    backend = ResilientBackend(inner, max_attempts=5, sleep=_moving(clock), rng=lambda: 0.0, outage_patience=30.0,
                               breaker=CircuitBreaker(failure_threshold=2, cooldown=5.0, clock=clock))
    started = clock()
    with pytest.raises(LLMError, match="gave up after 5 attempts"):
        await backend.complete(MESSAGES, LLMParams())
    assert 30.0 <= clock() - started < 120.0
