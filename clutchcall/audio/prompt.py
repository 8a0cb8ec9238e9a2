"""Deterministic test signals: tones and a short synthetic prompt.

The prompt lets the demo and the dev agents ship audio without shipping a
binary file: it is generated on demand, identical on every run and platform
(float64 arithmetic, then rounding).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from .codecs import Pcm

__all__ = ["synth_chirp", "synth_prompt", "synth_silence", "synth_tone"]


def _to_pcm(signal: NDArray[np.float64], channels: int) -> Pcm:
    mono = np.clip(np.rint(signal * 32767.0), -32768, 32767).astype(np.int16)
    return np.ascontiguousarray(np.repeat(mono[:, None], channels, axis=1))


def _fade(signal: NDArray[np.float64], fade_samples: int) -> NDArray[np.float64]:
    n = min(fade_samples, len(signal) // 2)
    if n > 0:
        ramp = 0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, n, endpoint=False))
        signal = signal.copy()
        signal[:n] *= ramp
        signal[len(signal) - n :] *= ramp[::-1]
    return signal


def _times(seconds: float, sample_rate: int) -> NDArray[np.float64]:
    """The time of each sample of ``seconds`` of audio, in seconds."""
    return np.arange(round(seconds * sample_rate), dtype=np.float64) / sample_rate


def _sine(
    phase: NDArray[np.float64], amplitude: float, fade_ms: float, sample_rate: int, channels: int
) -> Pcm:
    """``amplitude * sin(phase)``, faded in and out over ``fade_ms``."""
    signal = amplitude * np.sin(phase)
    return _to_pcm(_fade(signal, round(fade_ms * sample_rate / 1000)), channels)


def synth_tone(
    frequency: float,
    seconds: float,
    sample_rate: int = 48000,
    *,
    amplitude: float = 0.3,
    channels: int = 1,
    fade_ms: float = 0.0,
) -> Pcm:
    """A sine of ``amplitude`` (fraction of full scale), shape ``(samples, channels)``."""
    t = _times(seconds, sample_rate)
    return _sine(2.0 * np.pi * frequency * t, amplitude, fade_ms, sample_rate, channels)


def synth_chirp(
    start_hz: float,
    end_hz: float,
    seconds: float,
    sample_rate: int = 48000,
    *,
    amplitude: float = 0.3,
    channels: int = 1,
    fade_ms: float = 5.0,
) -> Pcm:
    """A linear frequency sweep from ``start_hz`` to ``end_hz``."""
    t = _times(seconds, sample_rate)
    phase = 2.0 * np.pi * (start_hz * t + (end_hz - start_hz) * t * t / (2.0 * seconds))
    return _sine(phase, amplitude, fade_ms, sample_rate, channels)


def synth_silence(seconds: float, sample_rate: int = 48000, *, channels: int = 1) -> Pcm:
    return np.zeros((round(seconds * sample_rate), channels), dtype=np.int16)


def synth_prompt(sample_rate: int = 48000, *, channels: int = 1) -> Pcm:
    """About 1.2 s of "prompt": a rising three-note chime, then a 300-3400 Hz sweep.

    Loud enough for an energy voice-activity detector to call it speech, with
    short silences between the parts so a detector also sees pauses.
    """
    gap = synth_silence(0.05, sample_rate, channels=channels)
    parts: list[Pcm] = []
    for frequency in (523.25, 659.25, 783.99):  # C5, E5, G5
        parts += [synth_tone(frequency, 0.15, sample_rate, channels=channels, fade_ms=10.0), gap]
    parts.append(gap)
    parts.append(synth_chirp(300.0, 3400.0, 0.45, sample_rate, channels=channels, fade_ms=10.0))
    parts.append(synth_silence(0.1, sample_rate, channels=channels))
    return np.concatenate(parts)
