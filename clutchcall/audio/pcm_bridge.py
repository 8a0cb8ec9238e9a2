"""Decoded audio on an audio bridge: PCM from what it receives, PCM into what it sends.

An audio bridge carries encoded frames as bytes, so the base install needs no
codec library. With the ``audio`` extra, :class:`AsyncPcmBridge` (around an
:class:`~clutchcall.AsyncAudioBridge`) and :class:`PcmBridge` (around the blocking
:class:`~clutchcall.AudioBridge`) give the view a speech pipeline wants, in the
format the bridge was attached with::

    bridge = await voice.audio_bridge.attach(call.sid, codec="pcm16", sample_rate=16000)
    pcm = AsyncPcmBridge(bridge)
    async for frame in pcm.uplink():      # PcmFrame: .samples (int16, (n, channels)),
        asr.feed(frame.samples)           #   .sample_rate, .channels, .timestamp_us
    await pcm.publish_downlink(tts_samples, sample_rate=24000)   # any length; paced

Receiving (``uplink()`` on the server side, ``downlink()`` on the caller side):
each encoded frame is decoded with the bridge's codec and yielded with its
timestamp, optionally converted to another rate or channel count. A frame that
does not decode (a corrupt packet, a frame of another size or codec) is skipped
and counted in the stream's ``decode_errors``; the first one of a stream is
logged as a warning, the rest at debug level. Frames arrive in the order the
bridge delivers them: there is no jitter buffer, so a lost frame is a gap
(compare ``timestamp_us`` of consecutive frames to see one; use
:class:`~clutchcall.audio.AudioPlayer` for gap-free playout).

Sending (``publish_downlink`` on the server side, ``publish_uplink`` on the
caller side): samples of any length, at any rate and channel count, are
converted to the bridge's format, cut into frames of ``frame_ms``, encoded and
published in real time, one frame per frame period. What does not fill a whole
frame waits for the next call; ``flush=True`` pads it with silence and sends it
(the end of an utterance). The call returns once its last frame is published,
so a loop over a text-to-speech stream is paced by it. Timestamps advance by one
frame duration per frame; when publishing resumes after a pause (more than one
frame period without audio) or falls more than :data:`MAX_CATCH_UP_S` behind,
they jump to the monotonic microsecond clock, the one a bridge stamps with, so
a receiver's jitter buffer sees the pause. Cancelling an async publish (or an
exception from the bridge) discards the frames not yet sent and the remainder.
Concurrent publishes on one :class:`AsyncPcmBridge` (or from several threads on
one :class:`PcmBridge`) run one after the other.

These wrappers use only the bridges' public API, so the bridge layer itself
never imports this package (the base install stays free of numpy and PyAV).
"""

from __future__ import annotations

import inspect
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

import anyio
import numpy as np

from ..errors import InvalidArgumentError
from ..moqt.voice import AudioFrame, VoiceRole, VoiceTrack
from .codecs import AudioCodecImpl, Pcm, PcmLike, as_pcm, make_codec
from .errors import AudioError
from .resample import Resampler

__all__ = [
    "MAX_CATCH_UP_S",
    "AsyncBridgeLike",
    "AsyncPcmBridge",
    "AsyncPcmStream",
    "BridgeLike",
    "PcmBridge",
    "PcmFrame",
    "PcmStream",
]

logger = logging.getLogger(__name__)

#: A publish that falls further behind its schedule than this (a stalled event
#: loop or thread) restarts its timeline instead of sending the backlog in a burst.
MAX_CATCH_UP_S = 0.2


@dataclass(frozen=True, eq=False)
class PcmFrame:
    """One decoded frame of a bridge's track."""

    #: int16 samples, shape ``(samples_per_channel, channels)``, C order.
    samples: Pcm
    sample_rate: int
    channels: int
    #: The timestamp the frame was published with (microseconds).
    timestamp_us: int

    @property
    def samples_per_channel(self) -> int:
        return int(self.samples.shape[0])

    @property
    def duration_us(self) -> int:
        """How long the frame plays, in microseconds."""
        return self.samples_per_channel * 1_000_000 // self.sample_rate


# -- what the wrappers need of a bridge --------------------------------------------------


class _BridgeFormat(Protocol):
    @property
    def call_sid(self) -> str: ...

    @property
    def role(self) -> VoiceRole: ...

    @property
    def codec(self) -> str: ...

    @property
    def sample_rate(self) -> int: ...

    @property
    def channels(self) -> int: ...

    @property
    def frame_ms(self) -> int: ...


class _AsyncFrames(Protocol):
    async def __anext__(self) -> AudioFrame: ...

    async def aclose(self) -> None: ...


class AsyncBridgeLike(_BridgeFormat, Protocol):
    """What :class:`AsyncPcmBridge` uses of an :class:`~clutchcall.AsyncAudioBridge`."""

    def uplink(self) -> _AsyncFrames: ...

    def downlink(self) -> _AsyncFrames: ...

    async def publish_downlink(self, frame: bytes, timestamp_us: int | None = None) -> None: ...

    async def publish_uplink(self, frame: bytes, timestamp_us: int | None = None) -> None: ...


class BridgeLike(_BridgeFormat, Protocol):
    """What :class:`PcmBridge` uses of a blocking :class:`~clutchcall.AudioBridge`."""

    def uplink(self) -> Iterator[AudioFrame]: ...

    def downlink(self) -> Iterator[AudioFrame]: ...

    def publish_downlink(self, frame: bytes, timestamp_us: int | None = None) -> None: ...

    def publish_uplink(self, frame: bytes, timestamp_us: int | None = None) -> None: ...


def _bridge_codec(bridge: _BridgeFormat) -> AudioCodecImpl:
    return make_codec(
        bridge.codec,
        sample_rate=bridge.sample_rate,
        channels=bridge.channels,
        frame_ms=bridge.frame_ms,
    )


def _optional_positive(name: str, value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InvalidArgumentError(f"{name} must be a positive int or None, got {value!r}")
    return value


# -- receiving ---------------------------------------------------------------------------


@dataclass
class _Decoder:
    """Sans-IO core of a PCM stream: encoded frames in, decoded (and converted) out."""

    codec: AudioCodecImpl
    what: str
    sample_rate: int
    channels: int
    resampler: Resampler | None = None
    frames: int = 0
    decode_errors: int = 0
    _next_timestamp_us: int | None = field(default=None, repr=False)

    @classmethod
    def of(
        cls, bridge: _BridgeFormat, track: VoiceTrack, sample_rate: object, channels: object
    ) -> _Decoder:
        codec = _bridge_codec(bridge)
        rate = _optional_positive("sample_rate", sample_rate) or codec.sample_rate
        count = _optional_positive("channels", channels) or codec.channels
        resampler = None
        if (rate, count) != (codec.sample_rate, codec.channels):
            resampler = Resampler(
                in_rate=codec.sample_rate,
                in_channels=codec.channels,
                out_rate=rate,
                out_channels=count,
            )
        what = f"{track} of {bridge.call_sid}"
        return cls(codec, what, rate, count, resampler)

    def decode(self, frame: AudioFrame) -> PcmFrame | None:
        try:
            pcm = self.codec.decode(frame.data)
        except AudioError as exc:
            self.decode_errors += 1
            log = logger.warning if self.decode_errors == 1 else logger.debug
            log(
                "%s: skipping a frame of %d bytes that is not %s at %d Hz (%s); "
                "frames that do not decode are counted in decode_errors",
                self.what,
                len(frame.data),
                self.codec.codec.value,
                self.codec.sample_rate,
                exc,
            )
            return None
        self._next_timestamp_us = frame.timestamp_us + self.codec.frame_us
        if self.resampler is not None:
            pcm = self.resampler.push(pcm)
            if not pcm.shape[0]:
                return None
        self.frames += 1
        return PcmFrame(pcm, self.sample_rate, self.channels, frame.timestamp_us)

    def finish(self) -> PcmFrame | None:
        """What the resampler still holds once the track has ended."""
        resampler, self.resampler = self.resampler, None
        if resampler is None or self._next_timestamp_us is None:
            return None
        tail = resampler.flush()
        if not tail.shape[0]:
            return None
        self.frames += 1
        return PcmFrame(tail, self.sample_rate, self.channels, self._next_timestamp_us)


class _DecodedStream:
    """What the async and the blocking PCM stream share: the decoder and its counters."""

    def __init__(self, decoder: _Decoder) -> None:
        self._decoder = decoder
        self._done = False

    @property
    def frames(self) -> int:
        """Frames yielded so far."""
        return self._decoder.frames

    @property
    def decode_errors(self) -> int:
        """Frames skipped because they did not decode."""
        return self._decoder.decode_errors

    def _take(self, frame: AudioFrame | None) -> PcmFrame | None:
        """``frame`` decoded (None if it is skipped); at the end of the track (``frame``
        None), what the decoder still holds, and the stream is done."""
        if frame is None:
            self._done = True
            return self._decoder.finish()
        return self._decoder.decode(frame)


class AsyncPcmStream(_DecodedStream):
    """Decoded frames of one track, in order (``async for frame in pcm.uplink()``).

    Ends when the bridge's track ends (the bridge closed or the call ended).
    """

    def __init__(self, frames: _AsyncFrames, decoder: _Decoder) -> None:
        super().__init__(decoder)
        self._frames = frames

    def __aiter__(self) -> AsyncPcmStream:
        return self

    async def __anext__(self) -> PcmFrame:
        while not self._done:
            try:
                frame: AudioFrame | None = await self._frames.__anext__()
            except StopAsyncIteration:
                frame = None
            decoded = self._take(frame)
            if decoded is not None:
                return decoded
        raise StopAsyncIteration

    async def aclose(self) -> None:
        """Stop receiving into this stream."""
        self._done = True
        await self._frames.aclose()


class PcmStream(_DecodedStream, Iterator[PcmFrame]):
    """Decoded frames of one track, in order (``for frame in pcm.uplink()``; decoding
    runs in the iterating thread).

    Ends when the bridge's track ends (the bridge closed or the call ended).
    """

    def __init__(self, frames: Iterator[AudioFrame], decoder: _Decoder) -> None:
        super().__init__(decoder)
        self._frames = frames

    def __next__(self) -> PcmFrame:
        while not self._done:
            decoded = self._take(next(self._frames, None))
            if decoded is not None:
                return decoded
        raise StopIteration

    def close(self) -> None:
        """Stop receiving into this stream."""
        self._done = True
        self._frames = iter(())


# -- sending -----------------------------------------------------------------------------


class _Outbox:
    """Sans-IO core of publishing PCM: cuts PCM of any length, rate and channel count
    into frames of the bridge's format, and schedules them (no clock of its own)."""

    def __init__(self, codec: AudioCodecImpl) -> None:
        self.codec = codec
        self._frame_s = codec.frame_ms / 1000
        self._pending: Pcm = np.zeros((0, codec.channels), dtype=np.int16)
        self._resampler: Resampler | None = None
        self._input: tuple[int, int] = (codec.sample_rate, codec.channels)
        #: The timeline: frame k after the anchor is due at ``anchor + k * frame``
        #: (no sum of rounded periods to drift) and stamped ``anchor_us + k * frame_us``.
        self._anchor: float | None = None
        self._anchor_us = 0
        self._count = 0

    def _convert(self, pcm: Pcm, rate: int, channels: int) -> Pcm:
        parts: list[Pcm] = []
        if (rate, channels) != self._input:
            parts.append(self._flush_resampler())
            self._input = (rate, channels)
            if (rate, channels) != (self.codec.sample_rate, self.codec.channels):
                self._resampler = Resampler(
                    in_rate=rate,
                    in_channels=channels,
                    out_rate=self.codec.sample_rate,
                    out_channels=self.codec.channels,
                )
        parts.append(pcm if self._resampler is None else self._resampler.push(pcm))
        return np.concatenate(parts) if len(parts) > 1 else parts[0]

    def _flush_resampler(self) -> Pcm:
        resampler, self._resampler = self._resampler, None
        if resampler is None:
            return np.zeros((0, self.codec.channels), dtype=np.int16)
        return resampler.flush()

    def cut(self, samples: PcmLike, sample_rate: int | None, flush: bool) -> list[Pcm]:
        """Whole frames of the bridge's format; what is left waits (or is padded, if
        ``flush``). Arrays of shape ``(n, c)`` have ``c`` channels; flat arrays and
        bytes have the bridge's channel count."""
        channels = self.codec.channels
        if isinstance(samples, np.ndarray) and samples.ndim == 2:
            channels = int(samples.shape[1])
        pcm = as_pcm(samples, channels)
        rate = sample_rate or self.codec.sample_rate
        converted = self._convert(pcm, rate, channels)
        if flush:
            converted = np.concatenate([converted, self._flush_resampler()])
            self._input = (self.codec.sample_rate, self.codec.channels)
        pending = (
            np.concatenate([self._pending, converted]) if self._pending.shape[0] else converted
        )
        n = self.codec.samples_per_frame
        whole = pending.shape[0] // n * n
        frames = [pending[i : i + n] for i in range(0, whole, n)]
        rest = pending[whole:]
        if flush and rest.shape[0]:
            pad = np.zeros((n - rest.shape[0], self.codec.channels), dtype=np.int16)
            frames.append(np.concatenate([rest, pad]))
            rest = rest[:0]
        self._pending = np.ascontiguousarray(rest)
        return frames

    def discard(self) -> None:
        """Forget the remainder (a publish was cancelled: what followed it is gone)."""
        self._pending = self._pending[:0]
        self._flush_resampler()
        self._input = (self.codec.sample_rate, self.codec.channels)

    def slot(self, now: float, now_us: int, first: bool) -> tuple[float, int]:
        """When the next frame is due (on the caller's clock, seconds) and its
        timestamp. ``first``: the first frame of a publish call."""
        frame_us = self.codec.frame_us
        anchor = self._anchor
        allowed = self._frame_s if first else MAX_CATCH_UP_S
        if anchor is None or now - (anchor + self._count * self._frame_s) > allowed:
            next_us = self._anchor_us + self._count * frame_us
            self._anchor_us = now_us if anchor is None else max(now_us, next_us)
            self._anchor = anchor = now
            self._count = 0
        deadline = anchor + self._count * self._frame_s
        timestamp = self._anchor_us + self._count * frame_us
        self._count += 1
        return deadline, timestamp


def _monotonic_us() -> int:
    """The bridges' default frame clock (monotonic microseconds)."""
    return time.monotonic_ns() // 1000


def _check_publish(bridge: _BridgeFormat, track: VoiceTrack, sample_rate: object) -> int | None:
    if bridge.role.publishes != track:
        raise InvalidArgumentError(
            f"a {bridge.role}-side bridge publishes {bridge.role.publishes}, not {track}"
        )
    return _optional_positive("sample_rate", sample_rate)


# -- the wrappers ------------------------------------------------------------------------


class AsyncPcmBridge:
    """PCM in and out of an :class:`~clutchcall.AsyncAudioBridge` (needs the ``audio`` extra).

    Server side (``attach``): :meth:`uplink` and :meth:`publish_downlink`. Caller
    side (``attach_caller``): :meth:`downlink` and :meth:`publish_uplink`. The
    bridge stays yours: close it as usual; the wrapper holds no resources of its
    own. See :mod:`clutchcall.audio.pcm_bridge` for the policies.
    """

    def __init__(self, bridge: AsyncBridgeLike) -> None:
        if not inspect.iscoroutinefunction(getattr(bridge, "publish_downlink", None)):
            raise InvalidArgumentError(
                f"AsyncPcmBridge wraps an AsyncAudioBridge, not {type(bridge).__name__}; "
                "use PcmBridge for a blocking AudioBridge"
            )
        self._bridge = bridge
        self._outbox = _Outbox(_bridge_codec(bridge))
        self._lock: anyio.Lock | None = None

    @property
    def bridge(self) -> AsyncBridgeLike:
        """The bridge this wraps."""
        return self._bridge

    def uplink(
        self, *, sample_rate: int | None = None, channels: int | None = None
    ) -> AsyncPcmStream:
        """The caller's audio from now on, decoded: :class:`PcmFrame` objects in order.

        ``sample_rate`` / ``channels`` (None: the bridge's) convert each frame on the
        way; converted frames may vary in length by a few samples. Frames that do not
        decode are skipped and counted in the stream's ``decode_errors``.
        """
        decoder = _Decoder.of(self._bridge, VoiceTrack.UPLINK, sample_rate, channels)
        return AsyncPcmStream(self._bridge.uplink(), decoder)

    def downlink(
        self, *, sample_rate: int | None = None, channels: int | None = None
    ) -> AsyncPcmStream:
        """Caller side: the cloud's audio from now on, decoded (as :meth:`uplink`)."""
        decoder = _Decoder.of(self._bridge, VoiceTrack.DOWNLINK, sample_rate, channels)
        return AsyncPcmStream(self._bridge.downlink(), decoder)

    async def publish_downlink(
        self, samples: PcmLike, *, sample_rate: int | None = None, flush: bool = False
    ) -> None:
        """Encode ``samples`` in the bridge's format and send them to the caller, paced
        in real time; returns once the last whole frame is published.

        ``samples``: int16 of shape ``(n, channels)`` (any channel count), a flat
        interleaved int16 array or little-endian bytes (the bridge's channel count),
        at ``sample_rate`` (None: the bridge's), of any length. What does not fill a
        frame waits for the next call; ``flush=True`` pads it with silence and sends
        it (the end of an utterance).
        """
        rate = _check_publish(self._bridge, VoiceTrack.DOWNLINK, sample_rate)
        await self._publish(self._bridge.publish_downlink, samples, rate, flush)

    async def publish_uplink(
        self, samples: PcmLike, *, sample_rate: int | None = None, flush: bool = False
    ) -> None:
        """Caller side: encode and send mic audio to the cloud (as :meth:`publish_downlink`)."""
        rate = _check_publish(self._bridge, VoiceTrack.UPLINK, sample_rate)
        await self._publish(self._bridge.publish_uplink, samples, rate, flush)

    async def _publish(
        self,
        send: Callable[[bytes, int], Awaitable[None]],
        samples: PcmLike,
        rate: int | None,
        flush: bool,
    ) -> None:
        if self._lock is None:
            self._lock = anyio.Lock()
        outbox = self._outbox
        async with self._lock:
            frames = outbox.cut(samples, rate, flush)
            try:
                for index, pcm in enumerate(frames):
                    deadline, timestamp = outbox.slot(
                        anyio.current_time(), _monotonic_us(), index == 0
                    )
                    await anyio.sleep_until(deadline)
                    await send(outbox.codec.encode(pcm), timestamp)
            except BaseException:
                outbox.discard()
                raise


class PcmBridge:
    """PCM in and out of a blocking :class:`~clutchcall.AudioBridge` (needs the ``audio`` extra).

    The blocking twin of :class:`AsyncPcmBridge`: streams decode in the thread that
    iterates them, and publishing paces in (and blocks) the calling thread. Call
    it from your own threads, not from a bridge callback.
    """

    def __init__(self, bridge: BridgeLike) -> None:
        if inspect.iscoroutinefunction(getattr(bridge, "publish_downlink", None)):
            raise InvalidArgumentError(
                f"PcmBridge wraps a blocking AudioBridge, not {type(bridge).__name__}; "
                "use AsyncPcmBridge for an AsyncAudioBridge"
            )
        self._bridge = bridge
        self._outbox = _Outbox(_bridge_codec(bridge))
        self._lock = threading.Lock()

    @property
    def bridge(self) -> BridgeLike:
        """The bridge this wraps."""
        return self._bridge

    def uplink(self, *, sample_rate: int | None = None, channels: int | None = None) -> PcmStream:
        """The caller's audio from now on, decoded: :class:`PcmFrame` objects in order.

        ``sample_rate`` / ``channels`` (None: the bridge's) convert each frame on the
        way; converted frames may vary in length by a few samples. Frames that do not
        decode are skipped and counted in the stream's ``decode_errors``.
        """
        decoder = _Decoder.of(self._bridge, VoiceTrack.UPLINK, sample_rate, channels)
        return PcmStream(self._bridge.uplink(), decoder)

    def downlink(self, *, sample_rate: int | None = None, channels: int | None = None) -> PcmStream:
        """Caller side: the cloud's audio from now on, decoded (as :meth:`uplink`)."""
        decoder = _Decoder.of(self._bridge, VoiceTrack.DOWNLINK, sample_rate, channels)
        return PcmStream(self._bridge.downlink(), decoder)

    def publish_downlink(
        self, samples: PcmLike, *, sample_rate: int | None = None, flush: bool = False
    ) -> None:
        """Encode ``samples`` in the bridge's format and send them to the caller, paced
        in real time; returns once the last whole frame is published.

        ``samples``: int16 of shape ``(n, channels)`` (any channel count), a flat
        interleaved int16 array or little-endian bytes (the bridge's channel count),
        at ``sample_rate`` (None: the bridge's), of any length. What does not fill a
        frame waits for the next call; ``flush=True`` pads it with silence and sends
        it (the end of an utterance).
        """
        rate = _check_publish(self._bridge, VoiceTrack.DOWNLINK, sample_rate)
        self._publish(self._bridge.publish_downlink, samples, rate, flush)

    def publish_uplink(
        self, samples: PcmLike, *, sample_rate: int | None = None, flush: bool = False
    ) -> None:
        """Caller side: encode and send mic audio to the cloud (as :meth:`publish_downlink`)."""
        rate = _check_publish(self._bridge, VoiceTrack.UPLINK, sample_rate)
        self._publish(self._bridge.publish_uplink, samples, rate, flush)

    def _publish(
        self, send: Callable[[bytes, int], None], samples: PcmLike, rate: int | None, flush: bool
    ) -> None:
        outbox = self._outbox
        with self._lock:
            frames = outbox.cut(samples, rate, flush)
            try:
                for index, pcm in enumerate(frames):
                    deadline, timestamp = outbox.slot(time.monotonic(), _monotonic_us(), index == 0)
                    delay = deadline - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    send(outbox.codec.encode(pcm), timestamp)
            except BaseException:
                outbox.discard()
                raise
