"""Helpers shared by the control-plane tests."""

from __future__ import annotations

import time
from typing import Any

import anyio

from clutchcall import AsyncCall, AsyncVoice, Call, CallStatus, Voice
from clutchcall._control._retry import RetryPolicy

DEST = "+15551234567"
CALLER_ID = "+15558675309"
TRUNK = "trunk_main"
INVALID = "+15005550001"
NO_ANSWER = "+15005550002"
BUSY = "+15005550003"
HANGS_UP = "+15005550005"
ENDED = {CallStatus.COMPLETED, CallStatus.FAILED, CallStatus.NO_ANSWER}


def wait_status(call: Call, wanted: set[CallStatus], timeout: float = 5.0) -> Call:
    """Poll until the call reaches one of ``wanted``; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while call.refresh().status not in wanted:
        assert time.monotonic() < deadline, f"{call} never reached {wanted}"
        time.sleep(0.01)
    return call


async def async_wait_status(call: AsyncCall, wanted: set[CallStatus]) -> AsyncCall:
    """Poll (the control plane has no events) until ``wanted``; fail the test after 5 s."""
    with anyio.fail_after(5):
        while (await call.refresh()).status not in wanted:  # noqa: ASYNC110
            await anyio.sleep(0.01)
    return call


def fast_policy(voice: Voice | AsyncVoice) -> None:
    """Shrink backoff so tests don't wait seconds (Retry-After is still honoured)."""
    transport: Any = voice._http._transport
    transport._policy = RetryPolicy(
        max_retries=voice.max_retries, initial_delay=0.01, max_delay=0.05
    )
