"""Fixtures for the LLM layer: a fake server on a real socket, and time that tests control."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from clinreason.llm.base import ChatMessage
from clinreason.testing.fake_server import FakeOpenAIServer


class RecordingSleep:
    """Stands in for asyncio.sleep: remembers each requested delay and returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await asyncio.sleep(0)


class ManualClock:
    """A monotonic clock that only moves when the test says so."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def recording_sleep() -> RecordingSleep:
    return RecordingSleep()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def start_server() -> AsyncIterator[Callable[..., Awaitable[FakeOpenAIServer]]]:
    """Start FakeOpenAIServers on this test's event loop; all are stopped at teardown."""
    servers: list[FakeOpenAIServer] = []

    async def start(**kwargs: Any) -> FakeOpenAIServer:
        server = FakeOpenAIServer(**kwargs)
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.stop()


@pytest.fixture
def question_messages() -> list[ChatMessage]:
    return [
        {"role": "system", "content": "You are a careful clinician. Explain step by step."},
        {"role": "user", "content": (
            "A 24-year-old woman has fatigue and a microcytic anaemia. Most likely cause?\n"
            "A. Iron deficiency\nB. Vitamin B12 deficiency\nC. Folate deficiency\nD. Haemolysis\n"
            "Gold answer: A"
        )},
    ]
