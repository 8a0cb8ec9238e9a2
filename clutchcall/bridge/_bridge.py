"""The audio bridge on :class:`~clutchcall.AsyncVoice`: ``voice.audio_bridge``.

A bridge is one :class:`~clutchcall.moqnet.MoqtClient` session on the relay for
one call and one side: ``attach`` is the server side (subscribe ``uplink``,
publish ``downlink``), ``attach_caller`` the caller side (the reverse). Received
frames go, one at a time and in order, to the current callback and to every
open ``uplink()`` / ``downlink()`` iterator; swapping the callback takes effect
from the next frame, so none is lost or delivered twice. While there is no
consumer at all, frames wait in a bounded buffer (the oldest are dropped and
counted).

The bridge's work runs in a background task of the event loop that attached it;
``close()`` (or leaving ``async with``) stops it and ends its tracks. A bridge
that is garbage-collected unclosed warns with ``ResourceWarning`` and is shut
down the same way.

When the call ends (either side hangs up), the relay ends its tracks: the bridge
is ``ended`` and ``closed`` from then on, its iterators stop once they have
given what they hold, it releases its session, and publishing raises
:class:`~clutchcall.CallEndedError`. A bridge whose relay session cannot be
restored ends the same way, and publishing raises
:class:`~clutchcall.BridgeClosedError` naming the reason.

A callback that raises is logged with its traceback the first time; later
failures of the same callback are counted and logged as one line at most every
``CALLBACK_ERROR_LOG_INTERVAL`` seconds, and once more when the bridge ends.

Connections: by default the bridges of one client that go to the same relay in
the same role share one QUIC connection and MoQT session (each track carries
its own call's bridge token), so a process with many calls pays for one
connection's packets, acknowledgements and timers instead of one per call. The
session's setup shows the token of one of its bridges; if that call ends, the
relay ends only that call's tracks. A second bridge for a call and role the
shared session already carries gets a connection of its own.
``share_bridge_connections=False`` on the client gives every bridge its own.
"""

from __future__ import annotations

import inspect
import logging
import time
import warnings
import weakref
from collections import deque
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from types import TracebackType
from typing import Any, ClassVar, Protocol

import anyio
import anyio.abc
import anyio.lowlevel
from clutchcall_api.models import AudioCodec

from ..errors import BridgeClosedError, CallEndedError, ConflictError, InvalidArgumentError
from ..moqnet import (
    AudioFrame,
    AudioPublication,
    AudioStats,
    AudioSubscription,
    MoqtClient,
    SharedClient,
)
from ..moqt import AudioFormat, CatalogError, VoiceRole, VoiceTrack
from ..transport import Verify
from ..transport.backend import (
    Signal,
    ThreadsafeCall,
    loop_id,
    next_queued,
    spawn,
    threadsafe_caller,
)
from ._format import resolve_format

logger = logging.getLogger(__name__)

#: ``callback(frame, timestamp_us)``; may return an awaitable (it is awaited).
FrameCallback = Callable[[bytes, int], Any]

DEFAULT_RELAY_PORT = 443
TOKEN_REFRESH_MARGIN = 30.0
ITERATOR_BUFFER_FRAMES = 500
#: After its first failure (logged with the traceback), a callback's failures are
#: logged as a count at most this often (seconds).
CALLBACK_ERROR_LOG_INTERVAL = 5.0


class BridgeGrant(Protocol):
    """A bridge token, as the bridges use it (:class:`clutchcall.BridgeToken` is one)."""

    @property
    def token(self) -> str: ...

    @property
    def expires_at(self) -> datetime: ...

    @property
    def relay_url(self) -> str | None: ...


#: ``mint(call_sid, role)``: a new bridge token for that call and role (the client's
#: ``calls.create_bridge_token``).
MintToken = Callable[[str, VoiceRole], Awaitable[BridgeGrant]]


@dataclass(frozen=True)
class BridgeSettings:
    """What the bridges of one client take from its settings."""

    #: The relay to dial (None: the URL a bridge token names, else ``relay_host``).
    relay_url: str | None
    relay_host: str
    verify: Verify = True
    #: Bridges to one relay share a QUIC connection (per role and event loop).
    share_connections: bool = True


def _check_callback(callback: object, name: str) -> None:
    if callback is not None and not callable(callback):
        raise InvalidArgumentError(f"{name} must be callable or None, got {callback!r}")


def check_attach(
    call_sid: object,
    role: VoiceRole,
    codec: AudioCodec | str,
    sample_rate: int | None,
    channels: int,
    frame_ms: int,
    callback: object,
) -> tuple[str, int, int, int]:
    """Refuse bad ``attach`` arguments before any request or thread is started;
    returns the format with its defaults filled in (see :mod:`._format`)."""
    if not isinstance(call_sid, str) or not call_sid.strip():
        raise InvalidArgumentError(f"call_sid must be a non-empty string, got {call_sid!r}")
    audio_format = resolve_format(codec, sample_rate, channels, frame_ms)
    _check_callback(callback, f"on_{role.subscribes}")
    return audio_format


class CallbackFailures:
    """The failures of one callback, logged without flooding: the first with its
    traceback, then the count of the others at most every
    ``CALLBACK_ERROR_LOG_INTERVAL`` seconds (and what is left by :meth:`flush`).

    The records carry ``call_sid`` and, for the counts, ``callback_failures``.
    """

    def __init__(self, what: str, call_sid: str) -> None:
        self._what = what
        self._call_sid = call_sid
        #: When the failures not logged yet started to be counted (None: no failure yet).
        self._since: float | None = None
        self._unlogged = 0
        self._last: BaseException | None = None

    def failed(self, exc: BaseException) -> None:
        now = time.monotonic()
        if self._since is None:
            self._since = now
            logger.error(
                "the %s raised; the bridge carries on (further failures are counted and "
                "logged at most every %g s)",
                self._what,
                CALLBACK_ERROR_LOG_INTERVAL,
                exc_info=exc,
                extra={"call_sid": self._call_sid},
            )
            return
        self._unlogged += 1
        self._last = exc
        if now - self._since >= CALLBACK_ERROR_LOG_INTERVAL:
            self.flush(now)

    def flush(self, now: float | None = None) -> None:
        """Log the failures counted since the last line, if any."""
        if not self._unlogged or self._since is None:
            return
        now = time.monotonic() if now is None else now
        logger.error(
            "the %s raised %d more time(s) in the last %.1f s (last: %r)",
            self._what,
            self._unlogged,
            now - self._since,
            self._last,
            extra={"call_sid": self._call_sid, "callback_failures": self._unlogged},
        )
        self._since = now
        self._unlogged = 0
        self._last = None


class FrameIterator:
    """Frames of one track, in order (``async for frame in bridge.uplink()``)."""

    def __init__(self, core: BridgeCore) -> None:
        self._core = core
        self._frames: deque[AudioFrame] = deque()
        self._arrived = Signal()

    def _push(self, frame: AudioFrame) -> None:
        if len(self._frames) >= ITERATOR_BUFFER_FRAMES:
            self._frames.popleft()
            self._core.dropped += 1
        self._frames.append(frame)
        self._arrived.notify()

    def _end(self) -> None:
        self._arrived.notify()

    def __aiter__(self) -> FrameIterator:
        return self

    async def __anext__(self) -> AudioFrame:
        return await next_queued(self._frames, self._finished, self._arrived)

    def _finished(self) -> bool:
        return self._core.finished

    async def aclose(self) -> None:
        """Stop receiving into this iterator."""
        await anyio.lowlevel.checkpoint()
        self._core._iterators.discard(self)
        self._frames.clear()


class BridgeCore:
    """Everything a bridge does; the public handles are thin wrappers around it."""

    def __init__(
        self,
        owner: BridgeRegistry,
        call_sid: str,
        role: VoiceRole,
        *,
        codec: str,
        sample_rate: int,
        channels: int,
        frame_ms: int,
        callback: FrameCallback | None,
        mint: MintToken,
        settings: BridgeSettings,
    ) -> None:
        self.owner = owner
        self.call_sid = call_sid
        self.role = role
        self.receive_track = role.subscribes
        self.send_track = role.publishes
        self.codec = codec
        self.sample_rate = sample_rate
        self.channels = channels
        self.frame_ms = frame_ms
        self.callback = callback
        self._mint = mint
        self._settings = settings
        self._token: BridgeGrant | None = None
        self.client: MoqtClient | None = None
        self._pool: SharedClient[BridgeCore] | None = None
        self._reconnects_at_join = 0
        self._publication: AudioPublication | None = None
        self._subscription: AudioSubscription | None = None
        self._iterators: weakref.WeakSet[FrameIterator] = weakref.WeakSet()
        #: Frames waiting for the dispatcher, and the awaitable a callback returned.
        self._pending: deque[AudioFrame] = deque()
        self._awaiting: Awaitable[Any] | None = None
        #: Wakes the dispatcher: a frame queued, a consumer set, the track ended.
        self._work = Signal()
        self._scope = anyio.CancelScope()
        self._done = anyio.Event()
        self._call_soon: ThreadsafeCall | None = None
        self._failures = self._failures_of(callback)
        #: Closed by its owner (or with the client); set before the bridge has stopped.
        self.close_requested = False
        #: The bridge can no longer publish: closed by its owner, or its tracks ended
        #: on their own (set at once, while frames received may still be delivered).
        self.closed = False
        #: No more frames will flow (set once the bridge's task has stopped).
        self.finished = False
        #: The bridge ended on its own, and why: the call ended, or what stopped its
        #: client (publishing raises it).
        self.ended_by_itself = False
        self.call_ended = False
        self.lost: BaseException | None = None
        self.dropped = 0

    # -- start / stop ------------------------------------------------------------------

    async def _credentials(self, fresh: bool) -> tuple[str, str | None]:
        token = self._token
        if (
            fresh
            or token is None
            or token.expires_at.timestamp() - time.time() < TOKEN_REFRESH_MARGIN
        ):
            token = self._token = await self._mint(self.call_sid, self.role)
        settings = self._settings
        url = (
            settings.relay_url
            or token.relay_url
            or f"moqt://{settings.relay_host}:{DEFAULT_RELAY_PORT}"
        )
        return url, token.token

    async def start(self) -> None:
        self._call_soon = threadsafe_caller()
        task_group = self.owner.task_group()
        track_token: str | None = None
        pool: SharedClient[BridgeCore] | None = None
        if self._settings.share_connections:
            url, token = await self._credentials(False)
            pool = self.owner._pool_for(self, url)
        if pool is not None:
            client = await pool.join(self)
            track_token = token
            self._pool = pool
            self._reconnects_at_join = client.stats.reconnects
        else:
            client = MoqtClient(credentials=self._credentials, verify=self._settings.verify)
        self.client = client
        try:
            if pool is None:
                await client.connect(task_group=task_group)
            self._subscription = await client.subscribe_audio(
                self.call_sid, self.receive_track, token=track_token
            )
            self._subscription.on_frame = self._on_frame
            self._subscription.on_end = self._on_end
            self._publication = await client.publish_audio(
                self.call_sid, self.send_track, token=track_token, format=self.declared_format()
            )
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._release_client()
            raise
        self.owner._cores.add(self)
        name = f"clutchcall-bridge-{self.call_sid}"
        if task_group is not None:
            task_group.start_soon(self._run, name=name)
        else:
            spawn(self._run, name)

    def declared_format(self) -> AudioFormat | None:
        """The format this bridge declares in its track's catalog (None: one the
        wire cannot name)."""
        try:
            return AudioFormat(self.codec, self.sample_rate, self.channels, self.frame_ms)
        except CatalogError:
            return None

    async def _release_client(self) -> None:
        """Close what this bridge holds: its tracks on a shared session, else the client."""
        client = self.client
        if client is None:
            return
        pool = self._pool
        if pool is None:
            await client.aclose()
            return
        for track in (self._subscription, self._publication):
            if track is not None:
                await track.aclose()
        await pool.leave(self)

    async def refresh_track_token(self, fresh: bool) -> str:
        """A valid token for this bridge's tracks (minted again when close to expiry
        or when ``fresh``), also handed to the tracks for their next start."""
        _, token = await self._credentials(fresh)
        assert token is not None
        for track in (self._subscription, self._publication):
            if track is not None:
                track.token = token
        return token

    async def _run(self) -> None:
        on_its_own = False
        failed: BaseException | None = None
        try:
            with self._scope:
                await self._dispatch()
                on_its_own = True  # the tracks ended (not cancelled by close())
        except Exception as exc:
            logger.exception("audio bridge of %s failed", self.call_sid)
            on_its_own = True
            failed = exc
        finally:
            if on_its_own and not self.close_requested:
                self._note_end(failed)
            elif not self.ended_by_itself:  # closed, or cancelled with its task group
                self.close_requested = True
            self.finished = self.closed = True
            for iterator in list(self._iterators):
                iterator._end()
            with anyio.CancelScope(shield=True):
                await self._release_client()
            self._failures.flush()
            self.owner._cores.discard(self)
            self._done.set()

    def _end_cause(self) -> tuple[bool, BaseException | None]:
        """Why the tracks ended on their own: (the call ended, what stopped the client)."""
        subscription = self._subscription
        client = self.client
        failure = client.failure if client is not None else None
        call_ended = (subscription is not None and subscription.track_ended) or (
            isinstance(failure, ConflictError) and failure.code == "call_ended"
        )
        return call_ended, failure

    def _on_end(self) -> None:
        """The subscription may have ended (the client calls this in its loop)."""
        subscription = self._subscription
        if subscription is not None and subscription.ended and not self.close_requested:
            self._note_end(None)
        self._work.notify()

    def _note_end(self, failed: BaseException | None) -> None:
        """The bridge ended on its own: it is closed from now on; keep why (publishing
        raises it) and log it once (the client has logged at WARNING what it could not
        get past)."""
        self.closed = True
        if self.ended_by_itself:
            return
        self.ended_by_itself = True
        self.call_ended, failure = self._end_cause()
        if self.call_ended:
            logger.info(
                "the call %s ended; its audio bridge is closed",
                self.call_sid,
                extra={"call_sid": self.call_sid},
            )
            return
        self.lost = failed or failure or BridgeClosedError("its relay session ended")
        logger.info(
            "the audio bridge of %s ended: %s",
            self.call_sid,
            self.lost,
            extra={"call_sid": self.call_sid},
        )

    def closed_error(self) -> BridgeClosedError:
        """What publishing raises once the bridge is closed or has ended."""
        sid = self.call_sid
        call_ended, lost = self.call_ended, self.lost
        if not self.ended_by_itself and not self.close_requested:  # ending right now
            call_ended, lost = self._end_cause()
        if call_ended:
            return CallEndedError(f"the call {sid} ended; its audio bridge is closed", call_sid=sid)
        if lost is not None:
            return BridgeClosedError(f"the audio bridge of {sid} ended: {lost}")
        return BridgeClosedError(f"the audio bridge of {sid} is closed")

    # -- receiving ---------------------------------------------------------------------
    #
    # Frames reach ``_on_frame`` from the client as they arrive, in order. When a
    # consumer is there and nothing is waiting, a frame goes to the callback and
    # the iterators at once (no scheduling round per frame). Otherwise it waits in
    # ``_pending`` for the dispatcher task: while there is no consumer, and while a
    # callback's awaitable is being awaited, so that frames stay in order.

    def _on_frame(self, frame: AudioFrame) -> None:
        if self._pending or self._awaiting is not None or not self._has_consumer():
            if len(self._pending) >= ITERATOR_BUFFER_FRAMES:
                self._pending.popleft()
                self.dropped += 1
            self._pending.append(frame)
            self._work.notify()
            return
        self._deliver(frame)

    def _has_consumer(self) -> bool:
        return self.callback is not None or bool(self._iterators)

    def _deliver(self, frame: AudioFrame) -> None:
        callback = self.callback
        if callback is not None:
            try:
                result = callback(frame.data, frame.timestamp_us)
            except Exception as exc:
                self._failures.failed(exc)
            else:
                if inspect.isawaitable(result):
                    self._awaiting = result
                    self._work.notify()
        for iterator in list(self._iterators):
            iterator._push(frame)

    async def _dispatch(self) -> None:
        subscription = self._subscription
        assert subscription is not None
        pending = self._pending
        while True:
            awaiting = self._awaiting
            if awaiting is not None:
                try:
                    await awaiting
                except Exception as exc:
                    self._failures.failed(exc)
                self._awaiting = None
            elif pending and self._has_consumer():
                self._deliver(pending.popleft())
            elif subscription.ended and not pending:
                return
            else:
                await self._work.wait()

    async def aclose(self) -> None:
        if not self.finished:
            self.close_requested = True
        self.closed = True
        if self.client is None:
            return
        self._scope.cancel()
        with anyio.CancelScope(shield=True):
            await self._done.wait()

    def close_soon(self) -> None:
        """Ask for a shutdown from any thread (the garbage-collection path)."""
        if not self.finished:
            self.close_requested = True
        self.closed = True
        call_soon = self._call_soon
        if call_soon is not None:
            call_soon(self._scope.cancel)

    # -- operations --------------------------------------------------------------------

    def publish(self, track: VoiceTrack, frame: bytes, timestamp_us: int | None) -> None:
        if track != self.send_track:
            raise InvalidArgumentError(
                f"a {self.role}-side bridge publishes {self.send_track}, not {track}"
            )
        subscription = self._subscription
        if self.closed or self.finished or (subscription is not None and subscription.ended):
            raise self.closed_error()
        publication = self._publication
        assert publication is not None
        publication.write_nowait(frame, timestamp_us)

    def set_callback(self, track: VoiceTrack, callback: FrameCallback | None) -> None:
        self._check_receive(track)
        _check_callback(callback, f"on_{track}")
        if callback is not self.callback:
            self._failures.flush()
            self._failures = self._failures_of(callback)
        self.callback = callback
        self._work.notify()

    def _failures_of(self, callback: FrameCallback | None) -> CallbackFailures:
        name = getattr(callback, "__qualname__", None) or type(callback).__name__
        return CallbackFailures(
            f"on_{self.receive_track} callback {name} of {self.call_sid}", self.call_sid
        )

    def iterate(self, track: VoiceTrack) -> FrameIterator:
        self._check_receive(track)
        iterator = FrameIterator(self)
        self._iterators.add(iterator)
        self._work.notify()
        return iterator

    def _check_receive(self, track: VoiceTrack) -> None:
        if track != self.receive_track:
            raise InvalidArgumentError(
                f"a {self.role}-side bridge receives {self.receive_track}, not {track}"
            )

    @property
    def connected(self) -> bool:
        return self.client is not None and self.client.connected

    @property
    def stats(self) -> AudioStats:
        received = self._subscription.stats if self._subscription else AudioStats()
        sent = self._publication.stats if self._publication else AudioStats()
        client = self.client
        reconnects = client.stats.reconnects - self._reconnects_at_join if client else 0
        return AudioStats(
            frames_in=received.frames_in,
            bytes_in=received.bytes_in,
            frames_out=sent.frames_out,
            bytes_out=sent.bytes_out,
            dropped=received.dropped + sent.dropped + self.dropped,
            reconnects=reconnects,
        )


class BridgeRegistry:
    """The bridges of one client (``voice.audio_bridge``), closed with the client.

    The bridges' tasks (and those of the clients they use) run in the task group
    the registry was given with :meth:`adopt` when they start in that group's event
    loop, else as background tasks of their event loop.
    """

    def __init__(self, settings: BridgeSettings, mint: MintToken) -> None:
        self._settings = settings
        self._mint = mint
        self._cores: set[BridgeCore] = set()
        self._pools: dict[tuple[str, str, int], SharedClient[BridgeCore]] = {}
        self._task_group: anyio.abc.TaskGroup | None = None
        self._task_group_loop: int | None = None

    def adopt(self, task_group: anyio.abc.TaskGroup | None) -> None:
        """Run the work of bridges opened from now on in ``task_group`` (call this
        in its event loop; None: in background tasks again)."""
        self._task_group = task_group
        self._task_group_loop = loop_id() if task_group is not None else None

    def task_group(self) -> anyio.abc.TaskGroup | None:
        """The task group for a bridge opening now (None: use background tasks)."""
        if self._task_group is None or self._task_group_loop != loop_id():
            return None
        return self._task_group

    def _pool_for(self, core: BridgeCore, url: str) -> SharedClient[BridgeCore] | None:
        """The shared client for ``core``'s relay and role; None if it already
        carries this call in this role (that bridge gets a client of its own)."""
        key = (url, core.role, loop_id())  # a shared client serves one loop only
        pool = self._pools.get(key)
        if pool is None:
            pool = SharedClient(partial(self._pool_credentials, url), verify=self._settings.verify)
            self._pools[key] = pool
        pool.task_group = self.task_group()
        if any(c.call_sid == core.call_sid for c in pool.members):
            return None
        return pool

    @staticmethod
    async def _pool_credentials(
        url: str, cores: list[BridgeCore], fresh: bool
    ) -> tuple[str, str | None]:
        """Setup credentials for a shared client: the first bridge whose token can be
        had lends it; every bridge's track token is refreshed on the way."""
        chosen: str | None = None
        failure: BaseException | None = None
        for core in cores:
            try:
                token = await core.refresh_track_token(fresh and chosen is None)
            except Exception as exc:  # e.g. the call ended: that bridge will end too
                failure = exc
                continue
            if chosen is None:
                chosen = token
        if chosen is None:
            if failure is not None:
                raise failure
            raise BridgeClosedError("no audio bridge is left on this connection")
        return url, chosen

    async def open(
        self,
        call_sid: str,
        role: VoiceRole,
        codec: AudioCodec | str,
        sample_rate: int | None,
        channels: int,
        frame_ms: int,
        callback: FrameCallback | None,
    ) -> BridgeCore:
        codec_name, sample_rate, channels, frame_ms = check_attach(
            call_sid, role, codec, sample_rate, channels, frame_ms, callback
        )
        core = BridgeCore(
            self,
            call_sid,
            role,
            codec=codec_name,
            sample_rate=sample_rate,
            channels=channels,
            frame_ms=frame_ms,
            callback=callback,
            mint=self._mint,
            settings=self._settings,
        )
        await core.start()
        return core

    async def close_all(self) -> None:
        cores = list(self._cores)
        if not cores:
            await anyio.lowlevel.checkpoint()
            return
        async with anyio.create_task_group() as tg:
            for core in cores:
                tg.start_soon(core.aclose)


class BridgeHandle:
    """What the two bridge handles share: they read the same core.

    :class:`AsyncAudioBridge` and the blocking :class:`~clutchcall.AudioBridge`
    differ only in how their methods run (awaited, or on the bridge thread).
    """

    #: How a user closes this kind of bridge (named in the ResourceWarning).
    _close_call: ClassVar[str]

    def __init__(self, core: BridgeCore) -> None:
        self._core = core

    @property
    def call_sid(self) -> str:
        """The call this bridge carries."""
        return self._core.call_sid

    @property
    def role(self) -> VoiceRole:
        """``"server"`` (attach) or ``"caller"`` (attach_caller)."""
        return self._core.role

    @property
    def codec(self) -> str:
        """The codec asked for at attach (``"opus"``, ``"pcm16"``...)."""
        return self._core.codec

    @property
    def sample_rate(self) -> int:
        return self._core.sample_rate

    @property
    def channels(self) -> int:
        return self._core.channels

    @property
    def frame_ms(self) -> int:
        return self._core.frame_ms

    @property
    def stats(self) -> AudioStats:
        """Frames and bytes in and out, frames dropped, reconnects. A published frame
        is out once the relay acknowledged it; every frame published ends up out or
        dropped (frames the relay had not acknowledged when a session ended are sent
        again on the next one, or dropped when stale). Safe to read from any thread."""
        return self._core.stats

    @property
    def closed(self) -> bool:
        """The bridge cannot publish any more: it was closed (``close()``, leaving the
        ``with`` block, closing the client), or it ended on its own (see :attr:`ended`).
        Publishing then raises :class:`~clutchcall.BridgeClosedError`
        (:class:`~clutchcall.CallEndedError` if the call ended). Closing a closed
        bridge does nothing (it still waits until the bridge's session is released)."""
        return self._core.closed

    @property
    def connected(self) -> bool:
        """A relay session is up right now (False while reconnecting)."""
        return self._core.connected

    @property
    def ended(self) -> bool:
        """No more frames will flow: the call ended (either side hung up), the relay
        session could not be restored, or the bridge was closed. The iterators end
        after the frames they hold. An ended bridge is :attr:`closed` too; it releases
        its relay session on its own."""
        return self._core.finished

    def __del__(self) -> None:
        core = getattr(self, "_core", None)
        if core is None or core.finished:
            return
        unclosed = not core.closed  # not closed, nor ended on its own
        core.close_soon()
        if unclosed:
            warnings.warn(
                f"audio bridge of {core.call_sid} was garbage-collected without "
                f"{self._close_call}; closing it now",
                ResourceWarning,
                source=self,
                stacklevel=1,
            )

    def __repr__(self) -> str:
        core = self._core
        if core.call_ended:
            state = "closed: the call ended"
        elif core.lost is not None:
            state = "closed: lost its relay session"
        else:
            state = "closed" if core.closed else "open"
        return f"<{type(self).__name__} {self.call_sid} role={self.role} {state}>"


class AsyncAudioBridge(BridgeHandle):
    """One call's audio bridge (from ``await voice.audio_bridge.attach(...)``).

    Server side (``attach``): :meth:`publish_downlink`, :meth:`on_uplink`,
    :meth:`uplink`. Caller side (``attach_caller``): :meth:`publish_uplink`,
    :meth:`on_downlink`, :meth:`downlink`. Hold it for the whole call and close
    it (``await bridge.close()`` or ``async with``; ``aclose()`` is the same, for
    ``contextlib.aclosing`` and anyio). Callbacks run in the event loop and may
    return an awaitable (awaited before the next frame). Publishing is a cancel
    point but not a scheduling point, so that frame-paced loops stay cheap.
    """

    _close_call = "close()"

    async def publish_downlink(self, frame: bytes, timestamp_us: int | None = None) -> None:
        """Send one encoded frame to the caller (``timestamp_us`` None: monotonic µs).

        Never waits for the network: the frame is queued for sending (while the
        relay session is being restored, in a small queue whose stale frames are
        dropped and counted in :attr:`stats`). Raises
        :class:`~clutchcall.CallEndedError` once the call has ended and
        :class:`~clutchcall.BridgeClosedError` once the bridge is closed or lost
        its relay session for good.
        """
        await anyio.lowlevel.checkpoint_if_cancelled()
        self._core.publish(VoiceTrack.DOWNLINK, frame, timestamp_us)

    async def publish_uplink(self, frame: bytes, timestamp_us: int | None = None) -> None:
        """Caller side: send one encoded mic frame to the cloud (as :meth:`publish_downlink`)."""
        await anyio.lowlevel.checkpoint_if_cancelled()
        self._core.publish(VoiceTrack.UPLINK, frame, timestamp_us)

    def on_uplink(self, callback: FrameCallback | None) -> None:
        """Swap the consumer of caller audio: ``callback(frame, timestamp_us)`` gets
        every frame from the next one on (None: frames wait in a bounded buffer)."""
        self._core.set_callback(VoiceTrack.UPLINK, callback)

    def on_downlink(self, callback: FrameCallback | None) -> None:
        """Caller side: swap the consumer of cloud audio (as :meth:`on_uplink`)."""
        self._core.set_callback(VoiceTrack.DOWNLINK, callback)

    def uplink(self) -> FrameIterator:
        """The caller's frames from now on, in order (``for frame in bridge.uplink()``;
        ``async for`` on the async bridge). The iteration ends once the bridge has
        ended (the call ended, or it was closed) and its frames are drained."""
        return self._core.iterate(VoiceTrack.UPLINK)

    def downlink(self) -> FrameIterator:
        """Caller side: the cloud's frames from now on (as :meth:`uplink`)."""
        return self._core.iterate(VoiceTrack.DOWNLINK)

    async def close(self) -> None:
        """End both tracks (PUBLISH_DONE, UNSUBSCRIBE) and the MoQT session; returns
        once they are gone."""
        await self._core.aclose()

    async def aclose(self) -> None:
        """The same as :meth:`close`, under the name ``contextlib.aclosing`` and anyio
        look for."""
        await self._core.aclose()

    async def __aenter__(self) -> AsyncAudioBridge:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


class AsyncAudioBridges:
    """``voice.audio_bridge`` on :class:`~clutchcall.AsyncVoice`.

    ``mint(call_sid, role)`` returns a bridge token for that call and role (the
    client passes its ``calls.create_bridge_token``).

    Entered as a context manager (``async with AsyncVoice(...)`` enters it), it owns
    a task group: every bridge opened meanwhile runs in it, and leaving closes the
    bridges, then cancels and joins whatever is left, so no task outlives the
    ``async with``. Without it, each bridge runs in a background task of its event
    loop until it is closed (by its ``close()`` or the client's).
    """

    def __init__(self, settings: BridgeSettings, mint: MintToken) -> None:
        self._registry = BridgeRegistry(settings, mint)
        self._exit_stack: AsyncExitStack | None = None
        self._task_group: anyio.abc.TaskGroup | None = None
        self._depth = 0

    async def __aenter__(self) -> AsyncAudioBridges:
        self._depth += 1
        if self._depth == 1:
            stack = AsyncExitStack()
            self._task_group = await stack.enter_async_context(anyio.create_task_group())
            self._registry.adopt(self._task_group)
            self._exit_stack = stack
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._depth -= 1
        if self._depth:
            return
        stack, self._exit_stack = self._exit_stack, None
        task_group, self._task_group = self._task_group, None
        try:
            with anyio.CancelScope(shield=True):
                await self.close()
        finally:
            self._registry.adopt(None)
            if task_group is not None:
                task_group.cancel_scope.cancel()
            if stack is not None:
                await stack.aclose()

    async def attach(
        self,
        call_sid: str,
        *,
        codec: AudioCodec | str = "opus",
        sample_rate: int | None = None,
        channels: int = 1,
        frame_ms: int = 20,
        on_uplink: FrameCallback | None = None,
    ) -> AsyncAudioBridge:
        """Open the server side: receive the caller (uplink), talk back (downlink).

        The format is checked first, before any request, against what
        :func:`clutchcall.audio.make_codec` can encode (listed in
        ``clutchcall.bridge.AUDIO_FORMATS``): ``"opus"`` at 48000 Hz; ``"pcm16"``
        at 8000, 12000, 16000, 24000, 32000, 44100 or 48000 Hz; ``"g711_ulaw"`` /
        ``"g711_alaw"`` at 8000 Hz, mono only. ``channels`` is 1 or 2, ``frame_ms``
        10, 20, 40 or 60 (or 30, except for opus). ``sample_rate=None`` picks 48000,
        or 8000 for G.711. Anything else raises
        :class:`~clutchcall.InvalidArgumentError` naming the valid choices.

        Raises the control plane's ``NotFoundError`` (unknown or foreign call) or
        ``ConflictError`` (ended call) when no bridge token can be had, and
        :class:`~clutchcall.BridgeAuthError` / :class:`~clutchcall.BridgeConnectError`
        if the relay refuses or cannot be reached.
        """
        core = await self._registry.open(
            call_sid, VoiceRole.SERVER, codec, sample_rate, channels, frame_ms, on_uplink
        )
        return AsyncAudioBridge(core)

    async def attach_caller(
        self,
        call_sid: str,
        *,
        codec: AudioCodec | str = "opus",
        sample_rate: int | None = None,
        channels: int = 1,
        frame_ms: int = 20,
        on_downlink: FrameCallback | None = None,
    ) -> AsyncAudioBridge:
        """Open the caller side (a softphone): receive downlink, publish uplink.

        Same formats, defaults and errors as :meth:`attach`.
        """
        core = await self._registry.open(
            call_sid, VoiceRole.CALLER, codec, sample_rate, channels, frame_ms, on_downlink
        )
        return AsyncAudioBridge(core)

    async def close(self) -> None:
        """Close every bridge still open (the client's ``close()`` calls this); on the
        blocking client, its bridge thread stops too."""
        await self._registry.close_all()

    async def aclose(self) -> None:
        """The same as :meth:`close`, under the name ``contextlib.aclosing`` and anyio
        look for."""
        await self._registry.close_all()
