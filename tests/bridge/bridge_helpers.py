"""Shared helpers for the bridge tests (plain functions)."""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from typing import Any

import anyio

from clutchcall import AsyncVoice, CallStatus, Voice
from clutchcall.dev import Engine

ANSWERS = "+15551234567"
ECHO = "+15005550004"
FROM = "+15558675309"


def seq_of(frame: bytes) -> int:
    """The sequence number a simulated callee put in an uplink frame."""
    tag, seq = struct.unpack(">4sI", frame[:8])
    assert tag == b"CCsp", frame[:8]
    return int(seq)


async def answered_call(voice: AsyncVoice, to: str = ANSWERS) -> str:
    call = await voice.calls.originate(to=to, from_=FROM, trunk_id="trunk_main")
    with anyio.fail_after(5):
        while (await voice.calls.get(call.sid)).status is not CallStatus.IN_PROGRESS:  # noqa: ASYNC110
            await anyio.sleep(0.01)
    return call.sid


def answered_call_sync(voice: Voice, to: str = ANSWERS) -> str:
    call = voice.calls.originate(to=to, from_=FROM, trunk_id="trunk_main")
    wait_until(lambda: voice.calls.get(call.sid).status is CallStatus.IN_PROGRESS)
    return call.sid


async def until(condition: Callable[[], Any], within: float = 5.0) -> None:
    """Poll ``condition`` (state in another thread: the engine's) until it holds."""
    with anyio.fail_after(within):
        while not condition():  # noqa: ASYNC110
            await anyio.sleep(0.01)


def wait_until(condition: Callable[[], Any], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(0.01)


def callee_joined(engine: Engine, sid: str) -> bool:
    counters = engine.media_counters(sid)
    return bool(counters and counters["joined"])


async def wait_callee(engine: Engine, sid: str) -> None:
    await until(lambda: callee_joined(engine, sid))


def frames_heard(engine: Engine, sid: str) -> int:
    """Downlink frames the simulated callee of ``sid`` has received."""
    counters = engine.media_counters(sid)
    return int(counters["downlink"]["frames"]) if counters else 0
