"""Frame-by-frame transcoding between two audio formats, as a media gateway does.

A :class:`Transcoder` turns the frames of one stream (one
:class:`~clutchcall.moqt.AudioFormat`) into frames of another: decode, resample
and remix with :class:`~clutchcall.audio.Resampler`, cut into the target's frame
duration, encode. It keeps one decoder, one resampler and one encoder, plus less
than one output frame of PCM, so its memory is bounded whatever it is fed; each
:meth:`Transcoder.push` does the work of one input frame (an input larger than the
format's largest frame is refused before decoding).
"""

from __future__ import annotations

import numpy as np

from ..moqt.catalog import AudioFormat
from .codecs import Pcm, make_codec
from .errors import FrameSizeError
from .resample import Resampler

__all__ = ["Transcoder"]


class Transcoder:
    """Frames in ``source`` format in, frames in ``target`` format out.

    Output timestamps follow the input's: an output frame is stamped with the
    timestamp of the input frame its first sample came from, plus that sample's
    offset in it. Raises :class:`~clutchcall.audio.AudioError` (from :meth:`push`)
    for a frame that does not decode; the stream goes on with the next one.
    """

    def __init__(self, source: AudioFormat, target: AudioFormat) -> None:
        self.source = source
        self.target = target
        self._decoder = make_codec(
            source.codec,
            sample_rate=source.sample_rate,
            channels=source.channels,
            frame_ms=source.frame_ms,
        )
        self._encoder = make_codec(
            target.codec,
            sample_rate=target.sample_rate,
            channels=target.channels,
            frame_ms=target.frame_ms,
        )
        self._resampler = Resampler(
            in_rate=source.sample_rate,
            in_channels=source.channels,
            out_rate=target.sample_rate,
            out_channels=target.channels,
        )
        self._pending: Pcm = np.zeros((0, target.channels), dtype=np.int16)
        self._pending_us = 0
        #: Input frames that did not decode.
        self.failed = 0

    def push(self, frame: bytes, timestamp_us: int) -> list[tuple[bytes, int]]:
        """Transcode one input frame; returns the output frames now complete
        (none, one or several, depending on the two frame durations)."""
        if len(frame) > self.source.max_frame_bytes:
            self.failed += 1
            raise FrameSizeError(
                f"a {self.source.codec} frame of {len(frame)} bytes is larger than "
                f"{self.source.max_frame_bytes}"
            )
        try:
            pcm = self._decoder.decode(frame)
        except Exception:
            self.failed += 1
            raise
        converted = self._resampler.push(pcm)
        target = self.target
        if not self._pending.shape[0]:
            self._pending_us = timestamp_us
        pending = np.concatenate([self._pending, converted]) if self._pending.size else converted
        size = self._encoder.samples_per_frame
        out: list[tuple[bytes, int]] = []
        start = 0
        while pending.shape[0] - start >= size:
            chunk = pending[start : start + size]
            out.append((self._encoder.encode(chunk), self._pending_us))
            self._pending_us += target.frame_ms * 1000
            start += size
        self._pending = np.ascontiguousarray(pending[start:])
        return out

    def close(self) -> None:
        self._decoder.close()
        self._encoder.close()
