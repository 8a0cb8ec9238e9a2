"""AsyncVoice audio bridges against the dev engine's relay and simulated callees.

Real sockets on loopback, asyncio and trio, raw QUIC and WebTransport.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator

import anyio
import anyio.lowlevel
import pytest
from bridge_fixtures import hang_up_calls_afterwards, marker_frames  # noqa: F401
from bridge_helpers import ECHO, answered_call, frames_heard, seq_of, until, wait_callee

from clutchcall import AsyncAudioBridge, AsyncVoice, BridgeClosedError, InvalidArgumentError
from clutchcall.bridge import AudioFrame
from clutchcall.dev import Engine

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60), pytest.mark.usefixtures("marker_frames")]


@pytest.fixture(params=["quic", "webtransport"])
async def bridge_voice(request: pytest.FixtureRequest, engine: Engine) -> AsyncIterator[AsyncVoice]:
    """An AsyncVoice whose bridges reach the relay over raw QUIC or WebTransport."""
    url = engine.relay_url if request.param == "quic" else engine.relay_webtransport_url
    async with engine.async_voice(relay_url=url) as voice:
        yield voice


async def test_attach_receives_the_callees_uplink_frames_in_order(
    bridge_voice: AsyncVoice,
) -> None:
    sid = await answered_call(bridge_voice)
    frames: list[AudioFrame] = []
    with anyio.fail_after(10):
        async with await bridge_voice.audio_bridge.attach(sid) as bridge:
            assert bridge.call_sid == sid
            assert (bridge.codec, bridge.sample_rate, bridge.channels, bridge.frame_ms) == (
                "opus",
                48000,
                1,
                20,
            )
            async for frame in bridge.uplink():
                frames.append(frame)
                if len(frames) == 20:
                    break
            stats = bridge.stats
    seqs = [seq_of(f.data) for f in frames]
    assert seqs == list(range(seqs[0], seqs[0] + 20))
    # The callee stamps frame n with n * 20 ms; the relay keeps the publisher's stamps.
    assert [f.timestamp_us for f in frames] == [s * 20_000 for s in seqs]
    assert stats.frames_in >= 20 and stats.bytes_in >= 20 * 80
    assert stats.reconnects == 0


async def test_published_downlink_frames_match_the_engine_counters_exactly(
    bridge_voice: AsyncVoice, engine: Engine
) -> None:
    sid = await answered_call(bridge_voice)
    sent = [(b"tts-%03d" % n + bytes(n), 1_000_000 + 20_000 * n) for n in range(30)]
    with anyio.fail_after(10):
        async with await bridge_voice.audio_bridge.attach(sid) as bridge:
            await wait_callee(engine, sid)
            for data, timestamp in sent:
                await bridge.publish_downlink(data, timestamp_us=timestamp)
                await anyio.sleep(0.002)
            await until(lambda: frames_heard(engine, sid) >= 30)
            await anyio.sleep(0.1)  # nothing more may arrive
            assert bridge.stats.frames_out == 30
    counters = engine.media_counters(sid)
    assert counters is not None
    assert counters["downlink"] == {
        "frames": 30,
        "bytes": sum(len(d) for d, _ in sent),
        "lastTimestampUs": sent[-1][1],
    }
    received = engine.received_downlink(sid)
    assert [(f.data, f.timestamp_us) for f in received] == sent


async def test_default_timestamps_come_from_a_monotonic_microsecond_clock(
    bridge_voice: AsyncVoice, engine: Engine
) -> None:
    sid = await answered_call(bridge_voice)
    with anyio.fail_after(10):
        async with await bridge_voice.audio_bridge.attach(sid) as bridge:
            await wait_callee(engine, sid)
            before = anyio.current_time()
            for n in range(5):
                await bridge.publish_downlink(b"frame%d" % n)
                await anyio.sleep(0.005)
            await until(lambda: frames_heard(engine, sid) >= 5)
    stamps = [f.timestamp_us for f in engine.received_downlink(sid)]
    assert stamps == sorted(stamps) and len(set(stamps)) == 5
    assert stamps[-1] - stamps[0] >= 20_000  # four sleeps of 5 ms, in microseconds
    assert before >= 0


async def test_echo_callee_round_trip(bridge_voice: AsyncVoice, engine: Engine) -> None:
    sid = await answered_call(bridge_voice, to=ECHO)
    echoed: list[tuple[bytes, int]] = []
    with anyio.fail_after(10):
        bridge = await bridge_voice.audio_bridge.attach(
            sid, on_uplink=lambda frame, ts: echoed.append((frame, ts))
        )
        try:
            await wait_callee(engine, sid)
            sent = [(b"echo-%d" % n, 5_000 + n) for n in range(20)]
            for data, ts in sent:
                await bridge.publish_downlink(data, ts)
                await anyio.sleep(0.002)
            await until(lambda: len(echoed) >= 20)
        finally:
            await bridge.aclose()
    assert echoed == sent


async def test_attach_caller_mirrors_attach(bridge_voice: AsyncVoice, engine: Engine) -> None:
    """A softphone (caller side) and a server bridge talk through the relay."""
    sid = await answered_call(bridge_voice)
    heard_by_server: list[bytes] = []
    heard_by_caller: list[tuple[bytes, int]] = []
    with anyio.fail_after(10):
        caller = await bridge_voice.audio_bridge.attach_caller(
            sid, codec="pcm16", on_downlink=lambda f, ts: heard_by_caller.append((f, ts))
        )
        # One format on both sides: the relay forwards the frames as they are.
        server = await bridge_voice.audio_bridge.attach(sid, codec="pcm16")
        try:
            assert caller.role == "caller" and server.role == "server"
            for n in range(10):
                await caller.publish_uplink(b"mic-%d" % n, 40_000 + n)
            # The newest publisher of a track is the one heard: the softphone, not the
            # simulated callee, once it has published.
            async for frame in server.uplink():
                if frame.data.startswith(b"mic-"):
                    heard_by_server.append(frame.data)
                if len(heard_by_server) == 10:
                    break
            for n in range(10):
                await server.publish_downlink(b"tts-%d" % n, 90_000 + n)
            await until(lambda: len(heard_by_caller) >= 10)
            with pytest.raises(InvalidArgumentError):
                await caller.publish_downlink(b"x")
            with pytest.raises(InvalidArgumentError):
                server.on_downlink(print)
        finally:
            await caller.aclose()
            await server.aclose()
    assert heard_by_server == [b"mic-%d" % n for n in range(10)]
    assert heard_by_caller == [(b"tts-%d" % n, 90_000 + n) for n in range(10)]


async def test_swapping_the_callback_mid_call_loses_no_frame(
    bridge_voice: AsyncVoice,
) -> None:
    sid = await answered_call(bridge_voice)
    first: list[int] = []
    second: list[int] = []
    with anyio.fail_after(10):
        bridge = await bridge_voice.audio_bridge.attach(
            sid, on_uplink=lambda f, ts: first.append(seq_of(f))
        )
        try:
            await until(lambda: len(first) >= 10)

            async def consume(frame: bytes, timestamp_us: int) -> None:  # async works too
                await anyio.lowlevel.checkpoint()
                second.append(seq_of(frame))

            bridge.on_uplink(consume)
            await until(lambda: len(second) >= 10)
        finally:
            await bridge.aclose()
    combined = first + second
    assert combined == list(range(combined[0], combined[0] + len(combined)))


async def test_a_failing_callback_is_logged_and_the_bridge_keeps_going(
    bridge_voice: AsyncVoice, caplog: pytest.LogCaptureFixture
) -> None:
    sid = await answered_call(bridge_voice)
    seen: list[int] = []

    def flaky(frame: bytes, timestamp_us: int) -> None:
        seen.append(seq_of(frame))
        if len(seen) % 2:
            raise RuntimeError("user bug")

    with anyio.fail_after(10), caplog.at_level(logging.ERROR):
        async with await bridge_voice.audio_bridge.attach(sid, on_uplink=flaky):
            await until(lambda: len(seen) >= 6)
    assert seen[:6] == list(range(seen[0], seen[0] + 6))
    assert "user bug" in caplog.text


async def test_close_ends_iterators_tracks_and_session(
    bridge_voice: AsyncVoice, engine: Engine
) -> None:
    sid = await answered_call(bridge_voice)
    with anyio.fail_after(10):
        bridge = await bridge_voice.audio_bridge.attach(sid)
        frames = bridge.uplink()
        await frames.__anext__()
        await until(lambda: engine.relay_sessions(sid) == 2)  # the bridge and the callee
        await bridge.aclose()
        await bridge.aclose()  # idempotent
        assert bridge.closed and bridge.ended
        async for _ in frames:  # drains what was buffered, then stops
            pass
        with pytest.raises(BridgeClosedError):
            await bridge.publish_downlink(b"late")
        await until(lambda: engine.relay_sessions(sid) == 1)


async def test_voice_close_closes_its_bridges(engine: Engine) -> None:
    voice = engine.async_voice()
    sid = await answered_call(voice)
    with anyio.fail_after(10):
        bridge = await voice.audio_bridge.attach(sid)
        await voice.close()
        assert bridge.closed
        await until(lambda: engine.relay_sessions(sid) <= 1)


async def test_a_garbage_collected_bridge_warns_and_shuts_down(
    bridge_voice: AsyncVoice, engine: Engine
) -> None:
    sid = await answered_call(bridge_voice)
    with anyio.fail_after(10):
        bridge: AsyncAudioBridge | None = await bridge_voice.audio_bridge.attach(
            sid, on_uplink=lambda f, ts: None
        )
        await until(lambda: engine.relay_sessions(sid) == 2)
        with pytest.warns(ResourceWarning, match=f"bridge of {sid} was garbage-collected"):
            bridge = None
            gc.collect()
        assert bridge is None
        # No half-alive tracks: the session leaves the relay.
        await until(lambda: engine.relay_sessions(sid) == 1)
        await until(lambda: not bridge_voice.audio_bridge._registry._cores)


async def test_bad_arguments_are_refused_before_any_network_use(
    async_voice: AsyncVoice,
) -> None:
    with pytest.raises(InvalidArgumentError, match="codec"):
        await async_voice.audio_bridge.attach("CA" + "0" * 32, codec="mp3")
    with pytest.raises(InvalidArgumentError, match="sample_rate"):
        await async_voice.audio_bridge.attach("CA" + "0" * 32, sample_rate=0)
    with pytest.raises(InvalidArgumentError, match="on_uplink"):
        await async_voice.audio_bridge.attach("CA" + "0" * 32, on_uplink=42)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="call_sid"):
        await async_voice.audio_bridge.attach("")
