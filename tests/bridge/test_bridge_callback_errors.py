"""A callback that raises on every frame: one traceback, then a bounded number of
count lines that add up to every failure; the bridge keeps delivering.

Real dev engine on loopback (its answering callee sends a frame every 20 ms);
asyncio and trio, plain and async callbacks, and the blocking twin.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import anyio
import pytest
from bridge_fixtures import hang_up_calls_afterwards, marker_frames  # noqa: F401
from bridge_helpers import answered_call, answered_call_sync, seq_of, until, wait_until

import clutchcall.bridge._bridge as bridge_module
from clutchcall import AsyncVoice, Voice
from clutchcall.bridge import FrameCallback

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("marker_frames")]

#: Failures each test provokes (one frame every 20 ms: about 1.2 s).
FAILURES = 60


class UserBug(Exception):
    pass


@pytest.fixture(params=["default", "short"])
def log_interval(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> float:
    """The bridge's interval between count lines: its default (5 s: the count comes
    when the bridge closes), or 0.2 s so that counts are also logged mid-call."""
    if request.param == "short":
        monkeypatch.setattr(bridge_module, "CALLBACK_ERROR_LOG_INTERVAL", 0.2)
    return float(bridge_module.CALLBACK_ERROR_LOG_INTERVAL)


@pytest.fixture
def bridge_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    with caplog.at_level(logging.DEBUG, logger="clutchcall.bridge"):
        yield caplog


def check_records(
    caplog: pytest.LogCaptureFixture, sid: str, calls: int, elapsed: float, interval: float
) -> None:
    records = [
        r
        for r in caplog.records
        if r.name.startswith("clutchcall.bridge") and getattr(r, "call_sid", None) == sid
    ]
    first = [r for r in records if r.exc_info is not None]
    counts = [r for r in records if hasattr(r, "callback_failures")]
    # Nothing else is logged about this bridge's callback.
    assert len(records) == len(first) + len(counts), [r.getMessage() for r in records]
    assert len(first) == 1
    assert first[0].levelno == logging.ERROR
    assert first[0].exc_info is not None and first[0].exc_info[0] is UserBug
    assert "Traceback (most recent call last)" in logging.Formatter().format(first[0])
    # Every later failure is counted once, in a bounded number of lines.
    assert sum(r.callback_failures for r in counts) == calls - 1
    assert 1 <= len(counts) <= 2 + elapsed / interval, (len(counts), elapsed)
    assert all(r.exc_info is None for r in counts)


def raising(seen: list[int], *, awaitable: bool) -> FrameCallback:
    if awaitable:

        async def async_callback(frame: bytes, timestamp_us: int) -> None:
            seen.append(seq_of(frame))
            raise UserBug("no good")

        return async_callback

    def callback(frame: bytes, timestamp_us: int) -> None:
        seen.append(seq_of(frame))
        raise UserBug("no good")

    return callback


@pytest.mark.anyio
@pytest.mark.parametrize("awaitable", [False, True], ids=["plain", "async"])
async def test_a_raising_callback_is_logged_once_with_its_traceback_then_counted(
    awaitable: bool,
    async_voice: AsyncVoice,
    bridge_log: pytest.LogCaptureFixture,
    log_interval: float,
) -> None:
    sid = await answered_call(async_voice)
    seen: list[int] = []
    with anyio.fail_after(20):
        started = time.monotonic()
        bridge = await async_voice.audio_bridge.attach(
            sid, on_uplink=raising(seen, awaitable=awaitable)
        )
        async with bridge:
            await until(lambda: len(seen) >= FAILURES, 10)
        elapsed = time.monotonic() - started
    # The bridge kept delivering, in order, whatever the callback did.
    assert seen == list(range(seen[0], seen[0] + len(seen)))
    check_records(bridge_log, sid, len(seen), elapsed, log_interval)


def test_a_raising_callback_on_the_blocking_bridge_is_logged_once_then_counted(
    voice: Voice, bridge_log: pytest.LogCaptureFixture, log_interval: float
) -> None:
    sid = answered_call_sync(voice)
    seen: list[int] = []
    started = time.monotonic()
    with voice.audio_bridge.attach(sid, on_uplink=raising(seen, awaitable=False)):
        wait_until(lambda: len(seen) >= FAILURES, 10)
    elapsed = time.monotonic() - started
    assert seen == list(range(seen[0], seen[0] + len(seen)))
    check_records(bridge_log, sid, len(seen), elapsed, log_interval)


@pytest.mark.anyio
async def test_a_new_callback_gets_its_own_first_traceback(
    async_voice: AsyncVoice, bridge_log: pytest.LogCaptureFixture
) -> None:
    sid = await answered_call(async_voice)
    first: list[int] = []
    second: list[int] = []
    with anyio.fail_after(20):
        async with await async_voice.audio_bridge.attach(
            sid, on_uplink=raising(first, awaitable=False)
        ) as bridge:
            await until(lambda: len(first) >= 5)
            bridge.on_uplink(raising(second, awaitable=False))
            await until(lambda: len(second) >= 5)
    mine = [r for r in bridge_log.records if getattr(r, "call_sid", None) == sid]
    tracebacks = [r for r in mine if r.exc_info is not None]
    assert len(tracebacks) == 2
    counted = sum(getattr(r, "callback_failures", 0) for r in mine)
    assert counted == len(first) + len(second) - 2
