"""Simulated PSTN callees: the far end of each dev-engine call, on the real relay.

While a call is in progress and someone has joined its media on the relay, the
engine joins too, as the ``caller`` role, through an ordinary
:class:`~clutchcall.bridge.MoqtClient` over loopback QUIC (one shared by all callees,
each call's tracks under that call's token):

- it subscribes to ``downlink`` and counts (and keeps, bounded) every frame;
- an answering callee speaks: one :data:`FRAME_MS` frame of a deterministic
  payload (:func:`speech_frame`) on ``uplink`` every 20 ms in real time, with
  timestamps ``seq * 20_000`` microseconds;
- the echo callee (+15005550004) sends each downlink frame straight back on
  ``uplink``, payload and timestamp unchanged. When a client holds the call in
  the ``caller`` role (a browser softphone, ``attach_caller``), that client *is*
  the far end's voice, so the echo turns around: the callee joins as the
  ``server`` role instead and sends each ``uplink`` frame back on ``downlink``
  (payload and timestamp unchanged), so the caller hears itself. Only one
  direction runs at a time (both would feed each other in a loop); the callee
  switches when callers come or go. Its ``downlink`` yields to any other
  publisher of that track (an agent, a server bridge), as its ``uplink`` does.

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

from ..moqnet import AudioFrame
from ..moqt import VoiceRole, VoiceTrack
from ._members import MemberPool, Scanner
from ._state import Callee, CallRecord, Store

logger = logging.getLogger(__name__)

FRAME_MS = 20
IDLE_LEAVE_SECONDS = 5.0
KEEP_FRAMES = 3000
CALLEE_IMPLEMENTATION = "clutchcall-dev-callee"
SPEAKING = (Callee.ANSWER, Callee.HANGS_UP)


def speech_frame(seq: int, size: int = 80) -> bytes:
    """The ``seq``-th uplink frame of a speaking callee: a tag, ``seq``, then filler."""
    head = struct.pack(">4sI", b"CCsp", seq)
    return head + bytes((seq * 7 + i) % 251 for i in range(size - len(head)))


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

    def to_json(self) -> dict[str, Any]:
        with self.lock:
            return {
                "callSid": self.call_sid,
                "joined": self.joined,
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
        *,
        relay_url: Callable[[], str],
        cert_sha256: str,
        others_present: Callable[[str], bool],
        callers_present: Callable[[str], bool] = lambda sid: False,
    ) -> None:
        self.store = store
        self._others_present = others_present
        self._callers_present = callers_present
        self._lock = threading.Lock()
        self._media: dict[str, MediaCounters] = {}
        self._running: dict[str, anyio.CancelScope] = {}
        #: Whether each running echo callee loops uplink back to a caller.
        self._looping: dict[str, bool] = {}
        self._last_seen: dict[str, float] = {}
        self._pool = MemberPool(
            store,
            VoiceRole.CALLER,
            relay_url=relay_url,
            cert_sha256=cert_sha256,
            implementation=CALLEE_IMPLEMENTATION,
            queue_frames=10,
            max_queue_age=0.2,
        )
        #: The echo callee's other side: it answers a caller-role client in the
        #: server role, on a connection of its own.
        self._loop_pool = MemberPool(
            store,
            VoiceRole.SERVER,
            relay_url=relay_url,
            cert_sha256=cert_sha256,
            implementation=CALLEE_IMPLEMENTATION,
            queue_frames=10,
            max_queue_age=0.2,
        )

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
                    uplink = await member.publish(VoiceTrack.UPLINK)
                    with media.lock:
                        media.joined = True
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
                            tg.start_soon(self._speak, uplink.write_nowait, media)
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
            downlink = await member.publish(VoiceTrack.DOWNLINK)
            with media.lock:
                media.joined = True

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
    async def _speak(write: Callable[[bytes, int], None], media: MediaCounters) -> None:
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
