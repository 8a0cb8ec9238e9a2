"""Streaming sample-rate and channel conversion of int16 PCM through FFmpeg (PyAV).

Channel conversion uses FFmpeg's default matrices (for example stereo to mono
averages the two channels at -3 dB each). The resampler keeps a few samples of
filter history, so push every chunk in order and call :meth:`Resampler.flush`
at the end of the stream; the total output is then ``round(n * out_rate / in_rate)``.
"""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
from av.audio.frame import AudioFrame

from .codecs import Pcm, PcmLike, _frame_to_pcm, as_pcm
from .errors import UnsupportedFormatError

__all__ = ["Resampler"]


def _layout(channels: int) -> str:
    if channels == 1:
        return "mono"
    if channels == 2:
        return "stereo"
    return f"{channels}c"


class Resampler:
    """Converts a PCM stream from one rate/channel count to another."""

    def __init__(self, *, in_rate: int, in_channels: int, out_rate: int, out_channels: int) -> None:
        for name, value in (
            ("in_rate", in_rate),
            ("out_rate", out_rate),
            ("in_channels", in_channels),
            ("out_channels", out_channels),
        ):
            if value <= 0:
                raise UnsupportedFormatError(f"{name} must be positive, got {value}")
        self.in_rate = in_rate
        self.in_channels = in_channels
        self.out_rate = out_rate
        self.out_channels = out_channels
        self.passthrough = in_rate == out_rate and in_channels == out_channels
        self._in_layout = _layout(in_channels)
        self._time_base = Fraction(1, in_rate)
        self._pts = 0
        self._finished = False
        self._resampler = (
            None
            if self.passthrough
            else av.AudioResampler(format="s16", layout=_layout(out_channels), rate=out_rate)
        )

    def _empty(self) -> Pcm:
        return np.zeros((0, self.out_channels), dtype=np.int16)

    def _collect(self, frames: list[AudioFrame]) -> Pcm:
        parts = [_frame_to_pcm(f, self.out_channels) for f in frames if f.samples]
        if not parts:
            return self._empty()
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def push(self, pcm: PcmLike) -> Pcm:
        """Convert one chunk; returns whatever output is ready (possibly nothing)."""
        if self._finished:
            raise RuntimeError("the resampler was flushed; create a new one for a new stream")
        chunk = as_pcm(pcm, self.in_channels)
        if self._resampler is None:
            return chunk
        if chunk.shape[0] == 0:
            return self._empty()
        frame = AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout=self._in_layout)
        frame.sample_rate = self.in_rate
        frame.pts = self._pts
        frame.time_base = self._time_base
        self._pts += chunk.shape[0]
        return self._collect(self._resampler.resample(frame))

    def flush(self) -> Pcm:
        """The output still held in the filter; the resampler is finished afterwards."""
        resampler, self._resampler = self._resampler, None
        if self._finished or resampler is None:
            self._finished = True
            return self._empty()
        self._finished = True
        return self._collect(resampler.resample(None))
