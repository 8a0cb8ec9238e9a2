"""A bridge whose call ends says so: closed, iterators finished, CallEndedError.

The call is hung up through the control plane while the bridge is open (for the
bridge that is the other side hanging up: the relay ends the call's tracks).
Real dev engine on loopback; asyncio and trio, and the blocking twin.
"""

from __future__ import annotations

import anyio
import pytest
from bridge_fixtures import hang_up_calls_afterwards  # noqa: F401
from bridge_helpers import (
    ECHO,
    answered_call,
    answered_call_sync,
    callee_joined,
    until,
    wait_until,
)

from clutchcall import AsyncVoice, BridgeClosedError, CallEndedError, Voice
from clutchcall.bridge import AudioFrame
from clutchcall.dev import Engine

pytestmark = pytest.mark.timeout(60)


@pytest.mark.anyio
@pytest.mark.parametrize("side", ["server", "caller"])
async def test_a_hung_up_call_closes_the_bridge_ends_its_iteration_and_refuses_publishing(
    side: str, async_voice: AsyncVoice, engine: Engine
) -> None:
    sid = await answered_call(async_voice, to=ECHO)
    received: list[AudioFrame] = []
    with anyio.fail_after(20):
        if side == "server":
            bridge = await async_voice.audio_bridge.attach(sid)
            frames, publish = bridge.uplink(), bridge.publish_downlink
        else:
            bridge = await async_voice.audio_bridge.attach_caller(sid)
            frames, publish = bridge.downlink(), bridge.publish_uplink
        await until(lambda: callee_joined(engine, sid))

        async def iterate() -> None:
            async for frame in frames:  # must end by itself when the call ends
                received.append(frame)

        async with anyio.create_task_group() as tg:
            tg.start_soon(iterate)
            for n in range(5):  # the echo callee sends them back
                await publish(b"before-%d" % n)
            await until(lambda: len(received) >= 5)
            assert not bridge.closed
            await async_voice.calls.hangup(sid)
            await until(lambda: bridge.closed)
            with pytest.raises(CallEndedError) as info:
                await publish(b"after the hang-up")
        # The iteration ended on its own (the task group could be left).
        assert bridge.ended and bridge.closed
        assert info.value.call_sid == sid and sid in str(info.value)
        assert isinstance(info.value, BridgeClosedError)
        assert "call ended" in repr(bridge)
        await until(lambda: engine.relay_sessions(sid) == 0)  # its session is released
        await bridge.close()  # closing an ended bridge is fine, and changes nothing
        with pytest.raises(CallEndedError):
            await publish(b"after close()")
    assert [f.data for f in received[:5]] == [b"before-%d" % n for n in range(5)]


@pytest.mark.anyio
async def test_frames_waiting_for_a_consumer_are_still_delivered_after_the_call_ended(
    async_voice: AsyncVoice, engine: Engine
) -> None:
    sid = await answered_call(async_voice, to=ECHO)
    with anyio.fail_after(20):
        bridge = await async_voice.audio_bridge.attach(sid)  # no consumer yet
        await until(lambda: callee_joined(engine, sid))
        for n in range(5):
            await bridge.publish_downlink(b"kept-%d" % n)
        await until(lambda: bridge.stats.frames_in >= 5)
        await async_voice.calls.hangup(sid)
        await until(lambda: bridge.closed)
        with pytest.raises(CallEndedError):
            await bridge.publish_downlink(b"too late")
        # The buffered frames are there for the first consumer, then the iteration ends.
        kept = [frame.data async for frame in bridge.uplink()]
        assert bridge.ended
    assert kept == [b"kept-%d" % n for n in range(5)]


def test_the_blocking_bridge_of_a_hung_up_call_closes_and_its_iteration_ends(
    voice: Voice, engine: Engine
) -> None:
    sid = answered_call_sync(voice, to=ECHO)
    bridge = voice.audio_bridge.attach(sid)
    try:
        frames = bridge.uplink()
        wait_until(lambda: callee_joined(engine, sid))
        for n in range(5):
            bridge.publish_downlink(b"before-%d" % n)
        first = [next(frames).data for _ in range(5)]
        voice.calls.hangup(sid)
        rest = list(frames)  # returns: the iteration ends with the call
        assert bridge.closed and bridge.ended
        with pytest.raises(CallEndedError) as info:
            bridge.publish_downlink(b"after the hang-up")
        assert info.value.call_sid == sid
        wait_until(lambda: engine.relay_sessions(sid) == 0)
    finally:
        bridge.close()
    assert first == [b"before-%d" % n for n in range(5)]
    assert rest == []
