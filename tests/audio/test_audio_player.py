"""AudioPlayer: decoding, concealment, sinks and drivers."""

from __future__ import annotations

import random
from pathlib import Path

import anyio
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clutchcall.audio import (
    AudioPlayer,
    AudioSource,
    Pcm,
    PushOutcome,
    UnsupportedFormatError,
    make_codec,
    read_wav,
    synth_prompt,
)

F = 20_000


def numbered_frames(count: int, samples: int = 160) -> list[bytes]:
    """pcm16 frames whose samples all equal their index + 1 (never silence)."""
    return [np.full(samples, i + 1, dtype="<i2").tobytes() for i in range(count)]


def pcm16_player(sink: list[Pcm], **kwargs: int) -> AudioPlayer:
    return AudioPlayer(sink.append, codec="pcm16", sample_rate=8000, frame_ms=20, **kwargs)


@settings(database=None, max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), count=st.integers(2, 60), loss=st.floats(0.0, 0.5))
def test_shuffled_lossy_input_plays_back_in_order_with_silence_for_losses(
    seed: int, count: int, loss: float
) -> None:
    rng = random.Random(seed)
    frames = numbered_frames(count)
    kept = [i for i in range(count) if i in (0, count - 1) or rng.random() >= loss]
    order = kept[:]
    rng.shuffle(order)
    out: list[Pcm] = []
    player = pcm16_player(out)
    for i in order:
        assert player.push(1_000_000 + i * F, frames[i]) is PushOutcome.QUEUED
    assert player.drain() == count
    values = [int(frame[0, 0]) for frame in out]
    assert values == [i + 1 if i in kept else 0 for i in range(count)]
    assert all(frame.shape == (160, 1) for frame in out)
    stats = player.stats
    assert (stats.played, stats.concealed, stats.frames_out) == (
        len(kept),
        count - len(kept),
        count,
    )


def test_player_writes_a_wav_of_the_right_duration(tmp_path: Path) -> None:
    prompt = synth_prompt(48000)
    source = AudioSource([prompt], codec="opus", timestamp_origin_us=5_000_000)
    frames = list(source.frames())
    expected = -(-len(prompt) // 960)
    assert len(frames) == expected
    rng = random.Random(7)
    lost = {3, 17, 40}
    arriving = [f for i, f in enumerate(frames) if i not in lost]
    rng.shuffle(arriving)
    path = tmp_path / "downlink.wav"
    with AudioPlayer.to_wav(path, codec="opus", prebuffer_ms=60) as player:
        for frame in arriving:
            player.push(frame.timestamp_us, frame.data)
        player.drain()
        assert player.stats.concealed == len(lost)
    wav = read_wav(path)
    assert (wav.sample_rate, wav.channels) == (48000, 1)
    assert abs(wav.duration - len(prompt) / 48000) <= 0.020
    # The decoded audio is the prompt (delayed by Opus's lookahead), not silence.
    assert np.abs(wav.pcm.astype(np.int32)).max() > 5000


def test_play_until_follows_the_callers_clock() -> None:
    out: list[Pcm] = []
    player = pcm16_player(out, prebuffer_ms=40)
    frames = numbered_frames(10)
    # Frame i arrives at 5 ms + i * 20 ms; the local clock starts at 0.
    clock = 0
    for i, frame in enumerate(frames):
        arrival = 5_000 + i * F
        player.play_until(arrival - 1)  # everything due before the frame arrives
        player.push(i * F, frame)
        clock = arrival
    player.play_until(clock + 10 * F)
    values = [int(frame[0, 0]) for frame in out]
    # Silence until two frames are buffered, then every frame in order, then underrun silence.
    first = values.index(1)
    assert values[first : first + 10] == list(range(1, 11))
    assert set(values[:first]) == {0} and set(values[first + 10 :]) == {0}
    assert len(out) == (clock + 10 * F - 4_999) // F + 1
    assert player.stats.underruns == 1
    assert player.stats.late == 0


def test_late_and_duplicate_frames_are_counted_not_played() -> None:
    out: list[Pcm] = []
    player = pcm16_player(out, prebuffer_ms=20)
    frames = numbered_frames(4)
    player.push(0, frames[0])
    player.push(2 * F, frames[2])
    assert player.push(2 * F, frames[2]) is PushOutcome.DUPLICATE
    player.pull()
    player.pull()  # slot 1 concealed
    assert player.push(F, frames[1]) is PushOutcome.LATE
    player.push(3 * F, frames[3])
    player.drain()
    assert [int(f[0, 0]) for f in out] == [1, 0, 3, 4]
    stats = player.stats
    assert (stats.late, stats.duplicates, stats.concealed) == (1, 1, 1)


def test_undecodable_frames_play_as_silence() -> None:
    out: list[Pcm] = []
    player = AudioPlayer(out.append, codec="opus", prebuffer_ms=20)
    good = make_codec("opus").encode(np.full(960, 3000, dtype=np.int16))
    player.push(0, b"\xff\xff\xff\x01\x02")
    player.push(F, good)
    player.drain()
    assert player.stats.decode_errors == 1
    assert not out[0].any()
    assert len(out) == 2


def test_bridge_callback_adapter_orders_by_timestamp_and_fills_missing_ones() -> None:
    out: list[Pcm] = []
    player = pcm16_player(out, prebuffer_ms=20)
    frames = numbered_frames(3)
    player.on_frame(frames[1], F)
    player.on_frame(frames[0], 0)
    player.on_frame(frames[2], None)  # no timestamp: right after the latest one
    player.drain()
    assert [int(f[0, 0]) for f in out] == [1, 2, 3]


def test_player_rejects_an_unsupported_format() -> None:
    with pytest.raises(UnsupportedFormatError):
        AudioPlayer(codec="g711_alaw", sample_rate=16000)


@pytest.mark.anyio
async def test_realtime_driver_plays_one_frame_per_period() -> None:
    out: list[Pcm] = []
    player = pcm16_player(out, prebuffer_ms=20)
    for i, frame in enumerate(numbered_frames(3)):
        player.push(i * F, frame)
    start = anyio.current_time()
    await player.run(duration=0.1)
    elapsed = anyio.current_time() - start
    assert len(out) == 5
    assert elapsed >= 0.08  # the fifth frame is due 80 ms after the first
    assert [int(f[0, 0]) for f in out] == [1, 2, 3, 0, 0]


@pytest.mark.anyio
async def test_realtime_driver_stops_on_close() -> None:
    out: list[Pcm] = []
    player = pcm16_player(out)
    async with anyio.create_task_group() as tg:
        tg.start_soon(player.run)
        await anyio.sleep(0.05)
        player.close()
    assert 1 <= len(out) <= 10
