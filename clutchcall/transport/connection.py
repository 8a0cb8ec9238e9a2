"""One QUIC connection driven by anyio: raw QUIC or a WebTransport session.

:class:`Connection` is what users hold: streams, datagrams and the close. It
makes sense of the QUIC events a :class:`~._driver.Driver` (which feeds aioquic,
transmits and fires timers) hands it; after ALPN ``h3`` a
:class:`~._wt.WebTransport` does the HTTP/3 part. Its streams reach it through
a :class:`~.streams.StreamHost`. Every method is called from tasks of the
event loop the connection runs in.
"""

from __future__ import annotations

import contextlib
import enum
import logging
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import anyio
import anyio.lowlevel
from aioquic.quic import events as quic_events
from aioquic.quic.connection import stream_is_client_initiated, stream_is_unidirectional
from aioquic.quic.packet import QuicErrorCode

from . import _wt
from ._driver import Driver
from .backend import Signal
from .certs import fingerprint_sha256
from .errors import (
    CertificateError,
    ConnectError,
    ConnectionLost,
    HandshakeError,
    StopSending,
    StreamReset,
    TransportError,
)
from .streams import (
    SEND_CHUNK,
    ReceiveSide,
    ReceiveStream,
    SendSide,
    SendStream,
    Stream,
    StreamHost,
)

logger = logging.getLogger(__name__)
T = TypeVar("T")

Headers = _wt.Headers
PathFilter = _wt.PathFilter

ACCEPT_BACKLOG = 256
"""Peer streams waiting for accept_stream(); beyond that new streams are refused."""

DATAGRAM_BACKLOG = 256
"""Received datagrams waiting for receive_datagram(); beyond that they are dropped."""

SEND_DATAGRAM_BACKLOG = 256
"""Datagrams queued for sending; beyond that send_datagram() drops them."""

PENDING_WT_STREAMS = 64
"""WebTransport streams that may arrive before their session is established."""

_PACKET_OVERHEAD = 50
"""Short header (with a 20-byte connection id), packet number, AEAD tag, frame header."""

_CERTIFICATE_ALERTS = frozenset({42, 43, 44, 45, 46, 48})
"""TLS alerts (bad/unsupported/revoked/expired/unknown certificate, unknown CA)."""


class ConnectionKind(enum.Enum):
    """How the session runs: directly on QUIC, or as a WebTransport session."""

    QUIC = "quic"
    WEBTRANSPORT = "webtransport"


class Connection:
    """A QUIC connection or WebTransport session: streams and datagrams.

    Obtained from :func:`clutchcall.transport.connect` or passed to a server
    handler. Peer-opened streams come from :meth:`accept_stream`: a
    :class:`Stream` for bidirectional ones, a :class:`ReceiveStream` for
    unidirectional ones (or see :meth:`set_stream_callbacks`).
    """

    def __init__(
        self, driver: Driver, *, is_client: bool, path_filter: PathFilter | None = None
    ) -> None:
        self._driver = driver
        self._quic = quic = driver.quic
        self._wakeup = driver.wakeup
        self._progress = driver.progress
        self._is_client = is_client
        self._path_filter = path_filter
        self._wt: _wt.WebTransport | None = None
        self._kind: ConnectionKind | None = None
        self._alpn: str | None = None
        self._session_error: BaseException | None = None

        self._host = StreamHost(
            buffered=quic.buffered,
            consumed=self._consumed,
            write=self._send_stream_data,
            reset=self._reset_stream,
            stop=self._stop_stream,
            backlog=quic.send_buffer_size,
            wait_room=self._wait_send_room,
            check_open=self._check_open,
            closed_locally=self._is_closed_locally,
        )
        self._receivers: dict[int, ReceiveSide] = {}
        self._senders: dict[int, SendSide] = {}
        self._pending_wt: list[tuple[Stream | ReceiveStream, ReceiveSide, SendSide | None, int]]
        self._pending_wt = []

        self._accepted: deque[Stream | ReceiveStream] = deque()
        self._accept_signal = Signal()
        self._datagrams: deque[bytes] = deque()
        self._datagram_signal = Signal()
        self.datagrams_dropped = 0
        """Datagrams dropped because a queue (incoming or outgoing) was full."""

        self._handshake_done = anyio.Event()
        self._session_done = anyio.Event()
        self._lost: ConnectionLost | None = None
        self._closed_locally = False
        self._streams_arrived: Callable[[], None] | None = None
        self._whole_stream: Callable[[int, bytes], None] | None = None
        driver.bind(
            on_event=self._handle_event,
            after_events=self._after_events,
            after_transmit=self._sweep,
            finished=self._driver_finished,
        )

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
        return None if self._wt is None else self._wt.path

    @property
    def request_headers(self) -> Headers:
        """The WebTransport CONNECT request headers (empty for raw QUIC)."""
        return [] if self._wt is None else list(self._wt.request_headers)

    @property
    def session_id(self) -> int | None:
        """The WebTransport session id (its CONNECT stream id); ``None`` for raw QUIC."""
        return None if self._wt is None else self._wt.session_id

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
        limit = self._quic.max_packet_size - _PACKET_OVERHEAD
        if self._wt is not None:
            limit -= self._wt.datagram_overhead
        remote = self._quic.remote_max_datagram_frame_size
        if remote is None:
            return 0
        return max(0, min(limit, remote - 9))

    def set_stream_callbacks(
        self,
        *,
        arrived: Callable[[], None] | None = None,
        whole: Callable[[int, bytes], None] | None = None,
    ) -> None:
        """Take peer streams as they arrive rather than wait in :meth:`accept_stream`.

        ``arrived()`` is called after a received packet opened peer streams: take
        them with :meth:`accept_stream_nowait` at once, without a scheduling round.
        ``whole(stream_id, data)`` is called for each peer unidirectional stream
        that arrived whole (its data and FIN in one go), which is then never
        accepted as a :class:`ReceiveStream`: many short streams (an audio frame
        each) cost no object, queue entry or read each. Both run inside the
        connection's receive path: they must not block, and what they raise is
        logged and ignored. Each call replaces both; ``None`` removes one.
        """
        self._streams_arrived = arrived
        self._whole_stream = whole
        # Raw QUIC hands every whole peer unidirectional stream to ``whole``, so
        # aioquic need not keep state for it (WebTransport streams carry a header
        # and go through the session first).
        self._quic.whole_uni_streams = whole is not None and self._wt is None

    async def open_bidi_stream(self) -> Stream:
        """Open a bidirectional stream (the peer sees it once data is sent)."""
        await self._wait_stream_room()
        stream_id = self._open_local_stream(unidirectional=False)
        stream = Stream(self._add_sender(stream_id), self._add_receiver(stream_id))
        await self._wait_unblocked(stream_id)
        return stream

    async def open_uni_stream(self) -> SendStream:
        """Open a unidirectional stream (the peer sees it once data is sent)."""
        await self._wait_stream_room()
        stream_id = self._open_local_stream(unidirectional=True)
        stream = SendStream(self._add_sender(stream_id))
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
        return SendStream(self._add_sender(stream_id))

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
        if self._wt is not None:
            stream_id = self._open_local_stream(unidirectional=True)
        else:
            whole = quic.send_whole_uni_stream(data)
            if whole is not None:
                self._wakeup()
                return whole
            stream_id = quic.get_next_available_stream_id(is_unidirectional=True)
        self._send_stream_data(stream_id, data, True)
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
        return await self._next(self._accepted, self._accept_signal)

    def accept_stream_nowait(self) -> Stream | ReceiveStream:
        """The next stream opened by the peer, or ``anyio.WouldBlock`` if none is waiting.

        Lets a reader take every stream a burst of packets opened in one go,
        instead of one per scheduling round.
        """
        return self._next_nowait(self._accepted)

    async def _next(self, queue: deque[T], arrived: Signal) -> T:
        """The next item of ``queue`` (streams or datagrams from the peer), waiting
        for ``arrived`` while there is none."""
        await anyio.lowlevel.checkpoint()
        while True:
            try:
                return self._next_nowait(queue)
            except anyio.WouldBlock:
                await arrived.wait()

    def _next_nowait(self, queue: deque[T]) -> T:
        if self._closed_locally:
            raise anyio.ClosedResourceError
        if queue:
            return queue.popleft()
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
        if self._wt is not None and self._wt.session_id is not None:
            self._wt.send_datagram(payload)
        else:
            self._quic.send_datagram_frame(payload)
        self._wakeup()

    async def receive_datagram(self) -> bytes:
        """Wait for the next datagram from the peer."""
        return await self._next(self._datagrams, self._datagram_signal)

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
        with anyio.CancelScope(shield=True):
            with anyio.move_on_after(max(linger, 0.2)):
                # Send what aioquic already has (a handshake's last flight, say):
                # once the close is pending, aioquic only sends CONNECTION_CLOSE.
                await self._driver.flush()
            with anyio.move_on_after(linger):
                await self._wait_sent()
                wt = self._wt
                if wt is not None and wt.send_close(code, reason):
                    self._wakeup()
                    await self._wait_sent(wt.session_id)
            self._closed_locally = True
            if self._lost is None:
                quic_code = _wt.NO_ERROR if self._wt is not None else code
                self._quic.close(error_code=quic_code, reason_phrase=reason)
                self._wakeup()
                with anyio.move_on_after(0.5):
                    await self.wait_close_sent()
            self._mark_lost(ConnectionLost(code, reason, by_peer=False))

    def __repr__(self) -> str:
        kind = self._kind.value if self._kind is not None else "connecting"
        return f"<Connection {kind} alpn={self._alpn!r} peer={self.remote_address!r}>"

    # ------------------------------------------------------- owner interface

    def abort(self, code: int = QuicErrorCode.NO_ERROR, reason: str = "") -> None:
        """Close without lingering (used when the owner shuts down)."""
        if self._lost is None and not self._driver.ended:
            self._quic.close(error_code=code, reason_phrase=reason)
            self._wakeup()
            self._mark_lost(ConnectionLost(code, reason, by_peer=False))

    async def wait_close_sent(self) -> None:
        """Wait until a requested CONNECTION_CLOSE has been handed to the socket."""
        await self._driver.wait_close_sent()

    async def wait_terminated(self) -> None:
        """Wait until the connection has fully terminated (its driver stopped)."""
        await self._driver.wait_terminated()

    async def wait_session(self) -> bool:
        """Server side: wait until a session is established (True) or never will be."""
        await self._session_done.wait()
        return self._kind is not None

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
        wt = self._wt
        if wt is None:
            # Let our last handshake flight leave before handing the connection out.
            await self._driver.flush()
            return
        while not wt.settings_received:
            if self._lost is not None:
                raise ConnectError("connection closed before HTTP/3 SETTINGS") from self._lost
            await self._progress.wait()
        wt.connect(authority, path, headers)
        self._wakeup()
        await self._session_done.wait()
        if self._session_error is not None:
            raise self._session_error
        if self._kind is None:
            raise ConnectError("connection closed during the WebTransport CONNECT") from self._lost

    # ------------------------------------------------------ stream plumbing

    def _check_open(self) -> None:
        if self._closed_locally:
            raise anyio.ClosedResourceError
        if self._lost is not None:
            raise anyio.BrokenResourceError from self._lost

    def _is_closed_locally(self) -> bool:
        return self._closed_locally

    def _consumed(self, stream_id: int, size: int) -> None:
        self._quic.buffered(stream_id, -size)
        self._wakeup()

    def _add_receiver(self, stream_id: int) -> ReceiveSide:
        side = self._receivers[stream_id] = ReceiveSide(self._host, stream_id)
        return side

    def _add_sender(self, stream_id: int) -> SendSide:
        side = self._senders[stream_id] = SendSide(self._host, stream_id)
        return side

    def _wire_code(self, code: int) -> int:
        return _wt.app_code_to_h3(code) if self._wt is not None else code

    def _app_code(self, code: int) -> int:
        return _wt.h3_code_to_app(code) if self._wt is not None else code

    def _open_local_stream(self, *, unidirectional: bool) -> int:
        if self._wt is not None:
            stream_id = self._wt.open_stream(unidirectional=unidirectional)
        else:
            stream_id = self._quic.get_next_available_stream_id(is_unidirectional=unidirectional)
            # Creates the stream in aioquic so that the next call gets a new id.
            self._quic.send_stream_data(stream_id, b"")
        self._wakeup()
        return stream_id

    async def _wait_stream_room(self) -> None:
        """Wait until the connection may track one more stream (MAX_LIVE_STREAMS)."""
        await anyio.lowlevel.checkpoint()
        self._check_open()
        while not self._quic.room_for_stream():
            await self._progress.wait()
            self._check_open()

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

    async def _wait_sent(self, stream_id: int | None = None) -> None:
        """Wait until queued stream data (of one or all streams) is acknowledged;
        all streams include those written without a stream object
        (:meth:`send_uni_stream_nowait`)."""
        quic = self._quic
        while self._lost is None:
            ids = [stream_id] if stream_id is not None else list(quic.stream_ids)
            if not any(quic.send_pending(i) for i in ids) and (
                stream_id is not None or not quic.whole_streams_pending
            ):
                return
            await self._progress.wait()

    def _send_stream_data(self, stream_id: int, data: bytes, end_stream: bool) -> None:
        try:
            self._quic.send_stream_data(stream_id, data, end_stream)
        except (ValueError, AssertionError) as exc:
            raise anyio.BrokenResourceError from exc
        self._wakeup()

    def _reset_stream(self, stream_id: int, code: int) -> None:
        self._abort_stream(self._quic.reset_stream, "reset", stream_id, code)

    def _stop_stream(self, stream_id: int, code: int) -> None:
        self._abort_stream(self._quic.stop_stream, "stop", stream_id, code)

    def _abort_stream(
        self, abort: Callable[[int, int], None], what: str, stream_id: int, code: int
    ) -> None:
        """RESET_STREAM or STOP_SENDING (``abort``) with ``code`` mapped for the wire;
        nothing once the connection is lost, and a stream aioquic no longer knows is
        let be."""
        if self._lost is not None:
            return
        try:
            abort(stream_id, self._wire_code(code))
        except (ValueError, AssertionError):
            logger.debug("%s of stream %d ignored", what, stream_id, exc_info=True)
        self._wakeup()

    def _refuse_stream(self, receiver: ReceiveSide, sender: SendSide | None, h3_code: int) -> None:
        """Turn away a peer stream with a raw (unmapped) error code."""
        stream_id = receiver.stream_id
        if not receiver.done:
            with contextlib.suppress(ValueError, AssertionError):
                self._quic.stop_stream(stream_id, h3_code)
        receiver.refuse()
        if sender is not None:
            sender.refuse()
            with contextlib.suppress(ValueError, AssertionError):
                self._quic.reset_stream(stream_id, h3_code)
        self._wakeup()

    def _sweep(self) -> None:
        """Forget streams that aioquic has finished and discarded."""
        live = self._quic.stream_ids
        for streams in (self._receivers, self._senders):
            for stream_id in [i for i in streams if i not in live]:
                del streams[stream_id]

    # -------------------------------------------------------------- events

    def _handle_event(self, event: quic_events.QuicEvent) -> None:
        if isinstance(event, quic_events.StreamDataReceived):
            self._on_stream_data(event)
        elif isinstance(event, quic_events.DatagramFrameReceived):
            if self._wt is not None:
                self._wt.datagram_frame(event)
            else:
                self._deliver_datagram(event.data)
        elif isinstance(event, quic_events.StreamReset):
            self._on_stream_reset(event)
        elif isinstance(event, quic_events.StopSendingReceived):
            self._on_stop_sending(event)
        elif isinstance(event, quic_events.HandshakeCompleted):
            self._on_handshake(event.alpn_protocol)
        elif isinstance(event, quic_events.ConnectionTerminated):
            self._mark_lost(
                ConnectionLost(
                    event.error_code,
                    event.reason_phrase,
                    by_peer=self._quic.closed_by_peer,
                )
            )

    def _after_events(self, received: bool) -> None:
        if self._lost is None and self._quic.closing:
            info = self._quic.close_info() or (QuicErrorCode.INTERNAL_ERROR, "")
            self._mark_lost(ConnectionLost(info[0], info[1], by_peer=self._quic.closed_by_peer))
        arrived = self._streams_arrived
        if received and self._accepted and arrived is not None:
            try:
                arrived()
            except Exception:
                logger.exception("stream arrival callback failed")

    def _driver_finished(self, failed: bool) -> None:
        if failed:
            self._mark_lost(
                ConnectionLost(QuicErrorCode.INTERNAL_ERROR, "driver failed", by_peer=False)
            )
        self._mark_lost(ConnectionLost(QuicErrorCode.INTERNAL_ERROR, "terminated", by_peer=False))

    def _on_handshake(self, alpn: str | None) -> None:
        self._alpn = alpn
        if alpn == "h3":
            self._quic.whole_uni_streams = False
            self._wt = _wt.WebTransport(
                self._quic,
                is_client=self._is_client,
                path_filter=self._path_filter,
                on_stream=self._new_peer_stream,
                on_datagram=self._deliver_datagram,
                on_session=self._session_started,
                on_closed=self._session_closed_by_peer,
                wakeup=self._wakeup,
            )
        else:
            self._kind = ConnectionKind.QUIC
            self._session_done.set()
        self._handshake_done.set()

    def _on_stream_data(self, event: quic_events.StreamDataReceived) -> None:
        stream_id = event.stream_id
        receiver = self._receivers.get(stream_id)
        if receiver is not None:
            receiver.feed(event.data, event.end_stream)
            return
        if stream_id in self._senders:
            return
        if self._wt is not None:
            self._wt.stream_data(event)
        elif stream_is_client_initiated(stream_id) != self._is_client:
            self._new_peer_stream(stream_id, event.data, event.end_stream, None)

    def _accepts(self, session_id: int | None) -> bool:
        """Whether a peer stream of ``session_id`` (``None``: raw QUIC) is for us."""
        return session_id is None or (self._wt is not None and self._wt.accepts(session_id))

    def _new_peer_stream(
        self, stream_id: int, data: bytes, end_stream: bool, session_id: int | None
    ) -> None:
        unidirectional = stream_is_unidirectional(stream_id)
        whole = self._whole_stream
        if (
            end_stream
            and unidirectional
            and whole is not None
            and not self._closed_locally
            and self._accepts(session_id)
        ):
            try:
                whole(stream_id, data)
            except Exception:
                logger.exception("whole-stream callback failed")
            return
        stream: Stream | ReceiveStream
        receiver = self._add_receiver(stream_id)
        sender = None
        if unidirectional:
            stream = ReceiveStream(receiver)
        else:
            sender = self._add_sender(stream_id)
            stream = Stream(sender, receiver)
        receiver.feed(data, end_stream)
        if self._accepts(session_id):
            self._enqueue_accept(stream, receiver, sender)
        elif (
            session_id is not None
            and not self._session_done.is_set()
            and len(self._pending_wt) < PENDING_WT_STREAMS
        ):
            self._pending_wt.append((stream, receiver, sender, session_id))
        else:
            self._refuse_stream(receiver, sender, _wt.BUFFERED_STREAM_REJECTED)

    def _enqueue_accept(
        self, stream: Stream | ReceiveStream, receiver: ReceiveSide, sender: SendSide | None
    ) -> None:
        if self._closed_locally or len(self._accepted) >= ACCEPT_BACKLOG:
            code = _wt.EXCESSIVE_LOAD if self._wt is not None else 0
            self._refuse_stream(receiver, sender, code)
            return
        self._accepted.append(stream)
        self._accept_signal.notify()

    def _session_started(self, error: TransportError | None) -> None:
        """The WebTransport CONNECT succeeded (``error`` is None) or was refused."""
        if error is None:
            self._kind = ConnectionKind.WEBTRANSPORT
        else:
            self._session_error = error
        self._session_done.set()
        pending, self._pending_wt = self._pending_wt, []
        for stream, receiver, sender, session_id in pending:
            if self._accepts(session_id):
                self._enqueue_accept(stream, receiver, sender)
            else:
                self._refuse_stream(receiver, sender, _wt.BUFFERED_STREAM_REJECTED)

    def _session_closed_by_peer(self, code: int, reason: str) -> None:
        self._mark_lost(ConnectionLost(code, reason, by_peer=True))

    def _on_stream_reset(self, event: quic_events.StreamReset) -> None:
        stream_id = event.stream_id
        receiver = self._receivers.get(stream_id)
        if receiver is not None:
            receiver.fail(StreamReset(self._app_code(event.error_code)), discard=True)
            return
        if stream_id in self._senders:
            return
        if self._wt is not None:
            self._wt.stream_reset(event)

    def _on_stop_sending(self, event: quic_events.StopSendingReceived) -> None:
        stream_id = event.stream_id
        sender = self._senders.get(stream_id)
        if sender is not None:
            sender.fail(StopSending(self._app_code(event.error_code)))
            self._progress.notify()
            return
        if stream_id in self._receivers:
            self._progress.notify()
            return
        if self._wt is not None:
            self._wt.stop_sending(event)

    def _deliver_datagram(self, data: bytes) -> None:
        if len(self._datagrams) >= DATAGRAM_BACKLOG:
            self.datagrams_dropped += 1
            return
        self._datagrams.append(data)
        self._datagram_signal.notify()

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
        for receiver in list(self._receivers.values()):
            receiver.fail(lost, discard=False)
        for sender in list(self._senders.values()):
            sender.fail(lost)
        for _, receiver, _, _ in self._pending_wt:
            receiver.fail(lost, discard=False)
        self._pending_wt.clear()
        self._accept_signal.notify()
        self._datagram_signal.notify()
        self._progress.notify()
        self._handshake_done.set()
        self._session_done.set()
        self._wakeup()
