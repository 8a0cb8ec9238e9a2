"""AudioPlayer: encoded frames in, in any order; continuous PCM out.

The Python counterpart of the browser's ``OpusPlayer``: frames received from a
bridge go into a :class:`~clutchcall.audio.jitter.JitterBuffer`; every frame
period the player takes the next slot, decodes it (or substitutes silence for a
gap, an underrun or while prebuffering) and hands the PCM to a sink: a
:class:`~clutchcall.audio.WavWriter`, or any callable taking an int16 array of
shape ``(samples, channels)``.

The player does not read a clock itself. Whoever owns time calls
:meth:`AudioPlayer.pull` once per frame period, or :meth:`AudioPlayer.play_until`
with the current time, or :meth:`AudioPlayer.drain` at the end of a stream;
:meth:`AudioPlayer.run` is a ready-made real-time driver on the ``anyio``
clock. :meth:`AudioPlayer.push` is thread-safe, so a bridge callback running in
another thread can feed a player driven elsewhere.

A frame that fails to decode (corrupt, or of the wrong duration) plays as
silence and is counted in ``decode_errors``; playout never raises for bad input.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Literal, Self

import anyio
from clutchcall_api.models import AudioCodec

from .codecs import AudioCodecImpl, Pcm, make_codec
from .errors import AudioError
from .jitter import JitterBuffer, Playout, PlayoutKind, PushOutcome
from .wav import WavWriter

__all__ = ["AudioPlayer", "PcmSink", "PlayerStats"]

PcmSink = Callable[[Pcm], object]
"""Receives each frame period's PCM, int16 of shape ``(samples, channels)``."""


@dataclass(frozen=True)
class PlayerStats:
    """Counters of a player (see :mod:`clutchcall.audio.jitter` for the policy)."""

    pushed: int
    played: int
    concealed: int
    underruns: int
    late: int
    duplicates: int
    dropped: int
    resyncs: int
    decode_errors: int
    frames_out: int
    """Frame periods handed to the sink (including silence)."""
    buffered: int


class AudioPlayer:
    """A jitter-buffered decoder writing PCM to a sink.

    ``prebuffer_ms`` is the buffering before playout starts (and after an
    underrun); ``capacity_ms`` bounds the latency the buffer may build up.
    Both are rounded to whole frames.
    """

    def __init__(
        self,
        sink: PcmSink | None = None,
        *,
        codec: AudioCodec | str = AudioCodec.OPUS,
        sample_rate: int = 48000,
        channels: int = 1,
        frame_ms: int = 20,
        prebuffer_ms: int = 60,
        capacity_ms: int = 2000,
    ) -> None:
        self.codec: AudioCodecImpl = make_codec(
            codec, sample_rate=sample_rate, channels=channels, frame_ms=frame_ms
        )
        prebuffer = max(1, round(prebuffer_ms / frame_ms))
        capacity = max(prebuffer + 1, round(capacity_ms / frame_ms))
        self._buffer = JitterBuffer(
            frame_us=self.codec.frame_us, prebuffer=prebuffer, capacity=capacity
        )
        self._sink = sink
        self._owned_sink: WavWriter | None = None
        self._lock = threading.Lock()
        self._decode_errors = 0
        self._frames_out = 0
        self._epoch_us: int | None = None
        self._closed = False

    @classmethod
    def to_wav(
        cls,
        path: str | os.PathLike[str],
        *,
        codec: AudioCodec | str = AudioCodec.OPUS,
        sample_rate: int = 48000,
        channels: int = 1,
        frame_ms: int = 20,
        prebuffer_ms: int = 60,
        capacity_ms: int = 2000,
    ) -> AudioPlayer:
        """A player writing to a new WAV file, finalised by :meth:`close`."""
        player = cls(
            None,
            codec=codec,
            sample_rate=sample_rate,
            channels=channels,
            frame_ms=frame_ms,
            prebuffer_ms=prebuffer_ms,
            capacity_ms=capacity_ms,
        )
        writer = WavWriter(path, sample_rate=sample_rate, channels=channels)
        player._sink = player._owned_sink = writer
        return player

    # -- input --------------------------------------------------------------

    def push(self, timestamp_us: int, frame: bytes) -> PushOutcome:
        """Accept one encoded frame (any order, any thread)."""
        with self._lock:
            return self._buffer.push(timestamp_us, bytes(frame))

    def on_frame(self, frame: bytes, timestamp_us: int | None) -> None:
        """A bridge callback: ``on_downlink=player.on_frame`` (frame first, as bridges call).

        A frame without a timestamp is filed right after the latest one pushed.
        """
        with self._lock:
            if timestamp_us is None:
                timestamp_us = self._buffer.next_timestamp_us() or 0
            self._buffer.push(timestamp_us, bytes(frame))

    # -- output -------------------------------------------------------------

    def _render(self, playout: Playout) -> Pcm:
        if playout.kind is PlayoutKind.FRAME and playout.frame is not None:
            try:
                return self.codec.decode(playout.frame)
            except AudioError:
                self._decode_errors += 1
        return self.codec.silence()

    def _emit(self, playout: Playout) -> Pcm:
        pcm = self._render(playout)
        self._frames_out += 1
        if self._sink is not None:
            self._sink(pcm)
        return pcm

    def pull(self) -> Pcm:
        """Play one frame period: decode the next slot (or silence) and send it to the sink."""
        with self._lock:
            playout = self._buffer.pop()
        return self._emit(playout)

    def play_until(self, now_us: int) -> int:
        """Play every frame period due by ``now_us`` on the caller's clock.

        The first call plays one frame and fixes the clock's origin; from then on
        frame *k* is due at ``origin + k * frame_us``. Returns how many frames
        were played by this call.
        """
        if self._epoch_us is None:
            self._epoch_us = now_us - self._frames_out * self.codec.frame_us
        due = (now_us - self._epoch_us) // self.codec.frame_us + 1
        played = 0
        while self._frames_out < due:
            self.pull()
            played += 1
        return played

    def drain(self) -> int:
        """Play everything buffered without waiting (end of stream); returns frames played."""
        with self._lock:
            playouts = self._buffer.drain()
        for playout in playouts:
            self._emit(playout)
        return len(playouts)

    async def run(self, *, duration: float | None = None) -> None:
        """Real-time driver: one :meth:`pull` per frame period on the anyio clock.

        Runs for ``duration`` seconds, or until cancelled or :meth:`close`.
        If the sink is slow the driver catches up rather than drifting.
        """
        frame_s = self.codec.frame_ms / 1000
        start = anyio.current_time()
        count = 0
        while not self._closed:
            if duration is not None and count * frame_s >= duration - 1e-9:
                return
            await anyio.sleep_until(start + count * frame_s)
            if self._closed:
                return
            self.pull()
            count += 1

    def run_blocking(
        self, duration: float, *, backend: Literal["asyncio", "trio"] = "asyncio"
    ) -> None:
        """:meth:`run` for ``duration`` seconds from synchronous code."""
        anyio.run(partial(self.run, duration=duration), backend=backend)

    # -- state ----------------------------------------------------------------

    @property
    def stats(self) -> PlayerStats:
        with self._lock:
            s = self._buffer.stats
            return PlayerStats(
                pushed=s.pushed,
                played=s.played,
                concealed=s.concealed,
                underruns=s.underruns,
                late=s.late,
                duplicates=s.duplicates,
                dropped=s.dropped,
                resyncs=s.resyncs,
                decode_errors=self._decode_errors,
                frames_out=self._frames_out,
                buffered=self._buffer.buffered,
            )

    @property
    def frame_us(self) -> int:
        return self.codec.frame_us

    def close(self) -> None:
        """Stop :meth:`run` and finalise a WAV file opened by :meth:`to_wav`."""
        self._closed = True
        if self._owned_sink is not None:
            self._owned_sink.close()
        self.codec.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
