"""One QUIC connection driven by anyio: raw QUIC or a WebTransport session.

:class:`Connection` wraps an aioquic ``QuicConnection`` (sans-IO). The owner (the
client context manager or the server) feeds it received UDP datagrams through
:meth:`Connection.datagram_received` and runs :meth:`Connection.run` in a task
group; ``run`` transmits what aioquic has to send and fires its timers. Every
other method is called from user tasks in the same event loop.

WebTransport: after ALPN ``h3`` an ``H3Connection`` handles HTTP/3 (SETTINGS,
QPACK, the extended CONNECT), but every WebTransport stream is handled here and
never reaches it: peer streams are classified by their first bytes (0x54 for
unidirectional, the 0x41 signal for bidirectional streams), and streams opened
locally are routed by stream id. aioquic 1.7.2's ``H3Connection`` would
otherwise parse the peer's data on a locally opened WebTransport bidirectional
stream as HTTP/3 frames and lose it.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import math
import os
import socket
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
from aioquic.h3.connection import ErrorCode as H3ErrorCode
from aioquic.h3.connection import H3Connection, Setting
from aioquic.h3.events import DatagramReceived, DataReceived, H3Event, HeadersReceived
from aioquic.quic import events as quic_events
from aioquic.quic.connection import stream_is_client_initiated, stream_is_unidirectional
from aioquic.quic.packet import QuicErrorCode

from . import _wt
from ._quic import FlowControlledQuicConnection
from .certs import fingerprint_sha256
from .errors import (
    CertificateError,
    ConnectError,
    ConnectionLost,
    HandshakeError,
    StopSending,
    StreamReset,
    TransportError,
    WebTransportRejected,
)
from .streams import SEND_CHUNK, ReceiveStream, SendStream, Signal, Stream

logger = logging.getLogger(__name__)

Headers = list[tuple[bytes, bytes]]
SendDatagram = Callable[[bytes, Any], Awaitable[None]]
SendDatagramNowait = Callable[[bytes, Any], bool]
"""Send one UDP datagram without waiting; ``False`` if the socket would block."""
AnyStream = Stream | SendStream | ReceiveStream

ACCEPT_BACKLOG = 256
"""Peer streams waiting for accept_stream(); beyond that new streams are refused."""

DATAGRAM_BACKLOG = 256
"""Received datagrams waiting for receive_datagram(); beyond that they are dropped."""

SEND_DATAGRAM_BACKLOG = 256
"""Datagrams queued for sending; beyond that send_datagram() drops them."""

PENDING_WT_STREAMS = 64
"""WebTransport streams that may arrive before their session is established."""

TRANSMIT_COALESCE = 0.001
"""Longest a received packet waits for the transmit pass that answers it (seconds);
aioquic delays its ACKs by as much (1 ms), so the pass that sends the ACK serves all
packets received in between. Data the application sends goes out at once."""

_PACKET_OVERHEAD = 50
"""Short header (with a 20-byte connection id), packet number, AEAD tag, frame header."""

_CERTIFICATE_ALERTS = frozenset({42, 43, 44, 45, 46, 48})
"""TLS alerts (bad/unsupported/revoked/expired/unknown certificate, unknown CA)."""


def socket_sender(
    sock: anyio.abc.UDPSocket, busy: Callable[[], bool] | None = None
) -> SendDatagramNowait | None:
    """A :data:`SendDatagramNowait` for ``sock``, or ``None`` if it has no such path.

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


RECEIVE_BATCH = 64
"""Datagrams a socket reader takes per wake-up (beyond the one it waited for)."""


class SocketReceiver:
    """Reads queued UDP datagrams of a socket without waiting (asyncio only).

    asyncio's datagram transport reads one datagram per event-loop iteration, so
    a socket shared by many connections (a server's, or a busy client's) would
    be read far slower than packets arrive. After each awaited receive, the
    reader takes what else the kernel holds through a duplicate of the socket;
    the transport's own read then finds nothing and waits for the next one.
    """

    def __init__(self, sock: anyio.abc.UDPSocket) -> None:
        self._dup: socket.socket | None = None
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # trio: its sockets are read one await at a time
            return
        raw = sock.extra(anyio.abc.SocketAttribute.raw_socket)
        dup = socket.socket(raw.family, raw.type, raw.proto, fileno=os.dup(raw.fileno()))
        dup.setblocking(False)
        self._dup = dup

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
    sock: anyio.abc.UDPSocket, handle: Callable[[bytes, Any], Awaitable[None]]
) -> None:
    """Hand every datagram ``sock`` receives to ``handle`` until the socket closes;
    what is queued behind the awaited one is read in the same wake-up (asyncio)."""
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


def _clock() -> Callable[[], float]:
    """The event loop's clock: ``anyio.current_time`` without its per-call lookup."""
    try:
        return asyncio.get_running_loop().time
    except RuntimeError:
        return anyio.current_time


class ConnectionKind(enum.Enum):
    """How the session runs: directly on QUIC, or as a WebTransport session."""

    QUIC = "quic"
    WEBTRANSPORT = "webtransport"


PathFilter = Callable[[str], bool]


class Connection:
    """A QUIC connection or WebTransport session: streams and datagrams.

    Obtained from :func:`clutchcall.transport.connect` or passed to a server
    handler. Peer-opened streams come from :meth:`accept_stream`: a
    :class:`Stream` for bidirectional ones, a :class:`ReceiveStream` for
    unidirectional ones.
    """

    def __init__(
        self,
        quic: FlowControlledQuicConnection,
        send: SendDatagram,
        *,
        is_client: bool,
        path_filter: PathFilter | None = None,
        keepalive: float | None = None,
        send_nowait: SendDatagramNowait | None = None,
    ) -> None:
        self._quic = quic
        self._keepalive = keepalive
        self._send = send
        self._send_nowait = send_nowait
        self._now: Callable[[], float] = _clock()
        self._is_client = is_client
        self._path_filter = path_filter
        self._h3: H3Connection | None = None
        self._kind: ConnectionKind | None = None
        self._alpn: str | None = None
        self._session_id: int | None = None
        self._session_ready = False
        self._session_error: BaseException | None = None
        self._path: str | None = None
        self._request_headers: Headers = []
        self._peer_close: tuple[int, str] | None = None
        self._capsules = bytearray()

        self._streams: dict[int, AnyStream] = {}
        self._sniffing: dict[int, bytearray] = {}
        self._h3_streams: set[int] = set()
        self._pending_wt: list[tuple[Stream | ReceiveStream, int]] = []

        self._accepted: deque[Stream | ReceiveStream] = deque()
        self._accept_signal = Signal()
        self._datagrams: deque[bytes] = deque()
        self._datagram_signal = Signal()
        self.datagrams_dropped = 0
        """Datagrams dropped because a queue (incoming or outgoing) was full."""

        self._wakeup_event = anyio.Event()
        self._wait_scope: anyio.CancelScope | None = None
        self._transmit_count = 0
        #: A transmit pass is handing datagrams to the socket (it may await on the way).
        self._sending = False
        self._progress = Signal()
        self._handshake_done = anyio.Event()
        self._session_done = anyio.Event()
        self._terminated = anyio.Event()
        self._ended = False
        self._lost: ConnectionLost | None = None
        self._closed_locally = False
        self._close_requested = False
        self.event_listener: Callable[[quic_events.QuicEvent], None] | None = None
        """Sees every QUIC event first (the server tracks connection ids with it)."""
        self.stream_listener: Callable[[], None] | None = None
        """Called after a received datagram opened peer streams: the owner may take
        them with :meth:`accept_stream_nowait` at once, without a scheduling round."""
        self.complete_stream_handler: Callable[[int, bytes], None] | None = None
        """Called with ``(stream_id, data)`` for a peer unidirectional stream that
        arrived whole (its data and FIN in one go): such a stream is never accepted
        as a :class:`ReceiveStream`. Lets the owner take many short streams (one
        audio frame each) without an object, a queue entry and a read per stream."""

    # ----------------------------------------------------------------- public

    @property
    def kind(self) -> ConnectionKind:
        """``QUIC`` or ``WEBTRANSPORT``."""
        if self._kind is None:
            raise TransportError("the session is not established yet")
        return self._kind

    @property
    def alpn(self) -> str | None:
        """The negotiated ALPN protocol (``moq-00``, ``h3``...)."""
        return self._alpn

    @property
    def is_client(self) -> bool:
        return self._is_client

    @property
    def path(self) -> str | None:
        """The WebTransport request path (``None`` for raw QUIC)."""
        return self._path

    @property
    def request_headers(self) -> Headers:
        """The WebTransport CONNECT request headers (empty for raw QUIC)."""
        return list(self._request_headers)

    @property
    def session_id(self) -> int | None:
        """The WebTransport session id (its CONNECT stream id); ``None`` for raw QUIC."""
        return self._session_id

    @property
    def remote_address(self) -> Any:
        """The peer's (host, port)."""
        return self._quic.get_peer_address()

    @property
    def closed(self) -> bool:
        """Whether the connection ended (closed locally, by the peer or lost)."""
        return self._closed_locally or self._lost is not None

    @property
    def close_reason(self) -> ConnectionLost | None:
        """Why the connection ended, or ``None`` while it is open."""
        return self._lost

    @property
    def max_datagram_size(self) -> int:
        """Largest payload :meth:`send_datagram` accepts."""
        limit = self._quic._max_datagram_size - _PACKET_OVERHEAD
        if self._h3 is not None and self._session_id is not None:
            limit -= 8 if self._session_id // 4 >= 1 << 30 else 4
        remote = self._quic.remote_max_datagram_frame_size
        if remote is None:
            return 0
        return max(0, min(limit, remote - 9))

    async def open_bidi_stream(self) -> Stream:
        """Open a bidirectional stream (the peer sees it once data is sent)."""
        await anyio.lowlevel.checkpoint()
        self._check_open()
        stream_id = self._open_local_stream(unidirectional=False)
        stream = Stream(self, stream_id)
        self._streams[stream_id] = stream
        await self._wait_unblocked(stream_id)
        return stream

    async def open_uni_stream(self) -> SendStream:
        """Open a unidirectional stream (the peer sees it once data is sent)."""
        await anyio.lowlevel.checkpoint()
        self._check_open()
        stream_id = self._open_local_stream(unidirectional=True)
        stream = SendStream(self, stream_id)
        self._streams[stream_id] = stream
        await self._wait_unblocked(stream_id)
        return stream

    def open_uni_stream_nowait(self) -> SendStream:
        """Like :meth:`open_uni_stream`, but raise ``anyio.WouldBlock`` instead of
        waiting for the peer to allow another stream (nothing is opened then).

        Lets a writer open, fill and finish many short streams in one go, so that
        they leave together in as few packets as possible.
        """
        self._check_open()
        if not self._quic.can_open_stream(unidirectional=True):
            raise anyio.WouldBlock
        stream_id = self._open_local_stream(unidirectional=True)
        stream = SendStream(self, stream_id)
        self._streams[stream_id] = stream
        return stream

    def send_uni_stream_nowait(self, data: bytes) -> int:
        """Open a unidirectional stream, write ``data`` and finish it, in one go;
        returns the stream ID.

        For many short streams (an audio frame each): no :class:`SendStream` is
        made, as nothing more can be done with the stream. Raises
        ``anyio.WouldBlock`` (nothing opened) if the peer allows no new stream now,
        and ``ValueError`` for data over one send chunk (open a stream for that).
        """
        self._check_open()
        if len(data) > SEND_CHUNK:
            raise ValueError(f"{len(data)} bytes is more than one send chunk ({SEND_CHUNK})")
        quic = self._quic
        if not quic.can_open_stream(unidirectional=True):
            raise anyio.WouldBlock
        if self._h3 is not None:
            stream_id = self._open_local_stream(unidirectional=True)
        else:
            stream_id = quic.get_next_available_stream_id(is_unidirectional=True)
        self._send_stream_data(stream_id, data, end_stream=True)
        return stream_id

    def unacked_bytes(self, stream_id: int) -> int:
        """Bytes written to local stream ``stream_id`` that the peer has not yet
        acknowledged (0 once it is finished or reset, or for an unknown stream)."""
        return self._quic.send_buffer_size(stream_id)

    def reset_stream(self, stream_id: int, code: int = 0) -> None:
        """Abort local stream ``stream_id`` (RESET_STREAM with ``code``); what it had
        not sent yet is dropped. For streams without a :class:`SendStream`, such as
        those :meth:`send_uni_stream_nowait` sent; a no-op once the stream is done."""
        self._reset_stream(stream_id, code)

    def send_pending(self, stream_id: int) -> bool:
        """Whether data or the end written to local stream ``stream_id`` still waits
        for the peer's acknowledgement.

        False once the peer acknowledged all of it, and for a stream that was reset.
        Still answers after the connection ended: what the peer never acknowledged
        stays pending, so the owner can tell what may not have arrived.
        """
        return self._quic.send_pending(stream_id)

    async def accept_stream(self) -> Stream | ReceiveStream:
        """Wait for the next stream opened by the peer."""
        await anyio.lowlevel.checkpoint()
        while True:
            try:
                return self.accept_stream_nowait()
            except anyio.WouldBlock:
                await self._accept_signal.wait()

    def accept_stream_nowait(self) -> Stream | ReceiveStream:
        """The next stream opened by the peer, or ``anyio.WouldBlock`` if none is waiting.

        Lets a reader take every stream a burst of packets opened in one go,
        instead of one per scheduling round.
        """
        if self._closed_locally:
            raise anyio.ClosedResourceError
        if self._accepted:
            return self._accepted.popleft()
        if self._lost is not None:
            raise anyio.BrokenResourceError from self._lost
        raise anyio.WouldBlock

    def send_datagram(self, data: bytes | bytearray | memoryview) -> None:
        """Send an unreliable datagram (dropped if the send queue is full).

        Raises ``ValueError`` if ``data`` exceeds :attr:`max_datagram_size`.
        """
        self._check_open()
        payload = bytes(data)
        limit = self.max_datagram_size
        if self._quic.remote_max_datagram_frame_size is None:
            raise TransportError("the peer does not accept datagrams")
        if len(payload) > limit:
            raise ValueError(f"datagram of {len(payload)} bytes exceeds the limit of {limit}")
        if self._quic.pending_datagrams >= SEND_DATAGRAM_BACKLOG:
            self.datagrams_dropped += 1
            return
        if self._h3 is not None and self._session_id is not None:
            self._h3.send_datagram(self._session_id, payload)
        else:
            self._quic.send_datagram_frame(payload)
        self._wakeup()

    async def receive_datagram(self) -> bytes:
        """Wait for the next datagram from the peer."""
        await anyio.lowlevel.checkpoint()
        while True:
            if self._closed_locally:
                raise anyio.ClosedResourceError
            if self._datagrams:
                return self._datagrams.popleft()
            if self._lost is not None:
                raise anyio.BrokenResourceError from self._lost
            await self._datagram_signal.wait()

    async def aclose(self, code: int = 0, reason: str = "", *, linger: float = 2.0) -> None:
        """Close the connection (or WebTransport session) with ``code`` and ``reason``.

        Data already queued on streams gets up to ``linger`` seconds to be
        acknowledged first. Afterwards every operation raises
        ``ClosedResourceError``; the peer sees ``BrokenResourceError``.
        """
        if self._closed_locally:
            await anyio.lowlevel.checkpoint()
            return
        if self._lost is not None:
            self._closed_locally = True
            await anyio.lowlevel.checkpoint()
            return
        self._close_requested = True
        with anyio.CancelScope(shield=True):
            with anyio.move_on_after(max(linger, 0.2)):
                # Send what aioquic already has (a handshake's last flight, say):
                # once the close is pending, aioquic only sends CONNECTION_CLOSE.
                await self._flush()
            with anyio.move_on_after(linger):
                await self._wait_sent()
                if self._h3 is not None and self._session_ready and self._session_id is not None:
                    try:
                        self._h3.send_data(
                            self._session_id, _wt.encode_close_capsule(code, reason), True
                        )
                    except Exception:
                        logger.debug("could not send CLOSE_WEBTRANSPORT_SESSION", exc_info=True)
                    self._wakeup()
                    await self._wait_sent(self._session_id)
            self._closed_locally = True
            if self._lost is None:
                quic_code = H3ErrorCode.H3_NO_ERROR if self._h3 is not None else code
                self._quic.close(error_code=quic_code, reason_phrase=reason)
                self._wakeup()
                with anyio.move_on_after(0.5):
                    await self.wait_close_sent()
            self._mark_lost(ConnectionLost(code, reason, by_peer=False))

    def __repr__(self) -> str:
        kind = self._kind.value if self._kind is not None else "connecting"
        return f"<Connection {kind} alpn={self._alpn!r} peer={self.remote_address!r}>"

    # ------------------------------------------------------- owner interface

    def datagram_received(self, data: bytes, addr: Any) -> None:
        """Feed one UDP datagram from the peer (called by the socket reader)."""
        if self._ended:
            return
        try:
            self._quic.receive_datagram(data, addr, now=self._now())
        except Exception:
            logger.debug("dropped a datagram aioquic could not handle", exc_info=True)
            return
        self._process_events()
        if self._accepted and self.stream_listener is not None:
            try:
                self.stream_listener()
            except Exception:
                logger.exception("stream listener failed")
        scope = self._wait_scope
        if scope is not None and self._handshake_done.is_set():
            # What a received packet calls for (its ACK, a retransmission its ACK
            # revealed, more credit) goes out with the next transmit, at most
            # TRANSMIT_COALESCE from now: a burst of packets shares one pass.
            soon = self._now() + TRANSMIT_COALESCE
            if scope.deadline > soon:
                scope.deadline = soon
        else:
            self._wakeup()
        self._progress.notify()

    async def run(self) -> None:
        """Transmit and run timers until the connection has fully terminated."""
        next_ping = math.inf
        if self._keepalive:
            next_ping = self._now() + self._keepalive
        try:
            while not self._ended:
                self._wakeup_event = anyio.Event()
                await self._transmit()
                self._sweep()
                if self._ended:
                    break
                timer_at = self._quic.get_timer()
                deadline = math.inf if timer_at is None else timer_at
                with anyio.CancelScope(deadline=min(deadline, next_ping)) as scope:
                    self._wait_scope = scope
                    try:
                        await self._wakeup_event.wait()
                    finally:
                        self._wait_scope = None
                now = self._now()
                if timer_at is not None and now >= timer_at:
                    self._quic.handle_timer(now=now)
                    self._process_events()
                    self._progress.notify()
                if self._keepalive and now >= next_ping:
                    # A PING keeps a quiet but healthy connection from idling out.
                    if self._handshake_done.is_set() and self._lost is None:
                        self._quic.send_ping(0)
                    next_ping = now + self._keepalive
        except Exception:
            logger.exception("QUIC connection driver failed")
            self._mark_lost(
                ConnectionLost(QuicErrorCode.INTERNAL_ERROR, "driver failed", by_peer=False)
            )
        finally:
            self._ended = True
            self._mark_lost(
                ConnectionLost(QuicErrorCode.INTERNAL_ERROR, "terminated", by_peer=False)
            )
            self._terminated.set()
            self._progress.notify()

    def abort(self, code: int = QuicErrorCode.NO_ERROR, reason: str = "") -> None:
        """Close without lingering (used when the owner shuts down)."""
        if self._lost is None and not self._ended:
            self._close_requested = True
            self._quic.close(error_code=code, reason_phrase=reason)
            self._wakeup()
            self._mark_lost(ConnectionLost(code, reason, by_peer=False))

    async def wait_close_sent(self) -> None:
        """Wait until a requested CONNECTION_CLOSE has been handed to the socket."""
        # aioquic hands the close over before the socket has it: a send that awaits
        # (trio, or a full buffer) must finish too, else cancelling the driver loses it.
        while (self._quic.close_pending or self._sending) and not self._ended:
            await self._progress.wait()

    async def wait_terminated(self) -> None:
        await self._terminated.wait()

    async def wait_session(self) -> bool:
        """Server side: wait until a session is established (True) or never will be."""
        await self._session_done.wait()
        return self._session_ready

    async def establish_client_session(
        self,
        *,
        authority: str,
        path: str,
        headers: Sequence[tuple[bytes, bytes]],
        pins: frozenset[str],
    ) -> None:
        """Client side: wait for the handshake, check pins, run the CONNECT if h3."""
        await self._handshake_done.wait()
        if self._alpn is None or self._lost is not None:
            raise self._handshake_error()
        if pins:
            certificate = self._quic.peer_certificate()
            fingerprint = fingerprint_sha256(certificate) if certificate is not None else ""
            if fingerprint not in pins:
                self.abort(QuicErrorCode.CRYPTO_ERROR + 42, "certificate fingerprint mismatch")
                raise CertificateError(
                    f"server certificate SHA-256 {fingerprint or '(none)'} is not pinned"
                )
        h3 = self._h3
        if h3 is None:
            # Let our last handshake flight leave before handing the connection out.
            await self._flush()
            return
        while h3.received_settings is None:
            if self._lost is not None:
                raise ConnectError("connection closed before HTTP/3 SETTINGS") from self._lost
            await self._progress.wait()
        settings = h3.received_settings
        if settings.get(Setting.ENABLE_CONNECT_PROTOCOL) != 1:
            raise ConnectError("the server does not support extended CONNECT (WebTransport)")
        session_id = self._quic.get_next_available_stream_id()
        self._session_id = session_id
        h3.send_headers(
            session_id,
            [
                (b":method", b"CONNECT"),
                (b":scheme", b"https"),
                (b":authority", authority.encode()),
                (b":path", path.encode()),
                (b":protocol", b"webtransport"),
                (b"sec-webtransport-http3-draft02", b"1"),
                *headers,
            ],
        )
        self._wakeup()
        await self._session_done.wait()
        if self._session_error is not None:
            raise self._session_error
        if not self._session_ready:
            raise ConnectError("connection closed during the WebTransport CONNECT") from self._lost

    # ------------------------------------------------------ stream plumbing

    def _check_open(self) -> None:
        if self._closed_locally:
            raise anyio.ClosedResourceError
        if self._lost is not None:
            raise anyio.BrokenResourceError from self._lost

    def _wakeup(self) -> None:
        self._wakeup_event.set()

    def _wire_code(self, code: int) -> int:
        return _wt.app_code_to_h3(code) if self._h3 is not None else code

    def _app_code(self, code: int) -> int:
        return _wt.h3_code_to_app(code) if self._h3 is not None else code

    def _open_local_stream(self, *, unidirectional: bool) -> int:
        if self._h3 is not None:
            if self._session_id is None or not self._session_ready:
                raise TransportError("the WebTransport session is not established")
            stream_id = self._h3.create_webtransport_stream(
                self._session_id, is_unidirectional=unidirectional
            )
        else:
            stream_id = self._quic.get_next_available_stream_id(is_unidirectional=unidirectional)
            # Creates the stream in aioquic so that the next call gets a new id.
            self._quic.send_stream_data(stream_id, b"")
        self._wakeup()
        return stream_id

    async def _wait_unblocked(self, stream_id: int) -> None:
        while self._quic.stream_is_blocked(stream_id):
            self._check_open()
            await self._progress.wait()

    async def _wait_send_room(self, stream_id: int, limit: int, check: Callable[[], None]) -> None:
        while True:
            check()
            if self._quic.send_buffer_size(stream_id) < limit:
                return
            await self._progress.wait()

    async def _flush(self) -> None:
        """Wait for the driver to run one more transmit cycle."""
        target = self._transmit_count + 1
        self._wakeup()
        while self._transmit_count < target and not self._ended:
            await self._progress.wait()

    async def _wait_sent(self, stream_id: int | None = None) -> None:
        """Wait until queued stream data (of one or all streams) is acknowledged;
        all streams include those written without a stream object
        (:meth:`send_uni_stream_nowait`)."""
        quic = self._quic
        while self._lost is None:
            ids = [stream_id] if stream_id is not None else list(quic._streams)
            if not any(quic.send_pending(i) for i in ids):
                return
            await self._progress.wait()

    def _send_stream_data(self, stream_id: int, data: bytes, *, end_stream: bool) -> None:
        try:
            self._quic.send_stream_data(stream_id, data, end_stream)
        except (ValueError, AssertionError) as exc:
            raise anyio.BrokenResourceError from exc
        self._wakeup()

    def _reset_stream(self, stream_id: int, code: int) -> None:
        if self._lost is not None:
            return
        try:
            self._quic.reset_stream(stream_id, self._wire_code(code))
        except (ValueError, AssertionError):
            logger.debug("reset of stream %d ignored", stream_id, exc_info=True)
        self._wakeup()

    def _stop_stream(self, stream_id: int, code: int) -> None:
        if self._lost is not None:
            return
        try:
            self._quic.stop_stream(stream_id, self._wire_code(code))
        except (ValueError, AssertionError):
            logger.debug("stop of stream %d ignored", stream_id, exc_info=True)
        self._wakeup()

    def _refuse_stream(self, stream: Stream | ReceiveStream, h3_code: int) -> None:
        """Turn away a peer stream with a raw (unmapped) error code."""
        stream_id = stream.stream_id
        receive_side = stream._receive_side
        if not receive_side.done:
            with contextlib.suppress(ValueError, AssertionError):
                self._quic.stop_stream(stream_id, h3_code)
        receive_side._drop()
        receive_side._closed = True
        if isinstance(stream, Stream):
            stream._send_side._reset = True
            with contextlib.suppress(ValueError, AssertionError):
                self._quic.reset_stream(stream_id, h3_code)
        self._wakeup()

    async def _transmit(self) -> None:
        datagrams = self._quic.datagrams_to_send(now=self._now())
        # Hand the datagrams to the socket without a scheduling round per datagram;
        # once the socket would block, the rest wait their turn in order.
        send_nowait = self._send_nowait
        self._sending = True
        try:
            for data, addr in datagrams:
                try:
                    if send_nowait is None or not send_nowait(data, addr):
                        send_nowait = None
                        await self._send(data, addr)
                except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
                    logger.debug("could not send a datagram to %r", addr, exc_info=True)
        finally:
            self._sending = False
        self._transmit_count += 1
        self._progress.notify()

    def _sweep(self) -> None:
        """Forget streams that aioquic has finished and discarded."""
        live = self._quic._streams
        for stream_id in [i for i in self._streams if i not in live]:
            del self._streams[stream_id]

    # -------------------------------------------------------------- events

    def _process_events(self) -> None:
        while (event := self._quic.next_event()) is not None:
            try:
                if self.event_listener is not None:
                    self.event_listener(event)
                self._handle_event(event)
            except Exception:
                logger.exception("failed to handle %s; closing the connection", event)
                self._quic.close(QuicErrorCode.INTERNAL_ERROR, reason_phrase="internal error")
        if self._lost is None and self._quic.closing:
            info = self._quic.close_info() or (QuicErrorCode.INTERNAL_ERROR, "")
            self._mark_lost(ConnectionLost(info[0], info[1], by_peer=self._quic.closed_by_peer))

    def _handle_event(self, event: quic_events.QuicEvent) -> None:
        if isinstance(event, quic_events.StreamDataReceived):
            self._on_stream_data(event)
        elif isinstance(event, quic_events.DatagramFrameReceived):
            if self._h3 is not None:
                self._on_h3_events(self._h3.handle_event(event))
            else:
                self._deliver_datagram(event.data)
        elif isinstance(event, quic_events.StreamReset):
            self._on_stream_reset(event)
        elif isinstance(event, quic_events.StopSendingReceived):
            self._on_stop_sending(event)
        elif isinstance(event, quic_events.HandshakeCompleted):
            self._on_handshake(event.alpn_protocol)
        elif isinstance(event, quic_events.ConnectionTerminated):
            self._ended = True
            self._mark_lost(
                ConnectionLost(
                    event.error_code,
                    event.reason_phrase,
                    by_peer=self._quic.closed_by_peer,
                )
            )

    def _on_handshake(self, alpn: str | None) -> None:
        self._alpn = alpn
        if alpn == "h3":
            self._h3 = H3Connection(self._quic, enable_webtransport=True)
        else:
            self._kind = ConnectionKind.QUIC
            self._session_ready = True
            self._session_done.set()
        self._handshake_done.set()

    def _is_local(self, stream_id: int) -> bool:
        return stream_is_client_initiated(stream_id) == self._is_client

    def _on_stream_data(self, event: quic_events.StreamDataReceived) -> None:
        stream_id = event.stream_id
        stream = self._streams.get(stream_id)
        if stream is not None:
            if not isinstance(stream, SendStream):
                stream._receive_side.feed(event.data, event.end_stream)
            return
        if self._h3 is None:
            if not self._is_local(stream_id):
                self._new_peer_stream(stream_id, event.data, event.end_stream, None)
            return
        if stream_id in self._h3_streams or self._is_local(stream_id):
            self._feed_h3(event)
            return
        # A new peer stream: WebTransport (handled here) or HTTP/3's own?
        buffered = self._sniffing.pop(stream_id, bytearray()) + event.data
        parsed = _wt.parse_stream_header(
            bytes(buffered), unidirectional=stream_is_unidirectional(stream_id)
        )
        if parsed is None and not event.end_stream:
            self._sniffing[stream_id] = buffered
            return
        if parsed is None or parsed[0] is None:
            self._h3_streams.add(stream_id)
            self._feed_h3(
                quic_events.StreamDataReceived(
                    data=bytes(buffered), end_stream=event.end_stream, stream_id=stream_id
                )
            )
            return
        session_id, header_length = parsed
        if (
            header_length == len(buffered)
            and not event.end_stream
            and stream_is_unidirectional(stream_id)
        ):
            # Only the WebTransport header so far: surface the stream with its first
            # payload, so that peer streams are accepted in the order data arrived.
            self._sniffing[stream_id] = buffered
            return
        self._new_peer_stream(
            stream_id, bytes(buffered[header_length:]), event.end_stream, session_id
        )

    def _new_peer_stream(
        self, stream_id: int, data: bytes, end_stream: bool, session_id: int | None
    ) -> None:
        stream: Stream | ReceiveStream
        unidirectional = stream_is_unidirectional(stream_id)
        handler = self.complete_stream_handler
        if (
            end_stream
            and unidirectional
            and handler is not None
            and not self._closed_locally
            and (session_id is None or (self._session_ready and session_id == self._session_id))
        ):
            try:
                handler(stream_id, data)
            except Exception:
                logger.exception("complete-stream handler failed")
            return
        stream = ReceiveStream(self, stream_id) if unidirectional else Stream(self, stream_id)
        self._streams[stream_id] = stream
        stream._receive_side.feed(data, end_stream)
        if session_id is None or (self._session_ready and session_id == self._session_id):
            self._enqueue_accept(stream)
        elif not self._session_done.is_set() and len(self._pending_wt) < PENDING_WT_STREAMS:
            self._pending_wt.append((stream, session_id))
        else:
            self._refuse_stream(stream, _wt.BUFFERED_STREAM_REJECTED)

    def _enqueue_accept(self, stream: Stream | ReceiveStream) -> None:
        if self._closed_locally or len(self._accepted) >= ACCEPT_BACKLOG:
            code = H3ErrorCode.H3_EXCESSIVE_LOAD if self._h3 is not None else 0
            self._refuse_stream(stream, code)
            return
        self._accepted.append(stream)
        self._accept_signal.notify()

    def _flush_pending_streams(self) -> None:
        pending, self._pending_wt = self._pending_wt, []
        for stream, session_id in pending:
            if self._session_ready and session_id == self._session_id:
                self._enqueue_accept(stream)
            else:
                self._refuse_stream(stream, _wt.BUFFERED_STREAM_REJECTED)

    def _on_stream_reset(self, event: quic_events.StreamReset) -> None:
        stream_id = event.stream_id
        stream = self._streams.get(stream_id)
        if stream is not None:
            if not isinstance(stream, SendStream):
                error = StreamReset(self._app_code(event.error_code))
                stream._receive_side.fail(error, discard=True)
            return
        if self._sniffing.pop(stream_id, None) is not None:
            return
        if self._h3 is not None:
            if stream_id == self._session_id and self._session_ready:
                self._session_closed_by_peer()
            self._feed_h3(event)

    def _on_stop_sending(self, event: quic_events.StopSendingReceived) -> None:
        stream = self._streams.get(event.stream_id)
        if stream is not None:
            if not isinstance(stream, ReceiveStream):
                stream._send_side.fail(StopSending(self._app_code(event.error_code)))
            self._progress.notify()
            return
        if self._h3 is not None and event.stream_id not in self._sniffing:
            self._feed_h3(event)

    def _feed_h3(self, event: quic_events.QuicEvent) -> None:
        assert self._h3 is not None
        self._on_h3_events(self._h3.handle_event(event))

    def _deliver_datagram(self, data: bytes) -> None:
        if len(self._datagrams) >= DATAGRAM_BACKLOG:
            self.datagrams_dropped += 1
            return
        self._datagrams.append(data)
        self._datagram_signal.notify()

    # ------------------------------------------------------------- HTTP/3

    def _on_h3_events(self, events: list[H3Event]) -> None:
        for event in events:
            if isinstance(event, HeadersReceived):
                if self._is_client:
                    self._on_response(event)
                else:
                    self._on_request(event)
            elif isinstance(event, DataReceived):
                if event.stream_id == self._session_id and self._session_ready:
                    self._on_session_data(event.data, event.stream_ended)
            elif (
                isinstance(event, DatagramReceived)
                and self._session_ready
                and event.stream_id == self._session_id
            ):
                self._deliver_datagram(event.data)

    def _on_response(self, event: HeadersReceived) -> None:
        if event.stream_id != self._session_id or self._session_done.is_set():
            return
        status_text = dict(event.headers).get(b":status", b"0")
        status = int(status_text) if status_text.isdigit() else 0
        if 100 <= status < 200:
            return
        if 200 <= status < 300 and not event.stream_ended:
            self._kind = ConnectionKind.WEBTRANSPORT
            self._session_ready = True
        else:
            self._session_error = WebTransportRejected(status, event.headers)
        self._session_done.set()
        self._flush_pending_streams()

    def _on_request(self, event: HeadersReceived) -> None:
        assert self._h3 is not None
        headers = dict(event.headers)
        stream_id = event.stream_id
        method = headers.get(b":method")
        protocol = headers.get(b":protocol")
        path = headers.get(b":path", b"/").decode("utf-8", "replace")
        if method != b"CONNECT" or protocol != b"webtransport":
            self._respond(stream_id, 404 if method == b"CONNECT" else 405)
            return
        if event.stream_ended:
            self._respond(stream_id, 400)
            return
        if self._session_id is not None:
            self._respond(stream_id, 429)
            return
        if self._path_filter is not None and not self._path_filter(path):
            self._respond(stream_id, 404)
            return
        self._h3.send_headers(
            stream_id, [(b":status", b"200"), (b"sec-webtransport-http3-draft", b"draft02")]
        )
        self._session_id = stream_id
        self._path = path
        self._request_headers = list(event.headers)
        self._kind = ConnectionKind.WEBTRANSPORT
        self._session_ready = True
        self._session_done.set()
        self._flush_pending_streams()
        self._wakeup()

    def _respond(self, stream_id: int, status: int) -> None:
        assert self._h3 is not None
        try:
            self._h3.send_headers(stream_id, [(b":status", str(status).encode())], end_stream=True)
        except Exception:
            logger.debug("could not answer request stream %d", stream_id, exc_info=True)
        self._wakeup()

    def _on_session_data(self, data: bytes, ended: bool) -> None:
        self._capsules += data
        for capsule_type, payload in _wt.parse_capsules(self._capsules):
            if capsule_type == _wt.CLOSE_SESSION_CAPSULE and len(payload) >= 4:
                code = int.from_bytes(payload[:4], "big")
                self._peer_close = (code, payload[4:].decode("utf-8", "replace"))
        if len(self._capsules) > 65536:
            self._capsules.clear()
        if ended:
            self._session_closed_by_peer()

    def _session_closed_by_peer(self) -> None:
        """The peer ended the WebTransport session: end the connection with it."""
        code, reason = self._peer_close or (0, "")
        self._mark_lost(ConnectionLost(code, reason, by_peer=True))
        self._quic.close(error_code=H3ErrorCode.H3_NO_ERROR, reason_phrase=reason)
        self._wakeup()

    # ------------------------------------------------------------ failure

    def _handshake_error(self) -> HandshakeError:
        lost = self._lost
        if lost is None:
            return HandshakeError("handshake did not complete")
        alert = lost.code - QuicErrorCode.CRYPTO_ERROR
        if not lost.by_peer and alert in _CERTIFICATE_ALERTS:
            return CertificateError(
                f"server certificate rejected: {lost.reason or 'verification failed'}",
                code=lost.code,
            )
        who = "peer" if lost.by_peer else "local TLS stack"
        detail = f": {lost.reason}" if lost.reason else ""
        return HandshakeError(
            f"QUIC handshake aborted by {who} (code 0x{lost.code:x}){detail}", code=lost.code
        )

    def _mark_lost(self, lost: ConnectionLost) -> None:
        if self._lost is not None:
            return
        self._lost = lost
        for stream in list(self._streams.values()):
            if not isinstance(stream, SendStream):
                stream._receive_side.fail(lost, discard=False)
            if not isinstance(stream, ReceiveStream):
                stream._send_side.fail(lost)
        for stream, _ in self._pending_wt:
            stream._receive_side.fail(lost, discard=False)
        self._pending_wt.clear()
        self._accept_signal.notify()
        self._datagram_signal.notify()
        self._progress.notify()
        self._handshake_done.set()
        self._session_done.set()
        self._wakeup()
