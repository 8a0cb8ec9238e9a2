"""The audio bridge on the blocking :class:`~clutchcall.Voice`.

The async machinery runs on one event loop in one background thread per
``Voice`` (an anyio blocking portal, started by the first ``attach``);
``Voice.close()`` closes every bridge and stops that thread. Bridge methods are
thread-safe. Callbacks run on the bridge thread: keep them short, or hand the
frames to your own thread. Calling bridge methods from inside a callback works
(``publish_*`` directly, ``close()`` without waiting).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import weakref
from collections.abc import Awaitable, Callable, Iterator
from types import TracebackType
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from anyio.from_thread import BlockingPortal
from clutchcall_api.models import AudioCodec

from ..errors import BridgeClosedError
from ..moqnet import AudioFrame
from ..moqt import VoiceRole, VoiceTrack
from ._bridge import (
    BridgeCore,
    BridgeGrant,
    BridgeHandle,
    BridgeRegistry,
    BridgeSettings,
    FrameCallback,
    FrameIterator,
    check_attach,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")


class _LoopThread:
    """A daemon thread running an asyncio loop with a :class:`BlockingPortal`; the
    bridges' tasks run in a task group of that loop (``registry`` adopts it), which
    stopping cancels and joins."""

    def __init__(self, registry: BridgeRegistry) -> None:
        ready = threading.Event()
        self.portal: BlockingPortal | None = None
        self.ident: int | None = None
        #: Set once the portal is asked to stop: it takes no more calls.
        self.stopping = False

        async def serve() -> None:
            async with anyio.create_task_group() as task_group:
                async with BlockingPortal() as portal:
                    registry.adopt(task_group)
                    self.portal = portal
                    self.ident = threading.get_ident()
                    ready.set()
                    await portal.sleep_until_stopped()
                registry.adopt(None)
                task_group.cancel_scope.cancel()

        def main() -> None:
            try:
                anyio.run(serve)
            finally:
                self.stopping = True
                ready.set()

        self.thread = threading.Thread(target=main, name="clutchcall-audio-bridge", daemon=True)
        self.thread.start()
        ready.wait()
        if self.portal is None:
            raise RuntimeError("the audio bridge thread did not start")

    def in_loop(self) -> bool:
        return threading.get_ident() == self.ident

    def stop(self) -> None:
        portal = self.portal
        self.stopping = True
        if portal is not None and self.thread.is_alive() and not self.in_loop():
            with contextlib.suppress(RuntimeError):  # already stopped
                portal.call(portal.stop, True)
            self.thread.join(timeout=10)


class AudioBridge(BridgeHandle):
    """One call's audio bridge on the blocking client (``voice.audio_bridge.attach``).

    Same surface as :class:`~clutchcall.AsyncAudioBridge` without ``await``: its
    methods are thread-safe, callbacks run on the client's bridge thread (keep
    them short), and ``for frame in bridge.uplink():`` blocks for each frame.
    """

    _close_call = "close()"

    def __init__(self, core: BridgeCore, loop: _LoopThread) -> None:
        super().__init__(core)
        self._loop = loop

    def _call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a synchronous core method on the bridge thread."""
        if self._loop.in_loop():
            return fn(*args)
        return self._run(functools.partial(_as_async, fn, *args))

    def _run(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Run a coroutine function on the bridge thread and wait for its result."""
        loop = self._loop
        portal = loop.portal
        assert portal is not None
        if loop.stopping:
            raise BridgeClosedError(f"the audio bridge of {self.call_sid} is closed")
        try:
            return portal.call(fn)
        except RuntimeError:
            # The portal refuses calls once it stops (the client closed meanwhile).
            if loop.stopping or not loop.thread.is_alive():
                raise BridgeClosedError(f"the audio bridge of {self.call_sid} is closed") from None
            raise

    def publish_downlink(self, frame: bytes, timestamp_us: int | None = None) -> None:
        """Send one encoded frame to the caller (``timestamp_us`` None: monotonic µs).

        Never waits for the network: the frame is queued for sending (while the
        relay session is being restored, in a small queue whose stale frames are
        dropped and counted in :attr:`stats`). Raises
        :class:`~clutchcall.CallEndedError` once the call has ended and
        :class:`~clutchcall.BridgeClosedError` once the bridge is closed or lost
        its relay session for good.
        """
        self._call(self._core.publish, VoiceTrack.DOWNLINK, frame, timestamp_us)

    def publish_uplink(self, frame: bytes, timestamp_us: int | None = None) -> None:
        """Caller side: send one encoded mic frame to the cloud (as :meth:`publish_downlink`)."""
        self._call(self._core.publish, VoiceTrack.UPLINK, frame, timestamp_us)

    def on_uplink(self, callback: FrameCallback | None) -> None:
        """Swap the consumer of caller audio: ``callback(frame, timestamp_us)`` gets
        every frame from the next one on (None: frames wait in a bounded buffer)."""
        self._call(self._core.set_callback, VoiceTrack.UPLINK, callback)

    def on_downlink(self, callback: FrameCallback | None) -> None:
        """Caller side: swap the consumer of cloud audio (as :meth:`on_uplink`)."""
        self._call(self._core.set_callback, VoiceTrack.DOWNLINK, callback)

    def uplink(self) -> Iterator[AudioFrame]:
        """The caller's frames from now on, in order (``for frame in bridge.uplink()``;
        ``async for`` on the async bridge). The iteration ends once the bridge has
        ended (the call ended, or it was closed) and its frames are drained."""
        return _SyncFrames(self, self._call(self._core.iterate, VoiceTrack.UPLINK))

    def downlink(self) -> Iterator[AudioFrame]:
        """Caller side: the cloud's frames from now on (as :meth:`uplink`)."""
        return _SyncFrames(self, self._call(self._core.iterate, VoiceTrack.DOWNLINK))

    def close(self) -> None:
        """End both tracks (PUBLISH_DONE, UNSUBSCRIBE) and the MoQT session; returns
        once they are gone."""
        core = self._core
        if self._loop.in_loop():
            core.close_soon()
            return
        if core.closed and core.finished:
            return
        with contextlib.suppress(BridgeClosedError):
            self._run(core.aclose)

    def __enter__(self) -> AudioBridge:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class _SyncFrames(Iterator[AudioFrame]):
    def __init__(self, bridge: AudioBridge, frames: FrameIterator) -> None:
        self._bridge = bridge
        self._frames = frames

    def __next__(self) -> AudioFrame:
        if self._bridge._loop.in_loop():
            raise RuntimeError("iterate a bridge from your own thread, not from a callback")
        frame = self._bridge._run(functools.partial(_next_or_none, self._frames))
        if frame is None:
            raise StopIteration
        return frame


async def _as_async(fn: Callable[..., T], *args: Any) -> T:
    return fn(*args)


async def _next_or_none(frames: FrameIterator) -> AudioFrame | None:
    try:
        return await frames.__anext__()
    except StopAsyncIteration:
        return None


class AudioBridges:
    """``voice.audio_bridge`` on :class:`~clutchcall.Voice`.

    ``mint(call_sid, role)`` returns a bridge token for that call and role (the
    client passes its ``calls.create_bridge_token``); it is called in a worker thread.
    """

    def __init__(
        self, settings: BridgeSettings, mint: Callable[[str, VoiceRole], BridgeGrant]
    ) -> None:
        async def mint_in_thread(call_sid: str, role: VoiceRole) -> BridgeGrant:
            return await anyio.to_thread.run_sync(functools.partial(mint, call_sid, role))

        self._registry = BridgeRegistry(settings, mint_in_thread)
        self._lock = threading.Lock()
        self._loop: _LoopThread | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None

    def _loop_thread(self) -> _LoopThread:
        with self._lock:
            if self._loop is None:
                self._loop = _LoopThread(self._registry)
                self._finalizer = weakref.finalize(self, self._loop.stop)
            return self._loop

    def _open(
        self,
        call_sid: str,
        role: VoiceRole,
        codec: AudioCodec | str,
        sample_rate: int | None,
        channels: int,
        frame_ms: int,
        callback: FrameCallback | None,
    ) -> AudioBridge:
        # Bad arguments fail here, before the bridge thread starts or a token is asked for.
        options = (codec, sample_rate, channels, frame_ms, callback)
        check_attach(call_sid, role, *options)
        loop = self._loop_thread()
        if loop.in_loop():
            raise RuntimeError("attach from your own thread, not from a bridge callback")
        assert loop.portal is not None
        core = loop.portal.call(functools.partial(self._registry.open, call_sid, role, *options))
        return AudioBridge(core, loop)

    def attach(
        self,
        call_sid: str,
        *,
        codec: AudioCodec | str = "opus",
        sample_rate: int | None = None,
        channels: int = 1,
        frame_ms: int = 20,
        on_uplink: FrameCallback | None = None,
    ) -> AudioBridge:
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
        return self._open(
            call_sid, VoiceRole.SERVER, codec, sample_rate, channels, frame_ms, on_uplink
        )

    def attach_caller(
        self,
        call_sid: str,
        *,
        codec: AudioCodec | str = "opus",
        sample_rate: int | None = None,
        channels: int = 1,
        frame_ms: int = 20,
        on_downlink: FrameCallback | None = None,
    ) -> AudioBridge:
        """Open the caller side (a softphone): receive downlink, publish uplink.

        Same formats, defaults and errors as :meth:`attach`.
        """
        return self._open(
            call_sid, VoiceRole.CALLER, codec, sample_rate, channels, frame_ms, on_downlink
        )

    def __enter__(self) -> AudioBridges:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close every bridge still open (the client's ``close()`` calls this); on the
        blocking client, its bridge thread stops too."""
        with self._lock:
            loop, self._loop = self._loop, None
            finalizer, self._finalizer = self._finalizer, None
        if loop is None:
            return
        if finalizer is not None:
            finalizer.detach()
        try:
            if loop.portal is not None and not loop.in_loop():
                loop.portal.call(self._registry.close_all)
        finally:
            loop.stop()
