"""Simulated PSTN callees: the far end of each dev-engine call, on the real relay.

While a call is in progress and someone has joined its media on the relay, the
engine joins too, as the ``caller`` role, through an ordinary
:class:`~clutchcall.bridge.MoqtClient` over loopback QUIC (one shared by all callees,
each call's tracks under that call's token):

- it subscribes to ``downlink`` and counts (and keeps, bounded) every frame;
- it reads the call's catalog (:mod:`clutchcall.moqt.catalog`) and speaks the
  format the server side declared (a bridge's ``attach`` format), waiting up to
  :data:`~clutchcall.dev._members.FORMAT_WAIT` for it, else the default (Opus 48
  kHz mono, 20 ms); it declares that format in its own catalog, and follows the
  server side if it declares another one later;
- an answering callee speaks real audio: the DTMF digits :data:`PHRASE` (100 ms
  tone pairs, 60 ms apart), then :data:`PAUSE_MS` of silence, over and over, one
  frame every frame period in real time, with timestamps counting up from 0 by
  the frame duration. DTMF is deterministic at every sample rate, recognisable by
  ear (a phone keypad) and by machine (:func:`clutchcall.audio.detect_dtmf`);
- the echo callee (+15005550004) sends each downlink frame straight back on
  ``uplink``, payload and timestamp unchanged (it declares the server side's
  format, so no frame is transcoded on the way). When a client holds the call in
  the ``caller`` role (a browser softphone, ``attach_caller``), that client *is*
  the far end's voice, so the echo turns around: the callee joins as the
  ``server`` role instead and sends each ``uplink`` frame back on ``downlink``
  (payload and timestamp unchanged), so the caller hears itself. Only one
  direction runs at a time (both would feed each other in a loop); the callee
  switches when callers come or go. Its ``downlink`` yields to any other
  publisher of that track (an agent, a server bridge), as its ``uplink`` does.

With ``Engine(callee_markers=True)`` (a dev-only switch for tests of frame order
and loss) an answering callee sends numbered marker frames (:func:`speech_frame`,
not audio) every 20 ms instead, and declares no format.

It leaves when the call ends, or when nobody else has been on the call's
media for :data:`IDLE_LEAVE_SECONDS`. :class:`MediaCounters` are what the far
end saw; the engine exposes them as ``engine.media_counters(sid)`` and
``GET /_dev/calls/{sid}/media``.
"""

from __future__ import annotations

import builtins
import logging
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc
import numpy as np

from ..audio import make_codec, synth_dtmf
from ..moqnet import AudioFrame, AudioPublication
from ..moqnet.client import CatalogSubscription
from ..moqt import DEFAULT_FORMAT, AudioFormat, VoiceRole, VoiceTrack
from ._members import Member, MemberRelay, Scanner
from ._state import Callee, CallRecord, Store

logger = logging.getLogger(__name__)

FRAME_MS = 20
IDLE_LEAVE_SECONDS = 5.0
KEEP_FRAMES = 3000
CALLEE_IMPLEMENTATION = "clutchcall-dev-callee"
SPEAKING = (Callee.ANSWER, Callee.HANGS_UP)
#: What an answering callee says, over and over: DTMF digits...
PHRASE = "1590"
#: ...then this much silence.
PAUSE_MS = 600
#: Encoded phrases kept, one per format (each a list of frames).
_PHRASE_CACHE_SIZE = 16
_phrases: dict[AudioFormat, tuple[bytes, ...]] = {}


def speech_frame(seq: int, size: int = 80) -> bytes:
    """The ``seq``-th marker frame (``callee_markers`` mode): a tag, ``seq``, then filler."""
    head = struct.pack(">4sI", b"CCsp", seq)
    return head + bytes((seq * 7 + i) % 251 for i in range(size - len(head)))


def phrase_frames(fmt: AudioFormat) -> tuple[bytes, ...]:
    """One cycle of the callee's phrase (:data:`PHRASE`, then :data:`PAUSE_MS` of
    silence) encoded in ``fmt``, one frame each (computed once per format)."""
    frames = _phrases.get(fmt)
    if frames is not None:
        return frames
    codec = make_codec(
        fmt.codec, sample_rate=fmt.sample_rate, channels=fmt.channels, frame_ms=fmt.frame_ms
    )
    tones = synth_dtmf(PHRASE, fmt.sample_rate, channels=fmt.channels)
    pause = np.zeros((round(PAUSE_MS * fmt.sample_rate / 1000), fmt.channels), dtype=np.int16)
    pcm = np.concatenate([tones, pause])
    n = codec.samples_per_frame
    usable = pcm.shape[0] // n * n
    frames = tuple(codec.encode(pcm[i : i + n]) for i in range(0, usable, n))
    if len(_phrases) >= _PHRASE_CACHE_SIZE:
        _phrases.pop(next(iter(_phrases)))
    _phrases[fmt] = frames
    return frames


@dataclass
class TrackCounters:
    frames: int = 0
    bytes: int = 0
    last_timestamp_us: int | None = None

    def add(self, data: builtins.bytes, timestamp_us: int) -> None:
        self.frames += 1
        self.bytes += len(data)
        self.last_timestamp_us = timestamp_us

    def to_json(self) -> dict[str, Any]:
        return {
            "frames": self.frames,
            "bytes": self.bytes,
            "lastTimestampUs": self.last_timestamp_us,
        }


@dataclass
class MediaCounters:
    """What the simulated far end of one call sent (uplink) and received (downlink)."""

    call_sid: str
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    #: The callee is on the relay: subscribed to downlink and publishing uplink.
    joined: bool = False
    uplink: TrackCounters = field(default_factory=TrackCounters)
    downlink: TrackCounters = field(default_factory=TrackCounters)
    received: deque[AudioFrame] = field(default_factory=lambda: deque(maxlen=KEEP_FRAMES))
    #: The format the callee declared for what it sends (None: none, or not yet).
    format: AudioFormat | None = None

    def to_json(self) -> dict[str, Any]:
        with self.lock:
            return {
                "callSid": self.call_sid,
                "joined": self.joined,
                "format": None if self.format is None else str(self.format),
                "uplink": self.uplink.to_json(),
                "downlink": self.downlink.to_json(),
            }

    def downlink_frames(self) -> list[AudioFrame]:
        with self.lock:
            return list(self.received)


class Callees(Scanner):
    """Runs the simulated callees of every live call (in the relay's event loop)."""

    def __init__(
        self,
        store: Store,
        relay: MemberRelay,
        *,
        callers_present: Callable[[str], bool] = lambda sid: False,
        markers: Callable[[], bool] = lambda: False,
    ) -> None:
        super().__init__(store, relay)
        #: Whether answering callees send numbered markers instead of audio.
        self._markers = markers
        self._callers_present = callers_present
        self._media: dict[str, MediaCounters] = {}
        #: Whether each running echo callee loops uplink back to a caller.
        self._looping: dict[str, bool] = {}
        self._last_seen: dict[str, float] = {}
        options = {"queue_frames": 10, "max_queue_age": 0.2}
        self._pool = self._member_pool(VoiceRole.CALLER, CALLEE_IMPLEMENTATION, **options)
        #: The echo callee's other side: it answers a caller-role client in the
        #: server role, on a connection of its own.
        self._loop_pool = self._member_pool(VoiceRole.SERVER, CALLEE_IMPLEMENTATION, **options)

    # -- thread-safe views ---------------------------------------------------------------

    def media(self, call_sid: str) -> MediaCounters | None:
        with self._lock:
            return self._media.get(call_sid)

    def peer_joined(self, call_sid: str, implementation: str | None) -> None:
        """The relay authenticated a session of ``call_sid`` (called in the relay loop)."""
        if implementation != CALLEE_IMPLEMENTATION:
            self._last_seen[call_sid] = time.monotonic()

    # -- the loop ----------------------------------------------------------------------

    def _scan(self, tg: anyio.abc.TaskGroup) -> None:
        now = self.store.clock()
        wall = time.monotonic()
        with self.store.lock:
            calls = [self.store.calls[sid] for sid in self._last_seen if sid in self.store.calls]
        for call in calls:
            if self._others_present(call.sid):
                self._last_seen[call.sid] = wall
            live = call.status(now) == "in_progress" and call.callee in (*SPEAKING, Callee.ECHO)
            idle = wall - self._last_seen.get(call.sid, 0.0) > IDLE_LEAVE_SECONDS
            running = self._running.get(call.sid)
            loop = call.callee is Callee.ECHO and self._callers_present(call.sid)
            if live and not idle and running is None:
                scope = anyio.CancelScope()
                self._running[call.sid] = scope
                self._looping[call.sid] = loop
                tg.start_soon(self._callee, call, scope, loop)
            elif running is not None and (
                not live or idle or (call.callee is Callee.ECHO and self._looping[call.sid] != loop)
            ):
                running.cancel()  # restarted in the right direction at the next scan
            if call.ending(now) is not None and running is None:
                self._last_seen.pop(call.sid, None)

    async def _callee(self, call: CallRecord, scope: anyio.CancelScope, loop: bool) -> None:
        with self._lock:
            media = self._media.setdefault(call.sid, MediaCounters(call.sid))
        try:
            with scope:
                if loop:
                    await self._loop_back(call, media)
                    return
                async with self._pool.join(call) as member:
                    downlink = await member.subscribe(VoiceTrack.DOWNLINK)
                    markers = call.callee is not Callee.ECHO and self._markers()
                    catalog = None if markers else await member.catalog()
                    fmt = None
                    if catalog is not None:
                        fmt = await Member.declared(catalog, VoiceTrack.DOWNLINK)
                        if fmt is None and call.callee is not Callee.ECHO:
                            fmt = DEFAULT_FORMAT
                    uplink = await member.publish(VoiceTrack.UPLINK, fmt)
                    with media.lock:
                        media.joined = True
                        media.format = fmt
                    # Frames are handled as they arrive (no scheduling round each);
                    # iterating the subscription then only waits for its end.
                    if call.callee is Callee.ECHO:

                        def echo(frame: AudioFrame) -> None:
                            self._count_downlink(media, frame)
                            uplink.write_nowait(frame.data, frame.timestamp_us)
                            with media.lock:
                                media.uplink.add(frame.data, frame.timestamp_us)

                        downlink.on_frame = echo
                        async for _ in downlink:
                            pass
                    else:
                        downlink.on_frame = lambda frame: self._count_downlink(media, frame)
                        async with anyio.create_task_group() as tg:
                            if catalog is None:
                                tg.start_soon(self._mark, uplink.write_nowait, media)
                            else:
                                tg.start_soon(self._speak, uplink, catalog, media)
                            async for _ in downlink:
                                pass
                            tg.cancel_scope.cancel()
        except Exception:
            logger.warning("simulated callee of %s failed", call.sid, exc_info=True)
        finally:
            with media.lock:
                media.joined = False
            self._running.pop(call.sid, None)
            self._looping.pop(call.sid, None)

    async def _loop_back(self, call: CallRecord, media: MediaCounters) -> None:
        """The echo callee facing a caller-role client: each uplink frame goes back
        on downlink (counted as received on uplink and sent on downlink)."""
        async with self._loop_pool.join(call) as member:
            uplink = await member.subscribe(VoiceTrack.UPLINK)
            # Declare the caller's format, so that what goes back is not transcoded.
            fmt = await Member.declared(await member.catalog(), VoiceTrack.UPLINK)
            downlink = await member.publish(VoiceTrack.DOWNLINK, fmt)
            with media.lock:
                media.joined = True
                media.format = fmt

            def echo(frame: AudioFrame) -> None:
                downlink.write_nowait(frame.data, frame.timestamp_us)
                with media.lock:
                    media.uplink.add(frame.data, frame.timestamp_us)
                    media.downlink.add(frame.data, frame.timestamp_us)

            uplink.on_frame = echo
            async for _ in uplink:
                pass

    @staticmethod
    def _count_downlink(media: MediaCounters, frame: AudioFrame) -> None:
        with media.lock:
            media.downlink.add(frame.data, frame.timestamp_us)
            media.received.append(frame)

    @staticmethod
    async def _mark(write: Callable[[bytes, int], None], media: MediaCounters) -> None:
        """``callee_markers`` mode: a numbered marker frame every 20 ms."""
        with media.lock:
            seq = media.uplink.frames
        period = FRAME_MS / 1000
        deadline = anyio.current_time()
        while True:
            frame = speech_frame(seq)
            timestamp = seq * FRAME_MS * 1000
            write(frame, timestamp)
            with media.lock:
                media.uplink.add(frame, timestamp)
            seq += 1
            deadline += period
            now = anyio.current_time()
            if deadline < now - 10 * period:  # stalled (a debugger, an overloaded host)
                deadline = now
            await anyio.sleep_until(deadline)

    @staticmethod
    async def _speak(
        uplink: AudioPublication, catalog: CatalogSubscription, media: MediaCounters
    ) -> None:
        """Say the phrase over and over in the declared format, in real time; switch
        when the server side declares another format."""
        fmt = uplink.format or DEFAULT_FORMAT
        frames = phrase_frames(fmt)
        seq = 0
        timestamp = 0
        deadline = anyio.current_time()
        while True:
            latest = catalog.latest
            wanted = latest.format_of(VoiceTrack.DOWNLINK) if latest is not None else None
            if wanted is not None and wanted != fmt:
                fmt = wanted
                frames = phrase_frames(fmt)
                uplink.set_format(fmt)
                with media.lock:
                    media.format = fmt
            frame = frames[seq % len(frames)]
            uplink.write_nowait(frame, timestamp)
            with media.lock:
                media.uplink.add(frame, timestamp)
            seq += 1
            timestamp += fmt.frame_ms * 1000
            period = fmt.frame_ms / 1000
            deadline += period
            now = anyio.current_time()
            if deadline < now - 10 * period:  # stalled (a debugger, an overloaded host)
                deadline = now
            await anyio.sleep_until(deadline)
