"""UDP sockets: reading every datagram a socket receives, in batches where the
loop allows (the direct-send path is :func:`.backend.direct_sender`)."""

from __future__ import annotations

import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.abc

from .backend import CallbackReceiver, batch_reader

logger = logging.getLogger(__name__)

SendDatagram = Callable[[bytes, Any], Awaitable[None]]
SendDatagramNowait = Callable[[bytes, Any], bool]
"""Send one UDP datagram without waiting; ``False`` if the socket would block."""

RECEIVE_BATCH = 64
"""Datagrams a socket reader takes per wake-up (beyond the one it waited for)."""


class SocketReceiver:
    """Reads queued UDP datagrams of a socket without waiting.

    After each awaited receive, the reader takes what else the kernel holds
    through a duplicate of the socket (see :func:`.backend.batch_reader`); the
    socket's own read then finds nothing and waits for the next one.
    """

    def __init__(self, sock: anyio.abc.UDPSocket) -> None:
        self._dup: socket.socket | None = batch_reader(sock)

    def receive_nowait(self) -> tuple[bytes, Any] | None:
        """One queued datagram and its sender, or ``None``."""
        dup = self._dup
        if dup is None:
            return None
        try:
            return dup.recvfrom(65536)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError:
            logger.debug("UDP receive error", exc_info=True)
            return None

    def close(self) -> None:
        if self._dup is not None:
            self._dup.close()
            self._dup = None


async def receive_datagrams(
    sock: anyio.abc.UDPSocket,
    handle: Callable[[bytes, Any], Awaitable[None]],
    handle_nowait: Callable[[bytes, Any], None] | None = None,
) -> None:
    """Hand every datagram ``sock`` receives to ``handle`` until the socket closes;
    what is queued behind the awaited one is read in the same wake-up.

    With ``handle_nowait`` (which must not block), asyncio calls it straight from
    the socket's read callback instead (:class:`.backend.CallbackReceiver`): no
    task wakes up per datagram.
    """
    if handle_nowait is not None:
        callbacks = CallbackReceiver.install(sock, handle_nowait, RECEIVE_BATCH)
        if callbacks is not None:
            await callbacks.wait_closed()
            return
    receiver = SocketReceiver(sock)
    try:
        while True:
            item: tuple[bytes, Any] | None
            try:
                item = await sock.receive()
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                return
            except OSError:
                logger.debug("UDP receive error", exc_info=True)
                await anyio.sleep(0.01)
                continue
            for _ in range(RECEIVE_BATCH + 1):
                if item is None:
                    break
                await handle(*item)
                item = receiver.receive_nowait()
    finally:
        receiver.close()
