"""DTMF digits: synthesis and Goertzel detection.

The dev engine's simulated callees speak a short phrase of DTMF digits (the tone
pairs of a phone keypad): deterministic at every sample rate, recognisable by ear
and checkable by machine. :func:`detect_dtmf` finds the digits in decoded PCM with
the Goertzel algorithm, the way a telephone exchange does.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from .codecs import Pcm, PcmLike, as_pcm

__all__ = ["DTMF_FREQUENCIES", "detect_dtmf", "synth_dtmf"]

_ROWS = (697.0, 770.0, 852.0, 941.0)
_COLUMNS = (1209.0, 1336.0, 1477.0, 1633.0)
_KEYS = ("123A", "456B", "789C", "*0#D")

#: Digit -> (low, high) frequency in Hz.
DTMF_FREQUENCIES: dict[str, tuple[float, float]] = {
    key: (_ROWS[row], _COLUMNS[column])
    for row, keys in enumerate(_KEYS)
    for column, key in enumerate(keys)
}


def synth_dtmf(
    digits: str,
    sample_rate: int = 8000,
    *,
    tone_ms: int = 100,
    gap_ms: int = 60,
    amplitude: float = 0.25,
    channels: int = 1,
) -> Pcm:
    """``digits`` as tone pairs of ``tone_ms`` each, ``gap_ms`` of silence after each.

    Each of the two tones has ``amplitude`` (fraction of full scale); 5 ms ramps
    at both ends keep the bursts click-free.
    """
    tone = round(tone_ms * sample_rate / 1000)
    gap = round(gap_ms * sample_rate / 1000)
    t = np.arange(tone, dtype=np.float64) / sample_rate
    ramp_n = min(round(0.005 * sample_rate), tone // 2)
    ramp = 0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, ramp_n, endpoint=False))
    parts: list[NDArray[np.float64]] = []
    for digit in digits:
        try:
            low, high = DTMF_FREQUENCIES[digit.upper()]
        except KeyError:
            raise ValueError(f"{digit!r} is not a DTMF digit") from None
        burst = amplitude * (np.sin(2 * np.pi * low * t) + np.sin(2 * np.pi * high * t))
        if ramp_n:
            burst[:ramp_n] *= ramp
            burst[tone - ramp_n :] *= ramp[::-1]
        parts += [burst, np.zeros(gap)]
    signal = np.concatenate(parts) if parts else np.zeros(0)
    mono = np.clip(np.rint(signal * 32767.0), -32768, 32767).astype(np.int16)
    return np.ascontiguousarray(np.repeat(mono[:, None], channels, axis=1))


def _probes(size: int, sample_rate: int, frequencies: tuple[float, ...]) -> NDArray[np.complex128]:
    """One row per frequency: the single DFT bin the Goertzel algorithm computes."""
    n = np.arange(size, dtype=np.float64)
    probes: NDArray[np.complex128] = np.exp(-2j * math.pi * np.outer(frequencies, n) / sample_rate)
    return probes


def detect_dtmf(pcm: PcmLike, sample_rate: int, *, channels: int = 1, block_ms: int = 20) -> str:
    """The DTMF digits in ``pcm``, in order (a digit held over several blocks counts once).

    Blocks of ``block_ms`` are checked for one row and one column tone that stand
    well above the other keypad tones and carry most of the block's energy;
    silence or other sound between two bursts separates repeated digits.
    """
    samples = as_pcm(pcm, channels).astype(np.float64).mean(axis=1)
    size = max(1, round(block_ms * sample_rate / 1000))
    row_probes = _probes(size, sample_rate, _ROWS)
    column_probes = _probes(size, sample_rate, _COLUMNS)
    found: list[str] = []
    previous: str | None = None
    for start in range(0, samples.shape[0] - size + 1, size):
        block = samples[start : start + size]
        energy = float(np.dot(block, block))
        digit: str | None = None
        if energy > size * 100.0**2:  # quieter than about -50 dBFS: nothing
            rows = [float(p) for p in np.abs(row_probes @ block) ** 2]
            columns = [float(p) for p in np.abs(column_probes @ block) ** 2]
            row, column = int(np.argmax(rows)), int(np.argmax(columns))
            others_row = sorted(rows)[-2]
            others_column = sorted(columns)[-2]
            pair = rows[row] + columns[column]
            if (
                rows[row] > 8 * others_row
                and columns[column] > 8 * others_column
                and pair > 0.25 * energy * size  # the two tones hold most of the energy
            ):
                digit = _KEYS[row][column]
        if digit is not None and digit != previous:
            found.append(digit)
        previous = digit
    return "".join(found)
