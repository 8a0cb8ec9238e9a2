"""WAV helpers and the generated prompt."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from clutchcall.audio import (
    WavWriter,
    iter_wav,
    read_wav,
    synth_chirp,
    synth_prompt,
    synth_tone,
    wav_params,
    write_wav,
)


def test_write_then_read_is_exact(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    pcm = rng.integers(-32768, 32768, size=(1001, 2), dtype=np.int16)
    path = tmp_path / "x.wav"
    write_wav(path, pcm, 22050)
    assert wav_params(path) == (22050, 2, 1001)
    wav = read_wav(path)
    assert wav.sample_rate == 22050 and wav.channels == 2 and wav.samples == 1001
    assert np.array_equal(wav.pcm, pcm)
    chunks = list(iter_wav(path, chunk_samples=300))
    assert [c.shape[0] for c in chunks] == [300, 300, 300, 101]
    assert np.array_equal(np.concatenate(chunks), pcm)


def test_streaming_writer_tracks_duration_and_closes(tmp_path: Path) -> None:
    path = tmp_path / "y.wav"
    with WavWriter(path, sample_rate=8000) as writer:
        writer(np.zeros(800, np.int16))
        writer.write(b"\x01\x00" * 800)
        assert writer.duration == pytest.approx(0.2)
    assert read_wav(path).duration == pytest.approx(0.2)
    with pytest.raises(ValueError, match="closed"):
        writer.write(np.zeros(1, np.int16))


def test_prompt_is_deterministic_and_about_a_second_long() -> None:
    a, b = synth_prompt(48000), synth_prompt(48000)
    assert np.array_equal(a, b)
    assert a.dtype == np.int16 and a.shape[1] == 1
    assert 1.0 <= len(a) / 48000 <= 1.5
    # Loud parts and silent gaps, so an energy detector sees both.
    frames = a[: len(a) // 480 * 480, 0].astype(np.float64).reshape(-1, 480)
    rms = np.sqrt(np.mean(frames**2, axis=1))
    assert rms.max() > 5000 and rms.min() < 1
    assert synth_prompt(8000, channels=2).shape == (round(len(a) / 6), 2)


def test_tone_and_chirp_have_the_requested_frequency_and_length() -> None:
    tone = synth_tone(1000, 0.5, 8000, amplitude=0.5)
    assert tone.shape == (4000, 1)
    spectrum = np.abs(np.fft.rfft(tone[:, 0]))
    assert np.argmax(spectrum) * 8000 / 4000 == pytest.approx(1000)
    assert abs(int(tone.max()) - 16384) < 10
    chirp = synth_chirp(100, 3000, 1.0, 16000)
    first, last = chirp[:2000, 0], chirp[-2000:, 0]

    def peak(x: np.ndarray) -> float:
        return float(np.argmax(np.abs(np.fft.rfft(x))) * 16000 / len(x))

    assert peak(first) < 600 < 2500 < peak(last)
