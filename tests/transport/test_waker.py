"""``backend.Waker``: the transport driver's wait between transmit passes."""

from __future__ import annotations

import math

import anyio
import pytest

from clutchcall.transport.backend import Waker

pytestmark = pytest.mark.anyio


async def test_a_wait_ends_at_its_deadline() -> None:
    waker = Waker()
    start = anyio.current_time()
    await waker.wait(start + 0.05)
    assert anyio.current_time() - start >= 0.05
    assert not waker.waiting


async def test_set_ends_a_wait_at_once() -> None:
    waker = Waker()
    woke_at: list[float] = []

    async def sleeper() -> None:
        await waker.wait(math.inf)
        woke_at.append(anyio.current_time())

    async with anyio.create_task_group() as tg:
        tg.start_soon(sleeper)
        await anyio.sleep(0.02)
        assert waker.waiting
        set_at = anyio.current_time()
        waker.set()
    assert woke_at and woke_at[0] - set_at < 0.02


async def test_a_set_before_the_wait_is_kept_until_cleared() -> None:
    waker = Waker()
    waker.set()
    with anyio.fail_after(1):
        await waker.wait(math.inf)  # returns at once
        await waker.wait(math.inf)  # still set: nothing cleared it
    waker.clear()
    start = anyio.current_time()
    await waker.wait(start + 0.03)
    assert anyio.current_time() - start >= 0.03


async def test_advance_brings_the_deadline_forward_only() -> None:
    waker = Waker()
    durations: list[float] = []

    async def sleeper(deadline_in: float) -> None:
        start = anyio.current_time()
        await waker.wait(start + deadline_in)
        durations.append(anyio.current_time() - start)

    async with anyio.create_task_group() as tg:
        tg.start_soon(sleeper, 10.0)
        await anyio.sleep(0.01)
        waker.advance(anyio.current_time() + 20.0)  # later: ignored
        assert waker.deadline < anyio.current_time() + 10.0
        waker.advance(anyio.current_time() + 0.02)
    assert 0.02 <= durations[0] < 5.0

    waker.advance(anyio.current_time())  # no wait in progress: nothing happens
    assert waker.deadline == math.inf


async def test_a_waiting_task_can_be_cancelled() -> None:
    waker = Waker()
    with anyio.move_on_after(0.02) as scope:
        await waker.wait(math.inf)
    assert scope.cancelled_caught
    assert not waker.waiting
    waker.set()  # no wait in progress: only remembered
    with anyio.fail_after(1):
        await waker.wait(math.inf)
