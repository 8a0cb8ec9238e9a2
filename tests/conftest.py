"""Shared test configuration: every async test runs on both asyncio and trio."""

from __future__ import annotations

import pytest

from clutchcall import AsyncVoice, Voice
from clutchcall.dev import Engine

# Loaded here rather than with `-p` so that coverage is already measuring when it
# imports the package.
pytest_plugins = ["clutchcall.testing.plugin"]


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def engine(clutchcall_dev: Engine) -> Engine:
    """The session's dev engine, faults and request log reset for this test."""
    return clutchcall_dev


@pytest.fixture
def voice(clutchcall_voice: Voice) -> Voice:
    return clutchcall_voice


@pytest.fixture
def async_voice(clutchcall_async_voice: AsyncVoice) -> AsyncVoice:
    return clutchcall_async_voice
