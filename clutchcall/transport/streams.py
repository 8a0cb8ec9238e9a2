"""QUIC / WebTransport streams with anyio byte-stream semantics.

- ``receive()`` returns data as it arrives, raises ``EndOfStream`` after the peer's
  FIN, ``BrokenResourceError`` when the peer reset the stream or the connection
  went away (the cause is a :class:`~clutchcall.transport.errors.StreamReset` or
  :class:`~clutchcall.transport.errors.ConnectionLost`), and
  ``ClosedResourceError`` once the stream or connection was closed locally.
- ``send()`` returns once the data is queued and the stream's unacknowledged
  backlog is below a limit, so a slow peer slows the sender down instead of
  growing memory.

Each stream is a facade over a :class:`ReceiveSide` and/or a :class:`SendSide`,
which its connection creates, feeds and fails; the sides reach the connection
only through its :class:`StreamHost`.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio
import anyio.abc
import anyio.lowlevel

from .backend import Signal

SEND_CHUNK = 64 * 1024
"""Largest piece handed to aioquic at once."""

SEND_HIGH_WATER = 512 * 1024
"""A send waits while this many bytes of the stream are still unacknowledged."""


@dataclass(frozen=True, slots=True)
class StreamHost:
    """What a stream asks of its connection (which fills it in with its own methods).

    Every call takes the stream ID first.
    """

    #: ``(id, size)``: ``size`` bytes arrived in the stream's read buffer.
    buffered: Callable[[int, int], None]
    #: ``(id, size)``: ``size`` bytes left the read buffer (read or dropped).
    consumed: Callable[[int, int], None]
    #: ``(id, data, end_stream)``: queue data (raises ``BrokenResourceError``).
    write: Callable[[int, bytes, bool], None]
    #: ``(id, code)``: RESET_STREAM.
    reset: Callable[[int, int], None]
    #: ``(id, code)``: STOP_SENDING.
    stop: Callable[[int, int], None]
    #: ``(id)``: bytes written and not yet acknowledged.
    backlog: Callable[[int], int]
    #: ``(id, limit, check)``: wait until the backlog is below ``limit``, calling
    #: ``check`` (which raises if the stream cannot be written) on each wake-up.
    wait_room: Callable[[int, int, Callable[[], None]], Awaitable[None]]
    #: Raises unless the connection is open.
    check_open: Callable[[], None]
    #: Whether the connection was closed locally.
    closed_locally: Callable[[], bool]


class ReceiveSide:
    """The readable half of a stream, fed by its connection."""

    def __init__(self, host: StreamHost, stream_id: int) -> None:
        self._host = host
        self.stream_id = stream_id
        self._chunks: deque[bytes] = deque()
        self._fin = False
        self._error: BaseException | None = None
        self._closed = False
        self._signal = Signal()

    @property
    def done(self) -> bool:
        """Nothing more will ever be read (closed, failed or EOF reached)."""
        return self._closed or self._error is not None or (self._fin and not self._chunks)

    def feed(self, data: bytes, fin: bool) -> None:
        if self._closed or self._error is not None or self._fin:
            return
        if data:
            self._chunks.append(data)
            self._host.buffered(self.stream_id, len(data))
        if fin:
            self._fin = True
        self._signal.notify()

    def fail(self, error: BaseException, *, discard: bool) -> None:
        """The peer reset the stream (``discard``) or the connection ended."""
        if self._closed or self._error is not None or (self._fin and not discard):
            return
        if discard:
            self._drop()
        self._error = error
        self._signal.notify()

    def refuse(self) -> None:
        """The connection turned the stream away: drop what it holds, read nothing."""
        self._drop()
        self._closed = True

    def _drop(self) -> None:
        dropped = sum(len(chunk) for chunk in self._chunks)
        self._chunks.clear()
        if dropped:
            self._host.consumed(self.stream_id, dropped)

    async def receive(self, max_bytes: int) -> bytes:
        await anyio.lowlevel.checkpoint()
        while True:
            try:
                return self.receive_nowait(max_bytes)
            except anyio.WouldBlock:
                await self._signal.wait()

    def receive_nowait(self, max_bytes: int) -> bytes:
        if self._closed:
            raise anyio.ClosedResourceError
        if self._chunks:
            chunk = self._chunks.popleft()
            if len(chunk) > max_bytes:
                self._chunks.appendleft(chunk[max_bytes:])
                chunk = chunk[:max_bytes]
            self._host.consumed(self.stream_id, len(chunk))
            return chunk
        if self._fin:
            raise anyio.EndOfStream
        if self._error is not None:
            if self._host.closed_locally():
                raise anyio.ClosedResourceError
            raise anyio.BrokenResourceError from self._error
        raise anyio.WouldBlock

    def stop(self, code: int) -> None:
        if self._closed:
            return
        if not self.done:
            self._host.stop(self.stream_id, code)
        self._drop()
        self._closed = True
        self._signal.notify()


class SendSide:
    """The writable half of a stream."""

    def __init__(self, host: StreamHost, stream_id: int) -> None:
        self._host = host
        self.stream_id = stream_id
        self._eof = False
        self._reset = False
        self._error: BaseException | None = None

    @property
    def done(self) -> bool:
        return self._eof or self._reset or self._error is not None

    def fail(self, error: BaseException) -> None:
        if not self.done:
            self._error = error

    def refuse(self) -> None:
        """The connection turned the stream away (and reset it)."""
        self._reset = True

    def _check(self) -> None:
        if self._reset or self._eof:
            raise anyio.ClosedResourceError
        self._host.check_open()
        if self._error is not None:
            raise anyio.BrokenResourceError from self._error

    async def send(self, data: bytes | bytearray | memoryview) -> None:
        await anyio.lowlevel.checkpoint()
        self._check()
        view = memoryview(data).cast("B")
        while view:
            await self._host.wait_room(self.stream_id, SEND_HIGH_WATER, self._check)
            self._host.write(self.stream_id, bytes(view[:SEND_CHUNK]), False)
            view = view[SEND_CHUNK:]

    def send_nowait(self, data: bytes | bytearray | memoryview, *, eof: bool) -> None:
        self._check()
        host, stream_id = self._host, self.stream_id
        if host.backlog(stream_id) >= SEND_HIGH_WATER:
            raise anyio.WouldBlock
        view = memoryview(data).cast("B")
        while len(view) > SEND_CHUNK:
            host.write(stream_id, bytes(view[:SEND_CHUNK]), False)
            view = view[SEND_CHUNK:]
        self._eof = eof
        host.write(stream_id, bytes(view), eof)

    async def send_eof(self) -> None:
        await anyio.lowlevel.checkpoint()
        self.send_eof_nowait()

    def send_eof_nowait(self) -> None:
        if self._eof:
            return
        self._check()
        self._eof = True
        self._host.write(self.stream_id, b"", True)

    def reset(self, code: int) -> None:
        if self.done:
            self._reset = True
            return
        self._reset = True
        self._host.reset(self.stream_id, code)

    async def finish(self) -> None:
        """Send the FIN unless the stream was reset or failed (or the connection
        closed); afterwards nothing more can be sent."""
        if not self.done and not self._host.closed_locally():
            with contextlib.suppress(anyio.BrokenResourceError):
                await self.send_eof()
        self._eof = self._eof or not self._reset


class _Sending:
    """The sending methods of :class:`SendStream` and :class:`Stream`."""

    _send_side: SendSide

    async def send(self, item: bytes) -> None:
        """Queue ``item``; wait while the stream's backlog is above its limit."""
        await self._send_side.send(item)

    def send_nowait(self, item: bytes | bytearray | memoryview, *, eof: bool = False) -> None:
        """Queue ``item`` (and the FIN with it if ``eof``) without waiting.

        Raises ``anyio.WouldBlock``, having queued nothing, while the stream's
        unacknowledged backlog is above its limit. Data written this way in one
        go (several streams, say) leaves together, in as few packets as possible.
        """
        self._send_side.send_nowait(item, eof=eof)

    def reset(self, code: int = 0) -> None:
        """Abort sending; queued data may never arrive (a receiving half stays open)."""
        self._send_side.reset(code)


class SendStream(_Sending, anyio.abc.ByteSendStream):
    """A unidirectional stream opened by this side."""

    def __init__(self, send_side: SendSide) -> None:
        self._send_side = send_side
        self.stream_id = send_side.stream_id

    async def send_eof(self) -> None:
        """Finish the stream (FIN) after the data already queued."""
        await self._send_side.send_eof()

    def send_eof_nowait(self) -> None:
        """:meth:`send_eof` without the checkpoint (finishing never waits)."""
        self._send_side.send_eof_nowait()

    async def aclose(self) -> None:
        """Finish the stream gracefully (FIN) unless it was reset or failed."""
        await self._send_side.finish()
        await anyio.lowlevel.checkpoint()

    def __repr__(self) -> str:
        return f"<SendStream id={self.stream_id}>"


class ReceiveStream(anyio.abc.ByteReceiveStream):
    """A unidirectional stream opened by the peer."""

    def __init__(self, receive_side: ReceiveSide) -> None:
        self._receive_side = receive_side
        self.stream_id = receive_side.stream_id

    async def receive(self, max_bytes: int = 65536) -> bytes:
        """Next chunk of data (at most ``max_bytes``); ``EndOfStream`` after FIN."""
        return await self._receive_side.receive(max_bytes)

    def receive_nowait(self, max_bytes: int = 65536) -> bytes:
        """Like :meth:`receive`, but raise ``anyio.WouldBlock`` instead of waiting.

        Lets a reader consume streams that are already complete in the order they
        arrived, without a task (and a scheduling decision) per stream.
        """
        return self._receive_side.receive_nowait(max_bytes)

    def stop_sending(self, code: int = 0) -> None:
        """Ask the peer to stop sending and discard anything unread."""
        self._receive_side.stop(code)

    async def aclose(self) -> None:
        """Stop reading (STOP_SENDING if the peer has not finished yet)."""
        self._receive_side.stop(0)
        await anyio.lowlevel.checkpoint()

    def __repr__(self) -> str:
        return f"<ReceiveStream id={self.stream_id}>"


class Stream(_Sending, anyio.abc.ByteStream):
    """A bidirectional stream (opened by either side)."""

    def __init__(self, send_side: SendSide, receive_side: ReceiveSide) -> None:
        self._send_side = send_side
        self._receive_side = receive_side
        self.stream_id = send_side.stream_id

    async def send_eof(self) -> None:
        """Finish the sending half (FIN); the receiving half stays open."""
        await self._send_side.send_eof()

    async def receive(self, max_bytes: int = 65536) -> bytes:
        """Next chunk of data (at most ``max_bytes``); ``EndOfStream`` after FIN."""
        return await self._receive_side.receive(max_bytes)

    def stop_sending(self, code: int = 0) -> None:
        """Abort the receiving half: ask the peer to stop and drop unread data."""
        self._receive_side.stop(code)

    async def aclose(self) -> None:
        """Finish sending (FIN) and stop receiving."""
        await self._send_side.finish()
        self._receive_side.stop(0)
        await anyio.lowlevel.checkpoint()

    def __repr__(self) -> str:
        return f"<Stream id={self.stream_id}>"
