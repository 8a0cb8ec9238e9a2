"""Fixtures of the bridge tests (imported by each test module).

``own_engine``: an engine of its own for tests that stop, restart or flood its relay;
``hang_up_calls_afterwards`` (autouse where imported) ends calls left running;
``marker_frames``: answering callees send numbered marker frames instead of audio
(the engine's dev-only ``callee_markers`` switch), for tests of frame order and loss.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from clutchcall.dev import Engine
from clutchcall.dev._state import StateError


@pytest.fixture(scope="module", name="own_engine")
def own_engine_fixture() -> Iterator[Engine]:
    """An engine for tests that stop, restart or flood its relay."""
    with Engine(time_scale=0.05, callee_markers=True) as engine:
        yield engine


@pytest.fixture
def marker_frames(clutchcall_engine: Engine) -> Iterator[None]:
    """Callees of calls placed during the test send numbered markers (``seq_of``)."""
    clutchcall_engine.callee_markers = True
    try:
        yield
    finally:
        clutchcall_engine.callee_markers = False


@pytest.fixture(autouse=True)
def hang_up_calls_afterwards(clutchcall_engine: Engine) -> Iterator[None]:
    """End the calls a test left running, so that their simulated callees stop
    talking and do not load the next tests."""
    yield
    store = clutchcall_engine.store
    with store.lock:
        calls = list(store.calls.values())
    for call in calls:
        if call.ending(store.clock()) is None:
            with contextlib.suppress(StateError):
                store.hangup(call)
