"""DTMF synthesis and detection, and the frame-by-frame transcoder of the media gateway."""

from __future__ import annotations

import numpy as np
import pytest

from clutchcall.audio import (
    AudioError,
    FrameSizeError,
    Transcoder,
    detect_dtmf,
    make_codec,
    synth_dtmf,
    synth_tone,
)
from clutchcall.moqt import AudioFormat


@pytest.mark.parametrize("rate", [8000, 16000, 44100, 48000])
def test_dtmf_digits_are_detected_at_every_rate(rate: int) -> None:
    assert detect_dtmf(synth_dtmf("1590#*AD", rate), rate) == "1590#*AD"


def test_dtmf_detection_ignores_silence_noise_and_single_tones() -> None:
    rng = np.random.default_rng(7)
    noise = rng.normal(0, 3000, 16000).astype(np.int16)
    assert detect_dtmf(np.zeros(16000, dtype=np.int16), 8000) == ""
    assert detect_dtmf(noise, 8000) == ""
    assert detect_dtmf(synth_tone(770.0, 1.0, 8000), 8000) == ""
    # A digit repeated after a gap counts twice; held over many blocks, once.
    assert detect_dtmf(synth_dtmf("55", 8000, tone_ms=300), 8000) == "55"
    with pytest.raises(ValueError, match="not a DTMF digit"):
        synth_dtmf("1x", 8000)


def encode_all(fmt: AudioFormat, pcm: np.ndarray) -> list[bytes]:
    codec = make_codec(
        fmt.codec, sample_rate=fmt.sample_rate, channels=fmt.channels, frame_ms=fmt.frame_ms
    )
    n = codec.samples_per_frame
    usable = pcm.shape[0] // n * n
    return [codec.encode(pcm[i : i + n]) for i in range(0, usable, n)]


def decode_all(fmt: AudioFormat, frames: list[bytes]) -> np.ndarray:
    codec = make_codec(
        fmt.codec, sample_rate=fmt.sample_rate, channels=fmt.channels, frame_ms=fmt.frame_ms
    )
    return np.concatenate([codec.decode(frame) for frame in frames])


PAIRS = [
    (AudioFormat("opus", 48000, 1, 20), AudioFormat("pcm16", 16000, 1, 20)),
    (AudioFormat("pcm16", 16000, 1, 20), AudioFormat("opus", 48000, 1, 20)),
    (AudioFormat("g711_ulaw", 8000, 1, 20), AudioFormat("opus", 48000, 2, 10)),
    (AudioFormat("pcm16", 48000, 2, 10), AudioFormat("g711_alaw", 8000, 1, 40)),
]


@pytest.mark.parametrize(("source", "target"), PAIRS, ids=lambda f: str(f))
def test_transcoded_frames_carry_the_same_digits(source: AudioFormat, target: AudioFormat) -> None:
    pcm = synth_dtmf("2468", source.sample_rate, channels=source.channels)
    frames = encode_all(source, pcm)
    transcoder = Transcoder(source, target)
    out: list[tuple[bytes, int]] = []
    for n, frame in enumerate(frames):
        out += transcoder.push(frame, 1_000_000 + n * source.frame_ms * 1000)
    assert out, "no frame came out"
    # Frames of the target's duration, stamped on the input's timeline.
    stamps = [ts for _, ts in out]
    assert stamps[0] == 1_000_000
    assert np.all(np.diff(stamps) == target.frame_ms * 1000)
    got = decode_all(target, [data for data, _ in out])
    assert detect_dtmf(got, target.sample_rate, channels=target.channels) == "2468"
    # Memory: less than one output frame waits inside.
    produced = len(out) * target.samples_per_frame
    expected = len(frames) * source.frame_ms * target.sample_rate // 1000
    assert expected - produced < 2 * target.samples_per_frame


def test_a_bad_frame_raises_and_the_stream_goes_on() -> None:
    source, target = AudioFormat("pcm16", 16000), AudioFormat("g711_ulaw", 8000)
    transcoder = Transcoder(source, target)
    with pytest.raises(FrameSizeError):
        transcoder.push(bytes(100_000), 0)  # larger than any pcm16 frame: refused unread
    with pytest.raises(AudioError):
        transcoder.push(bytes(17), 0)
    assert transcoder.failed == 2
    frames = encode_all(source, synth_dtmf("7", 16000))
    out = [data for n, frame in enumerate(frames) for data, _ in transcoder.push(frame, n)]
    assert detect_dtmf(decode_all(target, out), 8000) == "7"
    opus = Transcoder(AudioFormat(), source)
    with pytest.raises(AudioError):
        opus.push(b"\xff" * 40, 0)
