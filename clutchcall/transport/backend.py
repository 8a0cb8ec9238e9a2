"""Everything that depends on the event loop anyio runs on (asyncio or trio).

The rest of clutchcall never asks which loop it runs on: it calls these. (As
anyio keeps its backend-specific code in ``_backends/``.) Also home of
:class:`Signal`, the wake-up every layer above waits on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import anyio.abc
import anyio.lowlevel

logger = logging.getLogger(__name__)

ThreadsafeCall = Callable[[Callable[[], object]], None]

_ASYNCIO_TASKS: set[asyncio.Task[None]] = set()


def on_asyncio() -> bool:
    """True under asyncio; anyio's other backend is trio."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def clock() -> Callable[[], float]:
    """The event loop's clock: ``anyio.current_time`` without its per-call lookup."""
    try:
        return asyncio.get_running_loop().time
    except RuntimeError:
        return anyio.current_time


def loop_id() -> int:
    """Identifies the running event loop."""
    if not on_asyncio():
        import trio

        return id(trio.lowlevel.current_trio_token())
    return id(asyncio.get_running_loop())


def spawn(fn: Callable[[], Awaitable[None]], name: str) -> None:
    """Run ``fn()`` as a background task of the current event loop.

    For work that outlives the call that started it: a bridge is returned by
    ``await attach(...)`` and closed later, often from another task, so its work
    runs in one such task, which owns a task group for all of the bridge's tasks.
    """
    if not on_asyncio():
        import trio

        trio.lowlevel.spawn_system_task(fn, name=name)
        return

    async def wrapper() -> None:
        await fn()

    task = asyncio.get_running_loop().create_task(wrapper(), name=name)
    _ASYNCIO_TASKS.add(task)
    task.add_done_callback(_ASYNCIO_TASKS.discard)


def threadsafe_caller() -> ThreadsafeCall:
    """A function that schedules a callback on the current loop from any thread.

    Scheduling on a loop that has already finished is silently ignored.
    """
    if not on_asyncio():
        import trio

        token = trio.lowlevel.current_trio_token()

        def call_trio(fn: Callable[[], object]) -> None:
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(fn)

        return call_trio

    loop = asyncio.get_running_loop()

    def call_asyncio(fn: Callable[[], object]) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed
            loop.call_soon_threadsafe(fn)

    return call_asyncio


def direct_sender(
    sock: anyio.abc.UDPSocket, busy: Callable[[], bool] | None = None
) -> Callable[[bytes, Any], bool] | None:
    """Send one UDP datagram on ``sock`` without waiting (``False`` if the socket
    would block), or ``None`` if the loop has no such path.

    On asyncio, datagrams go straight to the socket's transport (which sends at
    once), as long as its write buffer is empty; otherwise, and while ``busy``
    returns True (a slow-path send is under way), they take the slow path, so that
    they leave in order and the transport's flow control applies.
    """
    transport = getattr(sock, "_transport", None)
    # asyncio's selector datagram transport does not derive from DatagramTransport,
    # so look for the methods rather than the class.
    buffered: Callable[[], int] | None = getattr(transport, "get_write_buffer_size", None)
    sendto: Callable[[bytes, Any], None] | None = getattr(transport, "sendto", None)
    if not isinstance(transport, asyncio.BaseTransport) or buffered is None or sendto is None:
        return None
    closing = transport.is_closing

    def send_nowait(data: bytes, addr: Any) -> bool:
        if closing():
            raise anyio.ClosedResourceError
        if (busy is not None and busy()) or buffered():
            return False
        sendto(data, (addr[0], addr[1]))
        return True

    return send_nowait


def batch_reader(sock: anyio.abc.UDPSocket) -> socket.socket:
    """A non-blocking duplicate of ``sock`` to read queued datagrams without
    waiting; the caller closes it.

    asyncio's datagram transport reads one datagram per event-loop iteration, so
    a socket shared by many connections would be read far slower than packets
    arrive; trio reads one per await, each a trip through its scheduler.
    """
    raw = sock.extra(anyio.abc.SocketAttribute.raw_socket)
    dup = socket.socket(raw.family, raw.type, raw.proto, fileno=os.dup(raw.fileno()))
    dup.setblocking(False)
    return dup


class CallbackReceiver(asyncio.DatagramProtocol):
    """asyncio only: hands each datagram a UDP socket receives to a function, from
    the transport's read callback, with no task in between.

    Installed in place of the anyio socket's own protocol (which still sees the
    socket's flow control and closing; its receive queue is no longer fed), it
    passes every datagram to ``handle(data, addr)`` at once, then reads what else
    the kernel holds for the socket (up to ``batch`` datagrams, through
    :func:`batch_reader`'s duplicate): asyncio's transport itself reads one
    datagram per loop iteration. Addresses are ``(host, port)`` pairs, as anyio
    gives them. If ``handle`` raises, the receiver stops and :meth:`wait_closed`
    raises that (as a reader task's loop would).
    """

    def __init__(
        self, sock: anyio.abc.UDPSocket, handle: Callable[[bytes, Any], None], batch: int
    ) -> None:
        self._transport: asyncio.DatagramTransport = sock._transport  # type: ignore[attr-defined]
        self._inner: asyncio.DatagramProtocol = sock._protocol  # type: ignore[attr-defined]
        self._handle = handle
        self._batch = batch
        self._dup: socket.socket | None = batch_reader(sock)
        self._closed = asyncio.Event()
        self._failure: Exception | None = None
        if self._transport.is_closing():
            self._closed.set()
        else:
            self._transport.set_protocol(self)

    @classmethod
    def install(
        cls, sock: anyio.abc.UDPSocket, handle: Callable[[bytes, Any], None], batch: int
    ) -> CallbackReceiver | None:
        """A receiver for ``sock``, or None where the loop has no such path (trio)."""
        if not on_asyncio() or not isinstance(
            getattr(sock, "_transport", None), asyncio.BaseTransport
        ):
            return None
        return cls(sock, handle, batch)

    async def wait_closed(self) -> None:
        """Until the socket closes, or raises what ``handle`` raised; on the way out
        (also when cancelled) the anyio socket gets its protocol back."""
        try:
            await self._closed.wait()
        finally:
            self._stop()
        if self._failure is not None:
            raise self._failure

    def _stop(self) -> None:
        self._handle = _drop_datagram
        if self._transport.get_protocol() is self:
            self._transport.set_protocol(self._inner)
        if self._dup is not None:
            self._dup.close()
            self._dup = None

    def datagram_received(self, data: bytes, addr: Any) -> None:
        handle = self._handle
        try:
            handle(data, addr if len(addr) == 2 else (addr[0], addr[1]))
            dup = self._dup
            if dup is None:
                return
            for _ in range(self._batch):
                try:
                    data, addr = dup.recvfrom(65536)
                except (BlockingIOError, InterruptedError):
                    return
                handle(data, addr if len(addr) == 2 else (addr[0], addr[1]))
        except OSError:
            logger.debug("UDP receive error", exc_info=True)
        except Exception as exc:
            self._failure = exc
            self._stop()
            self._closed.set()

    def error_received(self, exc: Exception) -> None:
        logger.debug("UDP socket error: %r", exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self._inner.connection_lost(exc)
        self._closed.set()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()


def _drop_datagram(data: bytes, addr: Any) -> None:
    pass


class Signal:
    """A broadcast wake-up: waiters sleep until the next :meth:`notify`."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        # Created by the first waiter: a notify with nobody waiting costs nothing.
        self._event: anyio.Event | None = None

    def notify(self) -> None:
        event = self._event
        if event is not None:
            self._event = None
            event.set()

    async def wait(self) -> None:
        event = self._event
        if event is None:
            event = self._event = anyio.Event()
        await event.wait()


class Waker:
    """One task's wake-up with a movable deadline: :meth:`wait` returns at the
    deadline, or as soon as :meth:`set` is called (or was, since the last
    :meth:`clear`). The owner task waits; anyone may set it or bring its
    deadline forward.

    This is what an ``anyio.Event`` waited on in an ``anyio.CancelScope`` with a
    deadline does, without a new event and scope per wait: on asyncio a future
    and one timer handle, on trio those anyio objects.
    """

    __slots__ = ("_asyncio", "_deadline", "_event", "_future", "_scope", "_set", "_timer")

    def __init__(self) -> None:
        self._set = False
        #: The deadline of the wait in progress (``inf`` when none is).
        self._deadline = math.inf
        self._asyncio = asyncio.get_running_loop() if on_asyncio() else None
        self._future: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._event: anyio.Event | None = None
        self._scope: anyio.CancelScope | None = None

    @property
    def waiting(self) -> bool:
        """A :meth:`wait` is in progress."""
        return self._future is not None or self._scope is not None

    def clear(self) -> None:
        self._set = False

    def set(self) -> None:
        self._set = True
        future = self._future
        if future is not None:
            if not future.done():
                future.set_result(None)
        elif self._event is not None:
            self._event.set()

    @property
    def deadline(self) -> float:
        return self._deadline

    def advance(self, deadline: float) -> None:
        """Bring the deadline of the wait in progress forward to ``deadline`` (a
        later one, or no wait in progress, changes nothing)."""
        if deadline >= self._deadline or not self.waiting:
            return
        self._deadline = deadline
        loop = self._asyncio
        if loop is not None:
            future = self._future
            if future is not None:
                if self._timer is not None:
                    self._timer.cancel()
                self._timer = loop.call_at(deadline, _settle, future)
        elif self._scope is not None:
            self._scope.deadline = deadline

    async def wait(self, deadline: float) -> None:
        """Until :meth:`set` or the loop's clock reaches ``deadline``."""
        loop = self._asyncio
        if loop is None:
            await self._wait_anyio(deadline)
            return
        if self._set or deadline <= loop.time():
            await asyncio.sleep(0)
            return
        future = self._future = loop.create_future()
        self._deadline = deadline
        if deadline != math.inf:
            self._timer = loop.call_at(deadline, _settle, future)
        try:
            await future
        finally:
            self._future = None
            self._deadline = math.inf
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    async def _wait_anyio(self, deadline: float) -> None:
        if self._set:
            await anyio.lowlevel.checkpoint()
            return
        event = self._event = anyio.Event()
        with anyio.CancelScope(deadline=deadline) as scope:
            self._scope = scope
            self._deadline = deadline
            try:
                await event.wait()
            finally:
                self._scope = self._event = None
                self._deadline = math.inf


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


_Item = TypeVar("_Item")


async def next_queued(items: deque[_Item], ended: Callable[[], bool], arrived: Signal) -> _Item:
    """The oldest of ``items``, waiting (on ``arrived``) while there is none; raises
    ``StopAsyncIteration`` once ``ended()`` and nothing is left. The ``__anext__`` of
    a queue that a producer fills and notifies."""
    await anyio.lowlevel.checkpoint()
    while True:
        if items:
            return items.popleft()
        if ended():
            raise StopAsyncIteration
        await arrived.wait()
