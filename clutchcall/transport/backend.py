"""Everything that depends on the event loop anyio runs on (asyncio or trio).

The rest of clutchcall never asks which loop it runs on: it calls these. (As
anyio keeps its backend-specific code in ``_backends/``.) Also home of
:class:`Signal`, the wake-up every layer above waits on.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import anyio.abc
import anyio.lowlevel

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


def batch_reader(sock: anyio.abc.UDPSocket) -> socket.socket | None:
    """A non-blocking duplicate of ``sock`` to read queued datagrams without
    waiting, or ``None`` where reads need no help (trio reads one per await).

    asyncio's datagram transport reads one datagram per event-loop iteration, so
    a socket shared by many connections would be read far slower than packets
    arrive; the caller closes the duplicate.
    """
    if not on_asyncio():
        return None
    raw = sock.extra(anyio.abc.SocketAttribute.raw_socket)
    dup = socket.socket(raw.family, raw.type, raw.proto, fileno=os.dup(raw.fileno()))
    dup.setblocking(False)
    return dup


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
