"""AudioSource: framing, resampling, timestamps, pacing and publishing."""

from __future__ import annotations

import itertools
import math
import wave
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import anyio
import anyio.lowlevel
import numpy as np
import pytest

from clutchcall.audio import (
    AudioSource,
    FrameSizeError,
    PcmLike,
    Resampler,
    UnsupportedFormatError,
    WavFormatError,
    make_codec,
    synth_prompt,
    synth_tone,
    write_wav,
)


def collect() -> tuple[list[tuple[bytes, int]], Callable[[bytes, int], None]]:
    published: list[tuple[bytes, int]] = []

    def publish(frame: bytes, timestamp_us: int) -> None:
        published.append((frame, timestamp_us))

    return published, publish


@pytest.mark.parametrize(
    ("wav_rate", "wav_channels", "codec", "rate"),
    [
        (44100, 2, "opus", 48000),
        (16000, 1, "opus", 48000),
        (44100, 2, "g711_ulaw", 8000),
        (48000, 1, "pcm16", 16000),
    ],
)
def test_wav_at_another_rate_gives_the_right_number_of_frames(
    tmp_path: Path, wav_rate: int, wav_channels: int, codec: str, rate: int
) -> None:
    seconds = 1.23
    path = tmp_path / "input.wav"
    write_wav(path, synth_tone(440, seconds, wav_rate, channels=wav_channels), wav_rate)
    source = AudioSource.from_wav(path, codec=codec, sample_rate=rate, timestamp_origin_us=0)
    frames = list(source.frames())
    assert len(frames) == math.ceil(seconds * 1000 / 20)
    assert [f.timestamp_us for f in frames] == [i * 20_000 for i in range(len(frames))]
    decoder = make_codec(codec, sample_rate=rate)
    decoded = np.concatenate([decoder.decode(f.data) for f in frames])
    assert decoded.shape[1] == 1
    assert abs(decoded.shape[0] / rate - seconds) <= 0.020
    # The tone made it through: the middle of the stream is loud.
    middle = decoded[len(decoded) // 3 : 2 * len(decoded) // 3]
    assert np.abs(middle.astype(np.int32)).max() > 3000


def test_iterable_chunks_of_any_size_are_cut_into_exact_frames() -> None:
    pcm = (np.arange(1000, dtype=np.int32) - 500).astype(np.int16)
    chunks: list[PcmLike] = [pcm[:7].tobytes(), pcm[7:500], pcm[500:].reshape(-1, 1)]
    source = AudioSource(chunks, codec="pcm16", sample_rate=8000, frame_ms=20)
    frames = list(source.frames())
    assert len(frames) == 7  # 1000 samples = 6.25 frames of 160, last one padded
    data = b"".join(f.data for f in frames)
    assert data[:2000] == pcm.astype("<i2").tobytes()
    assert data[2000:] == b"\x00" * (7 * 320 - 2000)


def test_pad_final_false_drops_the_partial_frame() -> None:
    source = AudioSource(
        [np.zeros(1000, np.int16)], codec="pcm16", sample_rate=8000, pad_final=False
    )
    assert len(list(source.frames())) == 6


def test_default_timestamps_start_from_the_monotonic_clock() -> None:
    import time

    before = time.monotonic_ns() // 1000
    frames = list(AudioSource([np.zeros(960 * 3, np.int16)]).frames())
    assert before <= frames[0].timestamp_us <= time.monotonic_ns() // 1000
    assert frames[2].timestamp_us - frames[0].timestamp_us == 40_000


async def chunk_stream(pcm: np.ndarray, size: int) -> AsyncIterator[np.ndarray]:
    for start in range(0, len(pcm), size):
        await anyio.lowlevel.checkpoint()
        yield pcm[start : start + size]


@pytest.mark.anyio
async def test_async_iterable_into_an_async_publish_as_fast_as_possible() -> None:
    prompt = synth_prompt(48000)
    published: list[tuple[bytes, int]] = []

    async def publish(frame: bytes, timestamp_us: int) -> None:
        await anyio.lowlevel.checkpoint()
        published.append((frame, timestamp_us))

    source = AudioSource(chunk_stream(prompt, 1234), timestamp_origin_us=1_000)
    stats = await source.run(publish, realtime=False)
    assert stats.frames == len(published) == math.ceil(len(prompt) / 960)
    assert stats.duration_us == stats.frames * 20_000
    assert stats.first_timestamp_us == published[0][1] == 1_000
    assert all(b[1] - a[1] == 20_000 for a, b in itertools.pairwise(published))


@pytest.mark.anyio
async def test_realtime_pacing_spreads_frames_over_their_duration() -> None:
    published, publish = collect()
    source = AudioSource([np.zeros(480 * 6, np.int16)], frame_ms=10, timestamp_origin_us=0)
    start = anyio.current_time()
    stats = await source.run(publish, realtime=True)
    elapsed = anyio.current_time() - start
    assert stats.frames == len(published) == 6
    assert elapsed >= 0.05  # frame 5 is due 50 ms after frame 0
    assert stats.late_frames == 0


def test_run_blocking_with_a_plain_callable(tmp_path: Path) -> None:
    path = tmp_path / "prompt.wav"
    write_wav(path, synth_prompt(8000), 8000)
    published, publish = collect()
    stats = AudioSource.from_wav(path, codec="g711_alaw", sample_rate=8000).run_blocking(
        publish, realtime=False
    )
    assert stats.frames == len(published) > 0
    assert all(len(frame) == 160 for frame, _ in published)


def test_a_source_is_consumed_once() -> None:
    source = AudioSource([np.zeros(960, np.int16)])
    assert len(list(source.frames())) == 1
    with pytest.raises(RuntimeError, match="once"):
        list(source.frames())


def test_bad_inputs_raise_typed_errors(tmp_path: Path) -> None:
    not_wav = tmp_path / "noise.wav"
    not_wav.write_bytes(b"definitely not RIFF")
    with pytest.raises(WavFormatError):
        AudioSource.from_wav(not_wav)
    eight_bit = tmp_path / "u8.wav"
    with wave.open(str(eight_bit), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(1)
        w.setframerate(8000)
        w.writeframes(b"\x80" * 800)
    with pytest.raises(WavFormatError, match="16-bit"):
        AudioSource.from_wav(eight_bit)
    with pytest.raises(UnsupportedFormatError):
        AudioSource([b""], codec="g711_ulaw", sample_rate=48000)
    stereo_source = AudioSource([np.zeros((960, 2), np.int16)], channels=1)
    with pytest.raises(FrameSizeError):
        list(stereo_source.frames())


def test_resampler_output_length_and_passthrough() -> None:
    resampler = Resampler(in_rate=44100, in_channels=2, out_rate=48000, out_channels=1)
    chunk = np.zeros((441, 2), np.int16)
    total = sum(resampler.push(chunk).shape[0] for _ in range(100))
    total += resampler.flush().shape[0]
    assert total == 48000
    with pytest.raises(RuntimeError):
        resampler.push(chunk)
    same = Resampler(in_rate=8000, in_channels=1, out_rate=8000, out_channels=1)
    data = np.arange(10, dtype=np.int16)
    assert same.push(data).ravel().tolist() == list(range(10))


@pytest.mark.anyio
async def test_cancelling_a_realtime_run_stops_publishing_and_closes_the_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "long.wav"
    write_wav(path, synth_tone(300, 2.0, 16000), 16000)
    published, collect_frame = collect()
    first = anyio.Event()

    def publish(frame: bytes, timestamp_us: int) -> None:
        collect_frame(frame, timestamp_us)
        first.set()

    source = AudioSource.from_wav(path)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(source.run, publish)
            # Cancelled 0.1 s after the first frame (a loaded machine may take
            # longer than that to open and encode the first one).
            await first.wait()
            await anyio.sleep(0.1)
            tg.cancel_scope.cancel()
    assert 1 <= len(published) <= 10
    assert source.frames_produced >= len(published)  # encoded a chunk ahead, never more
    path.unlink()  # the reader let go of the file (and no ResourceWarning was raised)
