"""Codec round trips and the errors of :func:`make_codec`."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from clutchcall import AudioCodec, ClutchCallError
from clutchcall.audio import (
    AudioError,
    DecodeError,
    FrameSizeError,
    OpusCodec,
    UnsupportedFormatError,
    g711,
    make_codec,
    synth_tone,
)

# Opus quality bars, as signal-to-noise ratio of the decoded test signal against
# the input shifted by the codec's delay. The tone is two sines per channel at
# -10 dBFS. At 64 kbit/s per channel libopus codes it in CELT mode with about
# 40 dB SNR; at the default 32 kbit/s per channel (mono may switch to SILK or
# hybrid, which do not preserve the waveform of pure tones) about 19 dB.
OPUS_SNR_DB_HIGH_BITRATE = 30.0
OPUS_SNR_DB_DEFAULT_BITRATE = 15.0


def test_tone(seconds: float, channels: int, rate: int = 48000) -> NDArray[np.int16]:
    """Two sines per channel (different pairs per channel), shape (samples, channels)."""
    columns = [
        synth_tone(440.0 * (c + 1), seconds, rate, amplitude=0.15)[:, 0]
        + synth_tone(1234.5 + 200 * c, seconds, rate, amplitude=0.15)[:, 0]
        for c in range(channels)
    ]
    return np.stack(columns, axis=1).astype(np.int16)


test_tone.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


def snr_db(reference: NDArray[np.int16], decoded: NDArray[np.int16]) -> float:
    ref = reference.astype(np.float64)
    noise = ref - decoded.astype(np.float64)
    return float(10 * np.log10(np.sum(ref**2) / max(np.sum(noise**2), 1e-9)))


def opus_round_trip(codec: OpusCodec, pcm: NDArray[np.int16]) -> NDArray[np.int16]:
    n = codec.samples_per_frame
    frames = [codec.encode(pcm[i : i + n]) for i in range(0, len(pcm) - n + 1, n)]
    return np.concatenate([codec.decode(f) for f in frames])


def aligned_snr(
    pcm: NDArray[np.int16], decoded: NDArray[np.int16], delay: int, search: int = 0
) -> float:
    """Best SNR with the decoded stream shifted back by ``delay`` +/- ``search`` samples.

    The first 50 ms (encoder warm-up) are left out.
    """
    skip = 2400
    length = len(decoded) - delay - search - skip
    return max(
        snr_db(pcm[skip : skip + length], decoded[skip + lag : skip + lag + length])
        for lag in range(max(delay - search, 0), delay + search + 1)
    )


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("frame_ms", [10, 20, 40, 60])
def test_opus_round_trip_snr_at_64kbps_per_channel(channels: int, frame_ms: int) -> None:
    codec = make_codec(
        "opus", sample_rate=48000, channels=channels, frame_ms=frame_ms, bitrate=64000 * channels
    )
    assert isinstance(codec, OpusCodec)
    pcm = test_tone(0.6, channels)
    decoded = opus_round_trip(codec, pcm)
    assert decoded.dtype == np.int16
    assert decoded.shape == (
        len(pcm) // codec.samples_per_frame * codec.samples_per_frame,
        channels,
    )
    assert codec.delay_samples == 312
    assert aligned_snr(pcm, decoded, codec.delay_samples) > OPUS_SNR_DB_HIGH_BITRATE


def test_opus_default_settings_reach_the_stated_snr() -> None:
    codec = make_codec(AudioCodec.OPUS)
    assert isinstance(codec, OpusCodec)
    assert (codec.bitrate, codec.samples_per_frame, codec.channels) == (32000, 960, 1)
    pcm = test_tone(0.6, 1)
    decoded = opus_round_trip(codec, pcm)
    # In hybrid mode the low band's delay differs by a few samples: search +/- 1 ms.
    assert aligned_snr(pcm, decoded, codec.delay_samples, search=48) > OPUS_SNR_DB_DEFAULT_BITRATE


def test_opus_delay_is_what_the_decoded_stream_shows() -> None:
    """The decoded impulse peaks delay_samples after the input impulse."""
    codec = make_codec("opus", bitrate=64000)
    assert isinstance(codec, OpusCodec)
    pcm = np.zeros((960 * 6, 1), dtype=np.int16)
    pcm[960 * 2 + 100, 0] = 20000
    decoded = opus_round_trip(codec, pcm)
    peak = int(np.argmax(np.abs(decoded[:, 0].astype(np.int32))))
    assert peak == 960 * 2 + 100 + codec.delay_samples


def test_opus_lowdelay_has_a_shorter_delay() -> None:
    codec = OpusCodec(application="lowdelay", bitrate=64000)
    codec.encode(np.zeros(960, dtype=np.int16))
    assert codec.delay_samples == 120


def test_opus_encoder_and_decoder_keep_state_across_frames() -> None:
    """The same frame twice codes differently the second time: the context is reused."""
    frame = test_tone(0.02, 1)
    codec = make_codec("opus")
    first, second = codec.encode(frame), codec.encode(frame)
    assert first != second
    assert make_codec("opus").encode(frame) == first  # a fresh encoder is deterministic
    decoded_first, decoded_again = codec.decode(first), codec.decode(first)
    assert not np.array_equal(decoded_first, decoded_again)
    assert np.array_equal(make_codec("opus").decode(first), decoded_first)


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("rate", [8000, 16000, 44100, 48000])
def test_pcm16_round_trip_is_exact(channels: int, rate: int) -> None:
    codec = make_codec("pcm16", sample_rate=rate, channels=channels, frame_ms=20)
    rng = np.random.default_rng(rate + channels)
    pcm = rng.integers(-32768, 32768, size=(rate // 50, channels), dtype=np.int16)
    encoded = codec.encode(pcm)
    assert len(encoded) == codec.frame_bytes == rate // 50 * channels * 2
    assert encoded == pcm.astype("<i2").tobytes()
    assert np.array_equal(codec.decode(encoded), pcm)


def test_pcm16_accepts_bytes_and_flat_interleaved_arrays() -> None:
    codec = make_codec("pcm16", sample_rate=8000, channels=2, frame_ms=10)
    pcm = np.arange(160, dtype=np.int16).reshape(80, 2)
    as_bytes = pcm.astype("<i2").tobytes()
    assert codec.encode(as_bytes) == codec.encode(pcm.ravel()) == codec.encode(pcm) == as_bytes
    assert codec.decode(as_bytes)[:2].tolist() == [[0, 1], [2, 3]]


@pytest.mark.parametrize("law", [AudioCodec.G711_ULAW, AudioCodec.G711_ALAW])
def test_g711_codec_matches_the_tables(law: AudioCodec) -> None:
    codec = make_codec(law, sample_rate=8000, frame_ms=20)
    assert codec.frame_bytes == codec.samples_per_frame == 160
    codes = bytes(range(160))
    decoded = codec.decode(codes)
    table = g711.ULAW_DECODE_TABLE if law is AudioCodec.G711_ULAW else g711.ALAW_DECODE_TABLE
    assert decoded[:, 0].tolist() == table[:160].tolist()
    # Decoded values are exact points of the law, so encoding them is lossless.
    assert codec.decode(codec.encode(decoded)).tolist() == decoded.tolist()


def test_g711_round_trip_error_is_bounded_by_the_law_step() -> None:
    codec = make_codec("g711_ulaw", sample_rate=8000, frame_ms=20)
    pcm = test_tone(0.02, 1, rate=8000)
    decoded = codec.decode(codec.encode(pcm))
    error = np.abs(decoded.astype(np.int32) - pcm.astype(np.int32))
    assert np.all(error <= np.abs(pcm.astype(np.int32)) // 16 + 8)


@pytest.mark.parametrize(
    ("codec", "kwargs"),
    [
        ("opus", {"sample_rate": 16000}),
        ("opus", {"channels": 3}),
        ("opus", {"frame_ms": 30}),
        ("opus", {"bitrate": 1000}),
        ("pcm16", {"sample_rate": 11025}),
        ("pcm16", {"frame_ms": 25}),
        ("pcm16", {"bitrate": 64000}),
        ("g711_ulaw", {}),  # default 48 kHz is not telephony G.711
        ("g711_alaw", {"sample_rate": 8000, "channels": 2}),
        ("g711_alaw", {"sample_rate": 8000, "frame_ms": 0}),
        ("mp3", {}),
        ("opus", {"frame_ms": 20.0}),
    ],
)
def test_unsupported_combinations_raise_a_typed_error(codec: str, kwargs: dict[str, Any]) -> None:
    with pytest.raises(UnsupportedFormatError) as info:
        make_codec(codec, **kwargs)
    assert isinstance(info.value, AudioError)
    assert isinstance(info.value, ClutchCallError)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("name", ["opus", "pcm16", "g711_ulaw", "g711_alaw"])
def test_pcm_frame_of_the_wrong_size_is_refused(name: str) -> None:
    rate = 48000 if name in ("opus", "pcm16") else 8000
    codec = make_codec(name, sample_rate=rate, frame_ms=20)
    n = codec.samples_per_frame
    for bad in (n - 1, n + 1, 0):
        with pytest.raises(FrameSizeError, match=str(n)):
            codec.encode(np.zeros(bad, dtype=np.int16))
    with pytest.raises(FrameSizeError, match="int16"):
        codec.encode(np.zeros(n, dtype=np.float32))
    with pytest.raises(FrameSizeError, match="shape"):
        codec.encode(np.zeros((n, 2), dtype=np.int16))
    with pytest.raises(FrameSizeError, match="whole number"):
        codec.encode(b"\x00" * 3)


@pytest.mark.parametrize(
    ("name", "rate", "bad"),
    [("pcm16", 48000, b"\x00" * 10), ("g711_ulaw", 8000, b"\x00" * 159), ("g711_alaw", 8000, b"")],
)
def test_encoded_frame_of_the_wrong_size_is_refused(name: str, rate: int, bad: bytes) -> None:
    codec = make_codec(name, sample_rate=rate, frame_ms=20)
    with pytest.raises(FrameSizeError, match="bytes"):
        codec.decode(bad)


def test_opus_rejects_empty_corrupt_and_wrong_duration_packets() -> None:
    codec = make_codec("opus", frame_ms=20)
    with pytest.raises(FrameSizeError):
        codec.decode(b"")
    with pytest.raises(DecodeError):
        codec.decode(b"\xff\xff\xff\x01\x02")
    ten_ms = make_codec("opus", frame_ms=10).encode(np.zeros(480, dtype=np.int16))
    with pytest.raises(DecodeError, match="480 samples"):
        codec.decode(ten_ms)
    # The decoder survives bad input.
    good = make_codec("opus", frame_ms=20).encode(np.zeros(960, dtype=np.int16))
    assert codec.decode(good).shape == (960, 1)


def test_silence_has_the_frame_shape() -> None:
    codec = make_codec("pcm16", sample_rate=16000, channels=2, frame_ms=10)
    assert codec.silence().shape == (160, 2)
    assert not codec.silence().any()


def test_opus_takes_bytes_flat_and_non_contiguous_arrays_alike() -> None:
    stereo = test_tone(0.02, 2)
    reference = make_codec("opus", channels=2).encode(stereo)
    as_bytes = stereo.astype("<i2").tobytes()
    assert make_codec("opus", channels=2).encode(as_bytes) == reference
    assert make_codec("opus", channels=2).encode(stereo.ravel()) == reference
    padded = np.zeros((len(stereo), 4), dtype=np.int16)
    padded[:, ::2] = stereo
    strided = padded[:, ::2]  # the same samples, not C-contiguous
    assert not strided.flags.c_contiguous
    assert make_codec("opus", channels=2).encode(strided) == reference
