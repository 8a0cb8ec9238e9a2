"""pytest fixtures running the dev engine.

``clutchcall_engine`` is one engine for the whole session; ``clutchcall_dev`` is that
engine with its injected faults and request log reset for each test;
``clutchcall_voice`` / ``clutchcall_async_voice`` are clients of it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from .. import AsyncVoice, Voice
from ..dev import Engine

# Simulated ringing takes 1/20 of real time in tests.
TEST_TIME_SCALE = 0.05


@pytest.fixture(scope="session")
def clutchcall_engine() -> Iterator[Engine]:
    """A dev engine shared by the whole test session, on free loopback ports."""
    with Engine(time_scale=TEST_TIME_SCALE) as engine:
        yield engine


@pytest.fixture
def clutchcall_dev(clutchcall_engine: Engine) -> Iterator[Engine]:
    """The session's engine, with injected faults and the request log reset per test."""
    clutchcall_engine.faults.clear()
    yield clutchcall_engine
    clutchcall_engine.faults.clear()


@pytest.fixture
def clutchcall_voice(clutchcall_dev: Engine) -> Iterator[Voice]:
    """A sync client for the dev engine."""
    with clutchcall_dev.voice() as client:
        yield client


@pytest.fixture
async def clutchcall_async_voice(clutchcall_dev: Engine) -> AsyncIterator[AsyncVoice]:
    """An async client for the dev engine (asyncio or trio, per ``anyio_backend``)."""
    async with clutchcall_dev.async_voice() as client:
        yield client
