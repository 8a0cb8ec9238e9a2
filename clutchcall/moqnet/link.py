"""One sans-IO :class:`~clutchcall.moqt.Session` carried over one transport connection.

The link feeds the session whatever arrives (the control stream, each incoming
unidirectional stream, datagrams) and hands the resulting events to its owner
synchronously. What the session queues (control bytes, stream writes / resets /
stop-sendings, datagrams) goes to the transport in order: at once, from
:meth:`MoqtLink.kick`, as long as nothing has to wait (the usual case: an audio
frame is a new short stream); otherwise a writer task takes over until the
backlog is gone. The relay (server side) and the clients share it.

With a :class:`BacklogLimit` (the relay gives one to every session), what the
link sends as whole streams (each object the relay forwards is a group on a
stream of its own) is accounted from the moment the link takes it from the
session until the peer has acknowledged all of it. A peer that stops taking
data (it grants no flow-control credit, or acknowledges nothing) so holds at
most ``max_bytes`` of such groups for at most ``max_age``: past either, the link
drops the oldest ones (reset with DELIVERY_TIMEOUT if already handed to the
transport, else never sent), counts them in :attr:`MoqtLink.groups_dropped` and
logs once per episode. Control messages cannot be dropped: a peer that lets more
than ``max_control_bytes`` of them pile up has its session closed.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel

from .. import moqt
from ..transport import Connection, ReceiveStream, SendStream, Stream
from ..transport import StopSending as TransportStopSending
from ..transport import StreamReset as TransportStreamReset
from ..transport.streams import SEND_CHUNK

logger = logging.getLogger(__name__)

EventHandler = Callable[[list[moqt.Event]], None]
_BROKEN = (anyio.BrokenResourceError, anyio.ClosedResourceError)

GROUP_OVERHEAD = 1024
"""Bytes a group is counted for on top of its data: roughly what the transport
keeps for each stream it has not finished (aioquic's stream state and buffers)."""


@dataclass(frozen=True)
class BacklogLimit:
    """How much a peer that does not take its data may make the link hold."""

    #: Groups (data plus :data:`GROUP_OVERHEAD` each) not yet acknowledged by the
    #: peer; past this the oldest are dropped.
    max_bytes: int
    #: Seconds since the link took a group from the session; an older group still
    #: unacknowledged is dropped.
    max_age: float
    #: Control-stream bytes waiting to be handed to the transport; past this the
    #: session is closed (control messages cannot be dropped).
    max_control_bytes: int


@dataclass(eq=False, slots=True)
class _Group:
    """A whole-stream write the link took from the session and the peer has not
    yet acknowledged."""

    #: The session's stream key.
    key: int
    #: The write while it is queued in the link (None once handed over: the
    #: transport holds the data then).
    command: moqt.StreamWrite | None
    #: Bytes it is counted for.
    size: int
    #: When the link took it (``time.monotonic()``).
    at: float
    #: The transport stream once handed over (-1 while still queued in the link).
    stream_id: int = -1


class MoqtLink:
    """Drive ``session`` over ``conn`` until the connection or the session ends."""

    def __init__(
        self,
        conn: Connection,
        session: moqt.Session,
        on_events: EventHandler,
        *,
        backlog_limit: BacklogLimit | None = None,
    ) -> None:
        self.conn = conn
        self.session = session
        self._on_events = on_events
        #: May be replaced at any time (the relay scales it with a session's tracks).
        self.backlog_limit = backlog_limit
        #: Accounted groups, oldest first (only with a backlog limit).
        self._groups: deque[_Group] = deque()
        #: Those still queued in the link, by session stream key.
        self._queued_groups: dict[int, _Group] = {}
        self._backlog_bytes = 0
        #: The stream key of the write the writer task is waiting to hand over.
        self._in_flight: int | None = None
        #: Groups dropped because the peer did not take them in time (see BacklogLimit).
        self.groups_dropped = 0
        #: Dropping now: set at the first drop, cleared once the peer has caught up.
        self.dropping = False
        self._episode_drops = 0
        #: The peer acknowledged a group since the last drop (it is not stuck).
        self._took_since_drop = False
        self._control: Stream | None = None
        self._wake = anyio.Event()
        #: Something was queued and not yet handed to the transport.
        self._dirty = False
        self._idle_event: anyio.Event | None = None
        #: Taken from the session, not yet handed to the transport (in this order).
        self._control_out = bytearray()
        self._commands: deque[moqt.StreamCommand] = deque()
        self._datagrams_out: deque[bytes] = deque()
        #: The writer (inline or the task) is at work: a kick only wakes the task.
        self._writing = False
        #: Called once the writer task has handed over everything it had waited to
        #: (the backlog is empty again), so that the owner can queue what it held back.
        self.on_drained: Callable[[], None] | None = None
        #: The writer task's wait for the transport, while it waits.
        self._write_scope: anyio.CancelScope | None = None
        self._out: dict[int, SendStream] = {}
        self._in: dict[Hashable, ReceiveStream] = {}
        self._tg: anyio.abc.TaskGroup | None = None
        self._lost = False
        self._close_request: tuple[int, str] | None = None
        #: When set (a dict), the owner enters the session stream keys it wants to
        #: follow (value None) and the link fills in each one's QUIC stream ID as the
        #: stream is opened: the owner can then ask the connection whether the peer
        #: acknowledged it. The owner removes what it no longer needs.
        self.stream_ids: dict[int, int | None] | None = None
        #: Set once the connection is gone (closed by either side or lost).
        self.finished = anyio.Event()

    # -- owner interface -------------------------------------------------------------

    async def run(self, control: Stream | None = None) -> None:
        """Run until the connection ends. Clients pass the control stream they opened;
        servers wait for the peer's first bidirectional stream."""
        self._control = control
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                self.conn.set_stream_callbacks(
                    arrived=self._take_streams, whole=self._on_complete_stream
                )
                tg.start_soon(self._accept_streams)
                tg.start_soon(self._read_datagrams)
                tg.start_soon(self._write_loop)
                if control is not None:
                    tg.start_soon(self._read_control, control)
                self.kick()
        finally:
            self._tg = None
            self.conn.set_stream_callbacks()
            self.finished.set()

    @property
    def backlog(self) -> int:
        """Data stream writes taken from the session but not yet handed to the transport."""
        return len(self._commands)

    @property
    def streams_reading(self) -> int:
        """Peer streams being read: opened, not yet finished or reset."""
        return len(self._in)

    @property
    def backlog_bytes(self) -> int:
        """Bytes the groups not yet acknowledged are counted for (with a backlog
        limit; else 0)."""
        self._forget_acknowledged()
        return self._backlog_bytes

    def kick(self) -> None:
        """The session may have something to send: hand it to the transport now if
        nothing has to wait, else wake the writer task."""
        self._dirty = True
        if self.backlog_limit is not None:
            # Taken (and the limit applied) even while the writer waits, so that
            # nothing piles up in the session behind it.
            self._take()
        if self._writing or self._tg is None or self._lost or self._close_request is not None:
            self._wake.set()
        elif self._write_nowait():
            self._mark_idle()
        else:
            self._wake.set()

    def feed(self, fn: Callable[..., list[moqt.Event]], *args: Any) -> None:
        """Call a ``session.receive_*`` method, dispatch its events and flush."""
        try:
            events = fn(*args)
        except moqt.MoqtProtocolError as exc:
            logger.info("MoQT peer broke the protocol: %s", exc.reason)
            self.kick()
            return
        if events:
            try:
                self._on_events(events)
            except Exception:
                logger.exception("MoQT event handler failed; closing the session")
                if self.session.state is not moqt.SessionState.CLOSED:
                    self.session.close(moqt.SessionErrorCode.INTERNAL_ERROR, "internal error")
        self.kick()

    async def flushed(self) -> None:
        """Wait until everything the session queued so far was handed to the transport."""
        while self._dirty and not self.finished.is_set():
            if self._idle_event is None:
                self._idle_event = anyio.Event()
            await wait_any(self._idle_event, self.finished)
        await anyio.lowlevel.checkpoint()

    def _mark_idle(self) -> None:
        self._dirty = False
        event, self._idle_event = self._idle_event, None
        if event is not None:
            event.set()

    def close(self, code: int = 0, reason: str = "") -> None:
        """Send what is queued, then close the connection with ``code``."""
        if self._close_request is None:
            self._close_request = (code, reason)
        self.kick()

    def abort(self, code: int, reason: str) -> None:
        """End the session now: queued data is dropped, the connection closed with ``code``."""
        if self.session.state is not moqt.SessionState.CLOSED:
            self.session.close(code, reason)
        self._interrupt_writer()
        self.kick()

    def _interrupt_writer(self) -> None:
        """The session was closed: stop a write that waits for the peer."""
        if self._write_scope is not None:
            self._write_scope.cancel()

    # -- readers -----------------------------------------------------------------------

    def _connection_lost(self) -> None:
        if self._lost:
            return
        self._lost = True
        lost = self.conn.close_reason
        code, reason = (lost.code, lost.reason) if lost is not None else (0, "")
        self.feed(self.session.connection_lost, code, reason)
        if self._tg is not None:
            self._tg.cancel_scope.cancel()

    async def _read_control(self, control: Stream) -> None:
        while True:
            try:
                data = await control.receive()
            except anyio.EndOfStream:
                self.feed(self.session.receive_control_end)
                return
            except _BROKEN:
                self._connection_lost()
                return
            self.feed(self.session.receive_control, data)

    async def _accept_streams(self) -> None:
        while True:
            try:
                try:
                    stream = self.conn.accept_stream_nowait()
                except anyio.WouldBlock:
                    stream = await self.conn.accept_stream()
            except _BROKEN:
                self._connection_lost()
                return
            self._on_stream(stream)

    def _take_streams(self) -> None:
        """Take the streams a received packet opened, at once (the connection calls
        this after each datagram), so that their data needs no scheduling round."""
        while self._tg is not None:
            try:
                stream = self.conn.accept_stream_nowait()
            except (anyio.WouldBlock, *_BROKEN):
                return  # the accept task sees the connection's end
            self._on_stream(stream)

    def _on_complete_stream(self, stream_id: int, data: bytes) -> None:
        """A peer stream that arrived whole (an audio frame): fed in one go."""
        self.feed(self.session.receive_stream, stream_id, data, True)

    def _on_stream(self, stream: Stream | ReceiveStream) -> None:
        assert self._tg is not None
        if isinstance(stream, Stream):
            if self._control is None and not self.conn.is_client:
                self._control = stream
                self._tg.start_soon(self._read_control, stream)
            else:  # MoQT has one bidirectional stream: the control stream
                stream.reset(0)
                stream.stop_sending(0)
            return
        if not self._drain(stream):
            # Registered now, not when the reader task starts, so that a STOP_SENDING
            # the session asks for meanwhile finds the stream.
            self._in[stream.stream_id] = stream
            self._tg.start_soon(self._read_stream, stream)

    def _drain(self, stream: ReceiveStream) -> bool:
        """Feed what a new stream already holds; True if it is finished.

        Streams that arrived complete (an audio frame is one small stream) are so
        fed in arrival order; only the others get a reader task of their own.
        """
        key = stream.stream_id
        while True:
            try:
                data = stream.receive_nowait()
            except anyio.WouldBlock:
                return False
            except anyio.EndOfStream:
                self.feed(self.session.receive_stream, key, b"", True)
                return True
            except anyio.BrokenResourceError as exc:
                if isinstance(exc.__cause__, TransportStreamReset):
                    self.feed(self.session.receive_stream_reset, key, exc.__cause__.code)
                return True
            except anyio.ClosedResourceError:
                return True
            self.feed(self.session.receive_stream, key, data, False)

    async def _read_stream(self, stream: ReceiveStream) -> None:
        key = stream.stream_id
        try:
            while True:
                try:
                    data = await stream.receive()
                except anyio.EndOfStream:
                    self.feed(self.session.receive_stream, key, b"", True)
                    return
                self.feed(self.session.receive_stream, key, data, False)
        except anyio.BrokenResourceError as exc:
            if isinstance(exc.__cause__, TransportStreamReset):
                self.feed(self.session.receive_stream_reset, key, exc.__cause__.code)
        except anyio.ClosedResourceError:
            pass
        finally:
            self._in.pop(key, None)

    async def _read_datagrams(self) -> None:
        while True:
            try:
                data = await self.conn.receive_datagram()
            except _BROKEN:
                self._connection_lost()
                return
            self.feed(self.session.receive_datagram, data)

    # -- writer ------------------------------------------------------------------------

    def _take(self) -> None:
        """Move what the session queued into the link's own queues."""
        session = self.session
        data = session.control_data_to_send()
        if data:
            self._control_out += data
        commands = session.stream_commands_to_send()
        if commands:
            self._commands.extend(commands)
        datagrams = session.datagrams_to_send()
        if datagrams:
            self._datagrams_out.extend(datagrams)
        if self.backlog_limit is not None:
            self._account(commands)

    # -- the backlog limit -------------------------------------------------------------

    def _account(self, commands: list[moqt.StreamCommand]) -> None:
        """Count new whole-stream writes, then apply the limit."""
        limit = self.backlog_limit
        assert limit is not None
        now = time.monotonic()
        for command in commands:
            if isinstance(command, moqt.StreamWrite) and command.open and command.end:
                size = len(command.data) + GROUP_OVERHEAD
                group = _Group(command.key, command, size, now)
                self._groups.append(group)
                self._queued_groups[command.key] = group
                self._backlog_bytes += group.size
        if len(self._control_out) > limit.max_control_bytes:
            logger.warning(
                "MoQT peer %s is not reading its control stream (%d bytes waiting); "
                "closing the session",
                self.conn.remote_address,
                len(self._control_out),
            )
            self._control_out.clear()
            self.session.close(moqt.SessionErrorCode.TOO_MANY_REQUESTS, "control backlog")
            self._interrupt_writer()
            self._wake.set()
            return
        unacked = self._forget_acknowledged()
        groups = self._groups
        if self._backlog_bytes > limit.max_bytes:
            # Later groups may have been acknowledged while an older one waits (for
            # a retransmission, say): count only what is left before dropping any.
            left = deque(g for g in groups if g.stream_id < 0 or unacked(g.stream_id))
            if len(left) < len(groups):
                self._took_since_drop = True
            groups = self._groups = left
            self._backlog_bytes = sum(g.size for g in groups)
        oldest = now - limit.max_age
        if not groups or (self._backlog_bytes <= limit.max_bytes and groups[0].at >= oldest):
            if (
                self.dropping
                and self._took_since_drop
                and self._backlog_bytes <= limit.max_bytes // 2
                and (not groups or groups[0].at >= now - limit.max_age / 2)
            ):
                self._caught_up()
            return
        waiting: _Group | None = None
        while groups and (self._backlog_bytes > limit.max_bytes or groups[0].at < oldest):
            group = groups.popleft()
            if group.key == self._in_flight:
                waiting = group  # the writer task holds it: it goes out as it is
                continue
            self._drop(group)
        if waiting is not None:
            groups.appendleft(waiting)

    def _forget_acknowledged(self) -> Callable[[int], int]:
        """Stop counting the oldest groups once the peer has acknowledged them."""
        groups = self._groups
        unacked = self.conn.unacked_bytes
        while groups and groups[0].stream_id >= 0 and not unacked(groups[0].stream_id):
            self._backlog_bytes -= groups.popleft().size
            self._took_since_drop = True
        return unacked

    def _drop(self, group: _Group) -> None:
        self._backlog_bytes -= group.size
        if group.stream_id >= 0:
            self.conn.reset_stream(group.stream_id, moqt.StreamResetCode.DELIVERY_TIMEOUT)
        else:
            del self._queued_groups[group.key]
            assert group.command is not None
            self._commands.remove(group.command)
        self.groups_dropped += 1
        self._episode_drops += 1
        self._took_since_drop = False
        if not self.dropping:
            self.dropping = True
            limit = self.backlog_limit
            assert limit is not None
            logger.warning(
                "MoQT peer %s is not taking its data: dropping its oldest groups "
                "(over %d bytes or %.1f s unacknowledged)",
                self.conn.remote_address,
                limit.max_bytes,
                limit.max_age,
            )

    def _caught_up(self) -> None:
        """The peer takes its data again: the episode of drops is over."""
        if self.dropping:
            self.dropping = False
            logger.info(
                "MoQT peer %s takes its data again (%d groups dropped meanwhile)",
                self.conn.remote_address,
                self._episode_drops,
            )
            self._episode_drops = 0

    def _handed_over(self, key: int, stream_id: int) -> None:
        group = self._queued_groups.pop(key, None)
        if group is not None:
            group.stream_id = stream_id
            group.command = None

    def _session_closed(self) -> bool:
        return self.session.state is moqt.SessionState.CLOSED

    def _write_nowait(self) -> bool:
        """Hand everything queued to the transport without waiting; False if
        something has to wait (it stays queued, in order, for the writer task)."""
        if self.session.state is moqt.SessionState.CLOSED:
            return False
        self._writing = True
        try:
            self._take()
            if self._session_closed():  # by the backlog limit
                return False
            if self._control_out:
                if self._control is None:
                    return False
                try:
                    self._control.send_nowait(bytes(self._control_out))
                except anyio.WouldBlock:
                    return False
                self._control_out.clear()
            commands = self._commands
            while commands:
                command = commands.popleft()
                if not self._apply_nowait(command):
                    commands.appendleft(command)
                    return False
            self._send_datagrams()
            return True
        except _BROKEN:
            self._connection_lost()
            return True
        finally:
            self._writing = False

    async def _write_loop(self) -> None:
        session = self.session
        while True:
            await self._wake.wait()
            self._wake = anyio.Event()
            self._writing = True
            try:
                while True:
                    if session.state is moqt.SessionState.CLOSED and not self._lost:
                        await self._close_for(session.termination)
                        return
                    self._take()
                    if self._session_closed() and not self._lost:
                        continue  # closed by the backlog limit: close the connection
                    if not (self._control_out or self._commands or self._datagrams_out):
                        break
                    # Cancelled if the session is closed meanwhile (the peer may
                    # never make room for what is being written).
                    scope = self._write_scope = anyio.CancelScope()
                    try:
                        with scope:
                            if self._control_out:
                                data = bytes(self._control_out)
                                self._control_out.clear()
                                if self._control is not None:
                                    await self._control.send(data)
                            while self._commands:
                                await self._apply(self._commands.popleft())
                            self._send_datagrams()
                    except _BROKEN:
                        self._connection_lost()
                        return
            finally:
                self._write_scope = None
                self._writing = False
            self._mark_idle()
            if self.on_drained is not None and not self._lost:
                try:
                    self.on_drained()
                except Exception:
                    logger.exception("MoQT link drain callback failed")
            if self._close_request is not None and not self._lost:
                code, reason = self._close_request
                await self.conn.aclose(code, reason)
                self._connection_lost()
                return

    def _send_datagrams(self) -> None:
        while self._datagrams_out:
            datagram = self._datagrams_out.popleft()
            try:
                self.conn.send_datagram(datagram)
            except ValueError:
                logger.debug("dropped a datagram larger than the path allows")

    async def _close_for(self, termination: moqt.Termination | None) -> None:
        code, reason = (
            (termination.error_code, termination.reason) if termination else (0, "closed")
        )
        self._mark_idle()
        await self.conn.aclose(code, reason, linger=1.0)
        self._connection_lost()

    def _apply_nowait(self, command: moqt.StreamCommand) -> bool:
        """Apply one command if that needs no waiting; False (nothing lost) if it does:
        the peer's stream limit allows no new stream, or the stream's backlog is full."""
        if isinstance(command, moqt.StreamWrite):
            stream = self._out.get(command.key)
            if command.open and command.end and len(command.data) <= SEND_CHUNK:
                # A whole stream in one write (an audio frame): no stream object.
                try:
                    stream_id = self.conn.send_uni_stream_nowait(command.data)
                except anyio.WouldBlock:
                    return False
                self._record(command.key, stream_id)
                return True
            if command.open and stream is None:
                try:
                    stream = self.conn.open_uni_stream_nowait()
                except anyio.WouldBlock:
                    return False
                self._opened(command.key, stream)
            if stream is None:
                return True
            try:
                if command.data:
                    try:
                        stream.send_nowait(command.data, eof=command.end)
                    except anyio.WouldBlock:
                        return False
                if command.end:
                    del self._out[command.key]
                    stream.send_eof_nowait()
            except (anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
                self._stream_failed(command.key, exc)
        elif isinstance(command, moqt.StreamReset):
            out = self._out.pop(command.key, None)
            if out is not None:
                out.reset(command.error_code)
        else:
            incoming = self._in.pop(command.key, None)
            if incoming is not None:
                incoming.stop_sending(command.error_code)
        return True

    async def _apply(self, command: moqt.StreamCommand) -> None:
        if self._apply_nowait(command):
            return
        # Only a stream write waits: for the peer to allow another stream, or for
        # room in the stream's backlog.
        assert isinstance(command, moqt.StreamWrite)
        self._in_flight = command.key
        try:
            stream = self._out.get(command.key)
            if stream is None:
                stream = await self.conn.open_uni_stream()
                self._opened(command.key, stream)
            if command.data:
                await stream.send(command.data)
            if command.end:
                del self._out[command.key]
                stream.send_eof_nowait()
        except (anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
            self._stream_failed(command.key, exc)
        finally:
            self._in_flight = None

    def _opened(self, key: int, stream: SendStream) -> None:
        self._out[key] = stream
        self._record(key, stream.stream_id)

    def _record(self, key: int, stream_id: int) -> None:
        """Outgoing stream ``key`` went to the transport as ``stream_id``."""
        stream_ids = self.stream_ids
        if stream_ids is not None and key in stream_ids:
            stream_ids[key] = stream_id
        if self._queued_groups:
            self._handed_over(key, stream_id)

    def _stream_failed(self, key: int, exc: BaseException) -> None:
        """A write to outgoing stream ``key`` failed: the peer stopped it (tell the
        session), it was closed, or the connection is gone (raise that)."""
        self._out.pop(key, None)
        if isinstance(exc, anyio.BrokenResourceError):
            if isinstance(exc.__cause__, TransportStopSending):
                self.session.receive_stop_sending(key, exc.__cause__.code)
                return
            raise exc
        if self.conn.closed:
            raise exc


async def wait_any(*events: anyio.Event) -> None:
    """Return as soon as one of ``events`` is set."""
    if any(event.is_set() for event in events):
        await anyio.lowlevel.checkpoint()
        return
    async with anyio.create_task_group() as tg:

        async def wait(event: anyio.Event) -> None:
            await event.wait()
            tg.cancel_scope.cancel()

        for event in events:
            tg.start_soon(wait, event)
