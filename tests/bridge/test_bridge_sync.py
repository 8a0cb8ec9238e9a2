"""The blocking Voice's audio bridges: one background thread per client, thread-safe."""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable

import pytest
from bridge_fixtures import hang_up_calls_afterwards, marker_frames  # noqa: F401
from bridge_helpers import (
    ECHO,
    answered_call_sync,
    callee_joined,
    frames_heard,
    seq_of,
    wait_until,
)

from clutchcall import AudioBridge, BridgeClosedError, InvalidArgumentError, Voice
from clutchcall.dev import Engine

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("marker_frames")]


def bridge_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "clutchcall-audio-bridge"]


def test_sync_attach_receives_uplink_and_its_downlink_is_counted_exactly(
    voice: Voice, engine: Engine
) -> None:
    sid = answered_call_sync(voice)
    heard: list[tuple[int, int]] = []
    with voice.audio_bridge.attach(
        sid, on_uplink=lambda f, ts: heard.append((seq_of(f), ts))
    ) as bridge:
        assert isinstance(bridge, AudioBridge) and bridge.call_sid == sid
        wait_until(lambda: len(heard) >= 10)
        for n in range(25):
            bridge.publish_downlink(b"sync-%d" % n, timestamp_us=n)
        wait_until(lambda: frames_heard(engine, sid) >= 25)
        # Out once the relay's acknowledgement is in, which may follow the callee's copy.
        wait_until(lambda: bridge.stats.frames_out >= 25)
        assert bridge.stats.frames_out == 25
    seqs = [s for s, _ in heard]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    assert [ts for _, ts in heard] == [s * 20_000 for s in seqs]
    counters = engine.media_counters(sid)
    assert counters is not None
    assert counters["downlink"] == {
        "frames": 25,
        "bytes": sum(len(b"sync-%d" % n) for n in range(25)),
        "lastTimestampUs": 24,
    }


def test_sync_iteration_and_echo_round_trip(voice: Voice, engine: Engine) -> None:
    sid = answered_call_sync(voice, to=ECHO)
    with voice.audio_bridge.attach(sid) as bridge:
        frames = bridge.uplink()
        wait_until(lambda: callee_joined(engine, sid))
        for n in range(5):
            bridge.publish_downlink(b"ping-%d" % n, 100 + n)
        got = [next(frames) for _ in range(5)]
    assert [(f.data, f.timestamp_us) for f in got] == [(b"ping-%d" % n, 100 + n) for n in range(5)]
    assert list(frames) == []  # closed: iteration ends


def test_publishing_from_many_threads_and_from_the_callback(voice: Voice, engine: Engine) -> None:
    sid = answered_call_sync(voice)
    replies = 0

    def answer(frame: bytes, timestamp_us: int) -> None:
        # Runs on the bridge thread; bridge methods work from here too.
        nonlocal replies
        if replies < 10:
            replies += 1
            bridge.publish_downlink(b"reply", timestamp_us)

    bridge = voice.audio_bridge.attach(sid)
    try:
        wait_until(lambda: callee_joined(engine, sid))

        def talk(tag: int) -> None:
            for n in range(10):
                bridge.publish_downlink(b"thread-%d-%d" % (tag, n))

        threads = [threading.Thread(target=talk, args=(tag,)) for tag in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        bridge.on_uplink(answer)
        wait_until(lambda: frames_heard(engine, sid) >= 50)
    finally:
        bridge.close()
    received = [f.data for f in engine.received_downlink(sid)]
    assert sorted(received) == sorted(
        [b"thread-%d-%d" % (t, n) for t in range(4) for n in range(10)] + [b"reply"] * 10
    )


def test_close_and_voice_close_leave_no_thread_behind(engine: Engine) -> None:
    before = len(bridge_threads())
    with engine.voice() as voice:
        sid = answered_call_sync(voice)
        first = voice.audio_bridge.attach(sid)
        second = voice.audio_bridge.attach_caller(sid, codec="g711_ulaw")
        assert len(bridge_threads()) == before + 1  # one thread for the whole client
        first.close()
        first.close()
        with pytest.raises(BridgeClosedError):
            first.publish_downlink(b"late")
        with pytest.raises(InvalidArgumentError):
            second.publish_downlink(b"wrong side")
    assert second.closed
    with pytest.raises(BridgeClosedError):  # the client's bridge thread is gone
        second.publish_uplink(b"after the client closed")
    wait_until(lambda: len(bridge_threads()) == before)
    wait_until(lambda: engine.relay_sessions(sid) <= 1)


def test_a_garbage_collected_sync_bridge_warns_and_shuts_down(voice: Voice, engine: Engine) -> None:
    sid = answered_call_sync(voice)
    bridge: AudioBridge | None = voice.audio_bridge.attach(sid)
    wait_until(lambda: engine.relay_sessions(sid) == 2)
    with pytest.warns(ResourceWarning, match=f"bridge of {sid} was garbage-collected"):
        bridge = None
        gc.collect()
    assert bridge is None
    wait_until(lambda: engine.relay_sessions(sid) == 1)
    wait_until(lambda: not voice.audio_bridge._registry._cores)


def test_sync_bridges_share_a_connection_and_each_hears_its_own_call(engine: Engine) -> None:
    with engine.voice() as voice:
        sids = [answered_call_sync(voice) for _ in range(3)]
        heard: dict[str, list[int]] = {sid: [] for sid in sids}

        def recorder(seqs: list[int]) -> Callable[[bytes, int], None]:
            return lambda frame, timestamp_us: seqs.append(seq_of(frame))

        bridges = [voice.audio_bridge.attach(sid, on_uplink=recorder(heard[sid])) for sid in sids]
        try:
            wait_until(lambda: all(len(h) >= 10 for h in heard.values()))
            carrying = [c for c in engine.relay_client_sessions() if c & set(sids)]
            assert carrying == [frozenset(sids)]
            bridges[0].close()
            count = len(heard[sids[1]])
            wait_until(lambda: len(heard[sids[1]]) >= count + 10)
        finally:
            for bridge in bridges:
                bridge.close()
        wait_until(lambda: not any(c & set(sids) for c in engine.relay_client_sessions()))
    for seqs in heard.values():
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
