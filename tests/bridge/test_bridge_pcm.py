"""Decoded audio on bridges (clutchcall.audio.PcmBridge / AsyncPcmBridge) against the
dev engine: PCM published on one track comes back decoded on the other, in each codec.

The echo callee (+15005550004) sends every downlink frame back on uplink, so a tone
published with ``publish_downlink`` is decoded again from ``uplink()``.
"""

from __future__ import annotations

import inspect
import itertools
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import numpy as np
import pytest
from bridge_fixtures import hang_up_calls_afterwards  # noqa: F401
from bridge_helpers import ECHO, answered_call, answered_call_sync, until, wait_callee, wait_until

from clutchcall import AsyncVoice, InvalidArgumentError, Voice
from clutchcall.audio import (
    AsyncPcmBridge,
    AsyncPcmStream,
    PcmBridge,
    PcmFrame,
    PcmStream,
    make_codec,
    synth_tone,
)
from clutchcall.audio.codecs import Pcm
from clutchcall.audio.pcm_bridge import _Outbox
from clutchcall.dev import Engine

pytestmark = pytest.mark.timeout(60)

#: The four codecs, each at a rate it supports (None: the bridge's default).
FORMATS = [("opus", None), ("pcm16", 16000), ("g711_ulaw", None), ("g711_alaw", None)]
TONE_HZ = 1000.0
TONE_S = 0.3
FRAMES = 15  # 0.3 s in 20 ms frames


def dominant_hz(frames: list[PcmFrame]) -> float:
    signal = np.concatenate([f.samples[:, 0] for f in frames]).astype(np.float64)
    spectrum = np.abs(np.fft.rfft(signal * np.hanning(len(signal))))
    return float(np.fft.rfftfreq(len(signal), 1 / frames[0].sample_rate)[spectrum.argmax()])


def check_echoed_tone(frames: list[PcmFrame], rate: int) -> None:
    assert len(frames) == FRAMES
    for frame in frames:
        assert (frame.sample_rate, frame.channels) == (rate, 1)
        assert frame.samples.dtype == np.int16 and frame.samples.shape == (rate // 50, 1)
        assert frame.duration_us == 20_000
    stamps = [f.timestamp_us for f in frames]
    assert all(b - a >= 20_000 for a, b in itertools.pairwise(stamps))
    assert abs(dominant_hz(frames) - TONE_HZ) <= 25
    loudest = max(int(np.abs(f.samples).max()) for f in frames)
    assert loudest > 0.2 * 32767  # the 0.3 full-scale tone, not silence or noise


@pytest.mark.anyio
@pytest.mark.parametrize(("codec", "rate"), FORMATS)
async def test_pcm_published_on_downlink_decodes_from_the_echoed_uplink(
    async_voice: AsyncVoice, engine: Engine, codec: str, rate: int | None
) -> None:
    sid = await answered_call(async_voice, to=ECHO)
    heard: list[PcmFrame] = []
    with anyio.fail_after(20):
        async with await async_voice.audio_bridge.attach(
            sid, codec=codec, sample_rate=rate
        ) as bridge:
            await wait_callee(engine, sid)
            pcm = AsyncPcmBridge(bridge)
            stream = pcm.uplink()
            async with anyio.create_task_group() as tg:

                async def listen() -> None:
                    async for frame in stream:
                        heard.append(frame)
                        if len(heard) == FRAMES:
                            return

                tg.start_soon(listen)
                await pcm.publish_downlink(
                    synth_tone(TONE_HZ, TONE_S, bridge.sample_rate), flush=True
                )
            await stream.aclose()
    check_echoed_tone(heard, bridge.sample_rate)
    assert stream.decode_errors == 0 and stream.frames == FRAMES
    sent = engine.received_downlink(sid)
    assert len(sent) == FRAMES
    expected_size = make_codec(codec, sample_rate=bridge.sample_rate).frame_bytes
    assert expected_size is None or {len(f.data) for f in sent} == {expected_size}


@pytest.mark.parametrize(("codec", "rate"), FORMATS)
def test_sync_pcm_published_on_downlink_decodes_from_the_echoed_uplink(
    voice: Voice, engine: Engine, codec: str, rate: int | None
) -> None:
    sid = answered_call_sync(voice, to=ECHO)
    with voice.audio_bridge.attach(sid, codec=codec, sample_rate=rate) as bridge:
        wait_until(lambda: (engine.media_counters(sid) or {}).get("joined"))
        pcm = PcmBridge(bridge)
        stream = pcm.uplink()
        # Published in uneven pieces: what does not fill a frame waits for the next.
        tone = synth_tone(TONE_HZ, TONE_S, bridge.sample_rate)
        cuts = [0, 7, len(tone) // 3, len(tone) // 3 + 1, len(tone)]
        for start, end in itertools.pairwise(cuts):
            pcm.publish_downlink(tone[start:end], flush=end == len(tone))
        heard = list(itertools.islice(stream, FRAMES))
    check_echoed_tone(heard, bridge.sample_rate)
    assert stream.decode_errors == 0
    assert list(stream) == []  # the bridge closed: the stream ended


@pytest.mark.anyio
async def test_caller_and_server_pcm_in_both_directions_skip_frames_that_do_not_decode(
    async_voice: AsyncVoice, caplog: pytest.LogCaptureFixture
) -> None:
    """A caller bridge and a server bridge on one call, pcm16 at 16 kHz (lossless):
    the server decodes exactly what the caller published, skipping (and counting,
    and logging once) frames that are not pcm16; the caller hears the server's
    answer converted to 8 kHz."""
    sid = await answered_call(async_voice)
    rng = np.random.default_rng(7)
    speech = rng.integers(-20000, 20000, size=(3 * 320, 1), dtype=np.int16)
    with anyio.fail_after(20):
        # The caller joins first, so the relay carries its uplink rather than the
        # simulated callee's.
        async with (
            await async_voice.audio_bridge.attach_caller(
                sid, codec="pcm16", sample_rate=16000
            ) as caller_bridge,
            await async_voice.audio_bridge.attach(
                sid, codec="pcm16", sample_rate=16000
            ) as server_bridge,
        ):
            caller, server = AsyncPcmBridge(caller_bridge), AsyncPcmBridge(server_bridge)
            heard = server.uplink()
            answers = caller.downlink(sample_rate=8000)
            with caplog.at_level(logging.DEBUG, logger="clutchcall.audio.pcm_bridge"):
                for n in range(5):  # not pcm16 frames of 20 ms at 16 kHz (640 bytes)
                    await caller_bridge.publish_uplink(b"not audio %d" % n)
                await caller.publish_uplink(speech[:100])
                await caller.publish_uplink(speech[100:900])
                await caller.publish_uplink(speech[900:])
                received = [await anext(heard) for _ in range(3)]
            assert heard.decode_errors == 5 and heard.frames == 3
            warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
            assert len(warnings) == 1 and "decode_errors" in warnings[0].getMessage()
            assert np.array_equal(np.concatenate([f.samples for f in received]), speech)

            await server.publish_downlink(synth_tone(TONE_HZ, TONE_S, 16000), flush=True)
            answer = [await anext(answers) for _ in range(FRAMES)]
            await heard.aclose()
        # The bridges are closed: the stream ends with what the resampler held.
        tail = [f async for f in answers]
    assert len(tail) <= 1
    assert {(f.sample_rate, f.channels) for f in answer + tail} == {(8000, 1)}
    assert abs(dominant_hz(answer[2:]) - TONE_HZ) <= 25
    # 15 frames of 20 ms at 8 kHz, every sample accounted for.
    assert sum(f.samples_per_channel for f in answer + tail) == FRAMES * 160


@asynccontextmanager
async def pcm16_bridge(
    async_voice: AsyncVoice, engine: Engine, sid: str
) -> AsyncIterator[AsyncPcmBridge]:
    """A server-side pcm16 bridge at 16 kHz on ``sid``, once the simulated callee joined."""
    async with await async_voice.audio_bridge.attach(
        sid, codec="pcm16", sample_rate=16000
    ) as bridge:
        await wait_callee(engine, sid)
        yield AsyncPcmBridge(bridge)


@pytest.mark.anyio
async def test_publishing_converts_rate_and_channels_and_pads_only_when_flushed(
    async_voice: AsyncVoice, engine: Engine
) -> None:
    sid = await answered_call(async_voice, to=ECHO)
    with anyio.fail_after(20):
        async with pcm16_bridge(async_voice, engine, sid) as pcm:
            stream = pcm.uplink()
            stereo = synth_tone(TONE_HZ, TONE_S, 44100, channels=2)  # 13230 samples
            for start, end in itertools.pairwise([0, 1000, 5410, len(stereo)]):
                await pcm.publish_downlink(stereo[start:end], sample_rate=44100)
            # 13230 samples at 44.1 kHz are 4800 at 16 kHz: 15 frames, but the
            # resampler still holds a few samples, so the last frame waits.
            await until(lambda: len(engine.received_downlink(sid)) >= 14)
            await anyio.sleep(0.1)
            assert len(engine.received_downlink(sid)) == 14
            await pcm.publish_downlink(np.zeros(0, np.int16), flush=True)
            heard = [await anext(stream) for _ in range(FRAMES)]
    assert len(engine.received_downlink(sid)) == FRAMES
    assert {(f.sample_rate, f.channels, f.samples_per_channel) for f in heard} == {(16000, 1, 320)}
    assert abs(dominant_hz(heard) - TONE_HZ) <= 25


@pytest.mark.anyio
async def test_a_cancelled_publish_discards_what_it_had_not_sent(
    async_voice: AsyncVoice, engine: Engine
) -> None:
    sid = await answered_call(async_voice)
    marker = np.full((50, 1), 1234, dtype=np.int16)
    with anyio.fail_after(20):
        async with pcm16_bridge(async_voice, engine, sid) as pcm:
            long = np.full((50 * 320 + 100, 1), 7, dtype=np.int16)  # 1 s and a remainder
            with anyio.move_on_after(10) as scope:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(pcm.publish_downlink, long)
                    await until(lambda: len(engine.received_downlink(sid)) >= 5)
                    tg.cancel_scope.cancel()
            assert not scope.cancelled_caught
            sent_before = len(engine.received_downlink(sid))
            assert 5 <= sent_before < 50
            await pcm.publish_downlink(marker, flush=True)
            await until(lambda: len(engine.received_downlink(sid)) > sent_before)
    last = np.frombuffer(engine.received_downlink(sid)[-1].data, dtype="<i2")
    expected = np.concatenate([np.full(50, 1234), np.zeros(270)])
    assert np.array_equal(last, expected)  # no leftover of the cancelled second


@pytest.mark.anyio
async def test_wrong_use_is_refused(async_voice: AsyncVoice) -> None:
    sid = await answered_call(async_voice)
    async with await async_voice.audio_bridge.attach(sid) as bridge:
        pcm = AsyncPcmBridge(bridge)
        with pytest.raises(InvalidArgumentError, match="publishes downlink, not uplink"):
            await pcm.publish_uplink(np.zeros(960, np.int16))
        with pytest.raises(InvalidArgumentError, match="receives uplink"):
            pcm.downlink()
        with pytest.raises(InvalidArgumentError, match="sample_rate"):
            await pcm.publish_downlink(np.zeros(960, np.int16), sample_rate=0)
        with pytest.raises(InvalidArgumentError, match="channels"):
            pcm.uplink(channels=-1)
        with pytest.raises(InvalidArgumentError, match="use AsyncPcmBridge"):
            PcmBridge(bridge)  # type: ignore[arg-type]
        assert pcm.bridge is bridge


def test_sync_wrong_use_is_refused(voice: Voice) -> None:
    sid = answered_call_sync(voice)
    with voice.audio_bridge.attach_caller(sid) as bridge:
        pcm = PcmBridge(bridge)
        with pytest.raises(InvalidArgumentError, match="publishes uplink, not downlink"):
            pcm.publish_downlink(np.zeros(960, np.int16))
        with pytest.raises(InvalidArgumentError, match="use PcmBridge"):
            AsyncPcmBridge(bridge)  # type: ignore[arg-type]


# -- the schedule, on a clock of the test's own ------------------------------------------


def outbox(rate: int = 16000) -> _Outbox:
    return _Outbox(make_codec("pcm16", sample_rate=rate, frame_ms=20))


def frames_of(value: int, n: int) -> Pcm:
    return np.full((n, 1), value, dtype=np.int16)


def test_cut_keeps_the_remainder_for_the_next_call_and_pads_it_when_flushed() -> None:
    box = outbox()
    assert box.cut(frames_of(1, 100), None, False) == []
    first = box.cut(frames_of(2, 600), None, False)
    assert len(first) == 2
    assert np.array_equal(first[0][:100], frames_of(1, 100)) and (first[1] == 2).all()
    last = box.cut(frames_of(3, 10), None, True)  # 60 + 10 samples left, padded
    assert len(last) == 1
    assert np.array_equal(last[0][:70, 0], [2] * 60 + [3] * 10) and not last[0][70:].any()
    assert box.cut(frames_of(4, 0), None, True) == []  # nothing left behind


def test_cut_accepts_bytes_flat_and_stereo_arrays() -> None:
    box = outbox()
    assert len(box.cut(np.ones(320, np.int16).tobytes(), None, False)) == 1
    assert len(box.cut(np.ones(640, np.int16), None, False)) == 2
    stereo = np.stack([np.full(320, 1000), np.full(320, 3000)], axis=1).astype(np.int16)
    down = box.cut(stereo, None, True)  # averaged to mono (FFmpeg's matrix: -3 dB each)
    assert len(down) == 1 and 1000 < int(np.median(down[0])) < 3000


def test_timestamps_continue_while_publishing_keeps_up() -> None:
    box = outbox()

    def due(k: int) -> tuple[float, int]:
        """Frame k of a timeline anchored at 100 s / 5 s: one frame period apart."""
        return 100.0 + k * 0.02, 5_000_000 + k * 20_000

    assert [box.slot(100.0, 5_000_000, first=i == 0) for i in range(3)] == [due(0), due(1), due(2)]
    # The next call starts as its predecessor's last frame went out: no jump.
    assert box.slot(100.04, 5_040_000, first=True) == due(3)
    # Late within a call (a busy loop): catch up on the same timeline.
    assert box.slot(100.2, 5_200_000, first=False) == due(4)
    # A call starting less than a frame late continues the timeline too.
    assert box.slot(100.11, 5_110_000, first=True) == due(5)


def test_timestamps_jump_to_the_clock_after_a_pause_or_a_stall() -> None:
    box = outbox()
    box.slot(100.0, 5_000_000, first=True)
    # A pause of more than a frame between calls.
    assert box.slot(101.0, 6_000_000, first=True) == (101.0, 6_000_000)
    # Stalled more than MAX_CATCH_UP_S within a call.
    assert box.slot(101.5, 6_500_000, first=False) == (101.5, 6_500_000)
    # A clock behind the timeline never moves timestamps backwards.
    assert box.slot(103.0, 100, first=True) == (103.0, 6_520_000)


def test_stream_and_bridge_twins_share_signatures_and_docstrings() -> None:
    for sync_cls, async_cls in ((PcmBridge, AsyncPcmBridge), (PcmStream, AsyncPcmStream)):
        names = {n for n in dir(async_cls) if not n.startswith("_")}
        names = {"close" if n == "aclose" else n for n in names}
        assert names == {n for n in dir(sync_cls) if not n.startswith("_")}
        for name in names:
            sync_member = getattr(sync_cls, name)
            async_member = getattr(async_cls, "aclose" if name == "close" else name)
            assert inspect.getdoc(sync_member) == inspect.getdoc(async_member), name
            if callable(sync_member):
                assert inspect.getdoc(sync_member), name
                assert not inspect.iscoroutinefunction(sync_member), name
                sync_sig = inspect.signature(sync_member).parameters.values()
                async_sig = inspect.signature(async_member).parameters.values()
                assert [(p.name, p.kind, p.default) for p in sync_sig] == [
                    (p.name, p.kind, p.default) for p in async_sig
                ], name


def test_frame_duration() -> None:
    frame = PcmFrame(np.zeros((441, 2), np.int16), 44100, 2, 0)
    assert (frame.samples_per_channel, frame.duration_us) == (441, 10_000)
