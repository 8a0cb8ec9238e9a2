"""AudioSource: PCM in, one encoded frame with its timestamp out per frame period.

The Python counterpart of the browser's ``captureMicrophone``: where the
browser captures a microphone, a source reads a WAV file or any iterable (or
async iterable) of PCM chunks, converts it to the bridge's format, cuts it into
frames, encodes each one and hands it to a ``publish(frame, timestamp_us)``
callable, such as ``bridge.publish_downlink`` or ``caller.publish_uplink``.

Timestamps advance by exactly one frame duration per frame from
``timestamp_origin_us`` (by default the monotonic clock, in microseconds, when
the first frame is produced, the clock a bridge stamps with when given no
timestamp). They describe the media timeline, so a receiver's jitter buffer can
order and pace them whatever the network does.

Pacing: with ``realtime=True`` frame *k* is published ``k`` frame durations after
the first one (``anyio`` clock, so asyncio, trio and a test's fake clock all
work); otherwise frames go out as fast as ``publish`` takes them.

The last partial frame is padded with silence (``pad_final=False`` drops it).
The final Opus lookahead (6.5 ms) stays in the encoder; see :mod:`.codecs`.
"""

from __future__ import annotations

import inspect
import os
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    Callable,
    Generator,
    Iterable,
    Iterator,
)
from contextlib import aclosing
from dataclasses import dataclass
from functools import partial
from typing import Literal

import anyio
import anyio.lowlevel
import numpy as np
from clutchcall_api.models import AudioCodec

from ..moqt.voice import AudioFrame
from .codecs import AudioCodecImpl, OpusApplication, Pcm, PcmLike, as_pcm, make_codec
from .resample import Resampler
from .wav import iter_wav, wav_params

__all__ = ["AudioSource", "Publish", "SourceStats"]

Publish = Callable[[bytes, int], object]
"""``publish(frame, timestamp_us)``: a plain function, or one returning an awaitable
(a coroutine function), which the source awaits before the next frame."""


@dataclass(frozen=True)
class SourceStats:
    """What one run of a source published."""

    frames: int
    """Encoded frames handed to ``publish``."""
    duration_us: int
    """Media duration of those frames (frames x frame duration)."""
    first_timestamp_us: int | None
    late_frames: int
    """Real-time runs only: frames published more than one frame period after their slot."""


class _Framer:
    """Sans-IO core: PCM chunks in (any rate/size), encoded, stamped frames out."""

    def __init__(
        self,
        codec: AudioCodecImpl,
        resampler: Resampler,
        input_channels: int,
        origin_us: int | None,
        pad_final: bool,
    ) -> None:
        self.codec = codec
        self._resampler = resampler
        self._input_channels = input_channels
        self._origin_us = origin_us
        self._pad_final = pad_final
        self._pending = np.zeros((0, codec.channels), dtype=np.int16)
        self.frames = 0

    def _stamp(self, pcm: Pcm) -> AudioFrame:
        if self._origin_us is None:
            self._origin_us = time.monotonic_ns() // 1000
        timestamp = self._origin_us + self.frames * self.codec.frame_us
        self.frames += 1
        return AudioFrame(self.codec.encode(pcm), timestamp)

    @property
    def first_timestamp_us(self) -> int | None:
        return self._origin_us if self.frames else None

    def _cut(self, pcm: Pcm) -> list[AudioFrame]:
        if pcm.shape[0] == 0:
            return []
        pending = np.concatenate([self._pending, pcm]) if self._pending.shape[0] else pcm
        n = self.codec.samples_per_frame
        whole = pending.shape[0] // n * n
        self._pending = pending[whole:]
        return [self._stamp(pending[i : i + n]) for i in range(0, whole, n)]

    def push(self, chunk: PcmLike) -> list[AudioFrame]:
        return self._cut(self._resampler.push(as_pcm(chunk, self._input_channels)))

    def finish(self) -> list[AudioFrame]:
        out = self._cut(self._resampler.flush())
        if self._pending.shape[0] and self._pad_final:
            pad = self.codec.samples_per_frame - self._pending.shape[0]
            tail = np.concatenate([self._pending, np.zeros((pad, self.codec.channels), np.int16)])
            out.append(self._stamp(tail))
        self._pending = self._pending[:0]
        return out


class AudioSource:
    """Encodes PCM from a WAV file or an iterable and publishes it frame by frame.

    ``chunks`` yields PCM at ``input_sample_rate`` / ``input_channels`` (defaults:
    the output format): int16 arrays of shape ``(samples, channels)``, flat
    interleaved int16 arrays, or little-endian bytes, of any length. The output
    format is the bridge's (``codec``, ``sample_rate``, ``channels``,
    ``frame_ms``), checked by :func:`~clutchcall.audio.make_codec`.

    A source is one stream: iterate or run it once.

    >>> source = AudioSource.from_wav("prompt.wav", codec="opus")   # doctest: +SKIP
    >>> await source.run(bridge.publish_downlink)                   # doctest: +SKIP
    """

    def __init__(
        self,
        chunks: Iterable[PcmLike] | AsyncIterable[PcmLike],
        *,
        codec: AudioCodec | str = AudioCodec.OPUS,
        sample_rate: int = 48000,
        channels: int = 1,
        frame_ms: int = 20,
        input_sample_rate: int | None = None,
        input_channels: int | None = None,
        bitrate: int | None = None,
        application: OpusApplication = "audio",
        timestamp_origin_us: int | None = None,
        pad_final: bool = True,
    ) -> None:
        self.codec = make_codec(
            codec,
            sample_rate=sample_rate,
            channels=channels,
            frame_ms=frame_ms,
            bitrate=bitrate,
            application=application,
        )
        self.input_sample_rate = input_sample_rate or sample_rate
        self.input_channels = input_channels or channels
        self._chunks = chunks
        self._framer = _Framer(
            self.codec,
            Resampler(
                in_rate=self.input_sample_rate,
                in_channels=self.input_channels,
                out_rate=sample_rate,
                out_channels=channels,
            ),
            self.input_channels,
            timestamp_origin_us,
            pad_final,
        )
        self._started = False
        self._close_chunks = False

    @classmethod
    def from_wav(
        cls,
        path: str | os.PathLike[str],
        *,
        codec: AudioCodec | str = AudioCodec.OPUS,
        sample_rate: int = 48000,
        channels: int = 1,
        frame_ms: int = 20,
        bitrate: int | None = None,
        application: OpusApplication = "audio",
        timestamp_origin_us: int | None = None,
        pad_final: bool = True,
    ) -> AudioSource:
        """A source reading a 16-bit WAV file of any rate and channel count, resampled."""
        rate, file_channels, _ = wav_params(path)
        source = cls(
            iter_wav(path, chunk_samples=max(rate // 10, 1)),
            codec=codec,
            sample_rate=sample_rate,
            channels=channels,
            frame_ms=frame_ms,
            input_sample_rate=rate,
            input_channels=file_channels,
            bitrate=bitrate,
            application=application,
            timestamp_origin_us=timestamp_origin_us,
            pad_final=pad_final,
        )
        source._close_chunks = True  # the file reader is ours: close it even if stopped early
        return source

    def _release(self) -> None:
        if self._close_chunks and isinstance(self._chunks, Generator):
            self._chunks.close()

    @property
    def frames_produced(self) -> int:
        return self._framer.frames

    def _claim(self) -> None:
        if self._started:
            raise RuntimeError("an AudioSource is one stream and can only be consumed once")
        self._started = True

    def frames(self) -> Iterator[AudioFrame]:
        """The encoded frames, unpaced (sync iterables only; use :meth:`aframes` otherwise)."""
        chunks = self._chunks
        if not isinstance(chunks, Iterable):
            raise TypeError("frames() needs a sync iterable of chunks; use aframes()")
        self._claim()
        try:
            for chunk in chunks:
                yield from self._framer.push(chunk)
            yield from self._framer.finish()
        finally:
            self._release()

    async def aframes(self) -> AsyncGenerator[AudioFrame, None]:
        """The encoded frames, unpaced, from a sync or async iterable of chunks."""
        self._claim()
        chunks = self._chunks
        try:
            if isinstance(chunks, AsyncIterable):
                async for chunk in chunks:
                    for frame in self._framer.push(chunk):
                        yield frame
            else:
                for chunk in chunks:
                    for frame in self._framer.push(chunk):
                        yield frame
                    await anyio.lowlevel.checkpoint()
            for frame in self._framer.finish():
                yield frame
        finally:
            self._release()

    async def run(self, publish: Publish, *, realtime: bool = True) -> SourceStats:
        """Publish every frame, paced in real time or as fast as possible.

        ``publish(frame, timestamp_us)`` may return an awaitable, which is awaited
        before the next frame. Cancel the surrounding scope to stop early.
        """
        frame_s = self.codec.frame_ms / 1000
        start: float | None = None
        late = 0
        count = 0
        async with aclosing(self.aframes()) as frames:
            async for frame in frames:
                if realtime:
                    now = anyio.current_time()
                    if start is None:
                        start = now
                    deadline = start + count * frame_s
                    if now > deadline + frame_s:
                        late += 1
                    else:
                        await anyio.sleep_until(deadline)
                else:
                    await anyio.lowlevel.checkpoint()
                result = publish(frame.data, frame.timestamp_us)
                if inspect.isawaitable(result):
                    await result
                count += 1
        return SourceStats(
            frames=count,
            duration_us=count * self.codec.frame_us,
            first_timestamp_us=self._framer.first_timestamp_us,
            late_frames=late,
        )

    def run_blocking(
        self,
        publish: Publish,
        *,
        realtime: bool = True,
        backend: Literal["asyncio", "trio"] = "asyncio",
    ) -> SourceStats:
        """:meth:`run` from synchronous code (starts and ends its own event loop)."""
        return anyio.run(partial(self.run, publish, realtime=realtime), backend=backend)
