"""WebTransport over HTTP/3 (draft-ietf-webtrans-http3): one session on one QUIC
connection, its codes and its framing.

After ALPN ``h3`` an aioquic ``H3Connection`` handles HTTP/3 (SETTINGS, QPACK,
the extended CONNECT), but every WebTransport stream is handled here and never
reaches it: peer streams are classified by their first bytes (0x54 for
unidirectional, the 0x41 signal for bidirectional streams), and streams opened
locally are routed by stream id. aioquic 1.7.2's ``H3Connection`` would
otherwise parse the peer's data on a locally opened WebTransport bidirectional
stream as HTTP/3 frames and lose it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from aioquic.buffer import encode_uint_var
from aioquic.h3.connection import ErrorCode, H3Connection, Setting
from aioquic.h3.events import DatagramReceived, DataReceived, H3Event, HeadersReceived
from aioquic.quic import events as quic_events
from aioquic.quic.connection import (
    QuicConnection,
    stream_is_client_initiated,
    stream_is_unidirectional,
)

from ._quic import Buffer, BufferReadError
from .errors import ConnectError, TransportError, WebTransportRejected

logger = logging.getLogger(__name__)

Headers = list[tuple[bytes, bytes]]
PathFilter = Callable[[str], bool]

UNI_STREAM_TYPE = 0x54
"""First varint of a WebTransport unidirectional stream."""

BIDI_SIGNAL = 0x41
"""First varint (WEBTRANSPORT_STREAM signal) of a WebTransport bidirectional stream."""

CLOSE_SESSION_CAPSULE = 0x2843
DRAIN_SESSION_CAPSULE = 0x78AE

BUFFERED_STREAM_REJECTED = 0x3994BD84
"""HTTP/3 error code for streams of a session that does not exist."""

SESSION_GONE = 0x170D7B68
"""HTTP/3 error code for streams whose session went away."""

NO_ERROR = ErrorCode.H3_NO_ERROR
"""The QUIC close code of a connection carrying HTTP/3."""

EXCESSIVE_LOAD = ErrorCode.H3_EXCESSIVE_LOAD
"""HTTP/3 error code for streams refused for lack of room."""

MAX_CAPSULE_BYTES = 65536
"""Unparsed bytes kept from the session's CONNECT stream (beyond: discarded)."""

_FIRST = 0x52E4A40FA8DB
_LAST = 0x52E5AC983162


def app_code_to_h3(code: int) -> int:
    """Map a 32-bit WebTransport application error code into the HTTP/3 space."""
    if not 0 <= code <= 0xFFFFFFFF:
        raise ValueError("WebTransport error codes are 32-bit unsigned integers")
    return _FIRST + code + code // 0x1E


def h3_code_to_app(code: int) -> int:
    """Inverse of :func:`app_code_to_h3`; codes outside its range map to 0."""
    if code < _FIRST or code > _LAST or (code - 0x21) % 0x1F == 0:
        return 0
    shifted = code - _FIRST
    return shifted - shifted // 0x1F


def encode_close_capsule(code: int, reason: str) -> bytes:
    payload = code.to_bytes(4, "big") + reason.encode("utf-8")[:1024]
    return encode_uint_var(CLOSE_SESSION_CAPSULE) + encode_uint_var(len(payload)) + payload


def parse_capsules(buffer: bytearray) -> list[tuple[int, bytes]]:
    """Pop every complete capsule (type, payload) from the front of ``buffer``."""
    capsules: list[tuple[int, bytes]] = []
    while buffer:
        buf = Buffer(data=bytes(buffer))
        try:
            capsule_type = buf.pull_uint_var()
            length = buf.pull_uint_var()
            payload = buf.pull_bytes(length)
        except BufferReadError:
            break
        capsules.append((capsule_type, payload))
        del buffer[: buf.tell()]
    return capsules


def parse_stream_header(data: bytes, *, unidirectional: bool) -> tuple[int | None, int] | None:
    """Classify a peer stream's first bytes.

    Returns ``None`` while more bytes are needed, ``(None, 0)`` for a stream that
    belongs to HTTP/3 itself, or ``(session_id, header_length)`` for a
    WebTransport stream.
    """
    buf = Buffer(data=data)
    try:
        first = buf.pull_uint_var()
    except BufferReadError:
        return None
    expected = UNI_STREAM_TYPE if unidirectional else BIDI_SIGNAL
    if first != expected:
        return (None, 0)
    try:
        session_id = buf.pull_uint_var()
    except BufferReadError:
        return None
    return (session_id, buf.tell())


class WebTransport:
    """The WebTransport side of an ``h3`` connection: HTTP/3 for the session's
    CONNECT, and the session's streams and datagrams.

    The connection hands it the QUIC events of streams it does not know yet and
    every QUIC datagram; it reports back through the callbacks given:
    ``on_stream(stream_id, data, end_stream, session_id)`` for a new peer
    WebTransport stream (with its first payload), ``on_datagram(data)`` for one
    of the session, ``on_session(error)`` once the CONNECT succeeded (``None``)
    or was refused, ``on_closed(code, reason)`` when the peer ended the session
    (the QUIC connection is then closed), ``wakeup()`` when there is something
    to send.
    """

    def __init__(
        self,
        quic: QuicConnection,
        *,
        is_client: bool,
        path_filter: PathFilter | None,
        on_stream: Callable[[int, bytes, bool, int], None],
        on_datagram: Callable[[bytes], None],
        on_session: Callable[[TransportError | None], None],
        on_closed: Callable[[int, str], None],
        wakeup: Callable[[], None],
    ) -> None:
        self._quic = quic
        self._h3 = H3Connection(quic, enable_webtransport=True)
        self._is_client = is_client
        self._path_filter = path_filter
        self._on_stream = on_stream
        self._on_datagram = on_datagram
        self._on_session = on_session
        self._on_closed = on_closed
        self._wakeup = wakeup
        #: The session id (its CONNECT stream id), once the CONNECT was sent or received.
        self.session_id: int | None = None
        #: The CONNECT succeeded: the session carries streams and datagrams.
        self.established = False
        #: The client's CONNECT was answered (accepted or not).
        self._answered = False
        self.path: str | None = None
        self.request_headers: Headers = []
        self._peer_close: tuple[int, str] | None = None
        self._capsules = bytearray()
        self._sniffing: dict[int, bytearray] = {}
        self._h3_streams: set[int] = set()

    # ------------------------------------------------------- the session

    def accepts(self, session_id: int) -> bool:
        """Whether a stream of ``session_id`` belongs to the established session."""
        return self.established and session_id == self.session_id

    @property
    def datagram_overhead(self) -> int:
        """Bytes each datagram spends on the session id (the quarter stream id)."""
        if self.session_id is None:
            return 0
        return 8 if self.session_id // 4 >= 1 << 30 else 4

    @property
    def settings_received(self) -> bool:
        return self._h3.received_settings is not None

    def connect(self, authority: str, path: str, headers: Sequence[tuple[bytes, bytes]]) -> None:
        """Client side, once the peer's SETTINGS arrived: send the extended CONNECT."""
        settings = self._h3.received_settings or {}
        if settings.get(Setting.ENABLE_CONNECT_PROTOCOL) != 1:
            raise ConnectError("the server does not support extended CONNECT (WebTransport)")
        session_id = self._quic.get_next_available_stream_id()
        self.session_id = session_id
        self._h3.send_headers(
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

    def open_stream(self, *, unidirectional: bool) -> int:
        if self.session_id is None or not self.established:
            raise TransportError("the WebTransport session is not established")
        return self._h3.create_webtransport_stream(
            self.session_id, is_unidirectional=unidirectional
        )

    def send_datagram(self, data: bytes) -> None:
        assert self.session_id is not None
        self._h3.send_datagram(self.session_id, data)

    def send_close(self, code: int, reason: str) -> bool:
        """Queue CLOSE_WEBTRANSPORT_SESSION and finish the CONNECT stream; False
        if there is no established session to close."""
        if not self.established or self.session_id is None:
            return False
        try:
            self._h3.send_data(self.session_id, encode_close_capsule(code, reason), True)
        except Exception:
            logger.debug("could not send CLOSE_WEBTRANSPORT_SESSION", exc_info=True)
        return True

    # ------------------------------------------- QUIC events it is handed

    def stream_data(self, event: quic_events.StreamDataReceived) -> None:
        """Data on a stream the connection does not know: HTTP/3's own, or the
        first bytes of a peer WebTransport stream."""
        stream_id = event.stream_id
        if stream_id in self._h3_streams or self._is_local(stream_id):
            self._feed_h3(event)
            return
        # A new peer stream: WebTransport (handled here) or HTTP/3's own?
        buffered = self._sniffing.pop(stream_id, bytearray()) + event.data
        parsed = parse_stream_header(
            bytes(buffered), unidirectional=stream_is_unidirectional(stream_id)
        )
        if parsed is None and not event.end_stream:
            self._sniffing[stream_id] = buffered
            return
        session_id, header_length = parsed or (None, 0)
        if session_id is None:
            self._h3_streams.add(stream_id)
            self._feed_h3(
                quic_events.StreamDataReceived(
                    data=bytes(buffered), end_stream=event.end_stream, stream_id=stream_id
                )
            )
            return
        if (
            header_length == len(buffered)
            and not event.end_stream
            and stream_is_unidirectional(stream_id)
        ):
            # Only the WebTransport header so far: surface the stream with its first
            # payload, so that peer streams are accepted in the order data arrived.
            self._sniffing[stream_id] = buffered
            return
        self._on_stream(stream_id, bytes(buffered[header_length:]), event.end_stream, session_id)

    def stream_reset(self, event: quic_events.StreamReset) -> None:
        if self._sniffing.pop(event.stream_id, None) is not None:
            return
        if event.stream_id == self.session_id and self.established:
            self._session_closed_by_peer()
        self._feed_h3(event)

    def stop_sending(self, event: quic_events.StopSendingReceived) -> None:
        if event.stream_id not in self._sniffing:
            self._feed_h3(event)

    def datagram_frame(self, event: quic_events.DatagramFrameReceived) -> None:
        self._feed_h3(event)

    # ------------------------------------------------------------ HTTP/3

    def _is_local(self, stream_id: int) -> bool:
        return stream_is_client_initiated(stream_id) == self._is_client

    def _feed_h3(self, event: quic_events.QuicEvent) -> None:
        for h3_event in self._h3.handle_event(event):
            self._on_h3_event(h3_event)

    def _on_h3_event(self, event: H3Event) -> None:
        if isinstance(event, HeadersReceived):
            if self._is_client:
                self._on_response(event)
            else:
                self._on_request(event)
        elif isinstance(event, DataReceived):
            if event.stream_id == self.session_id and self.established:
                self._on_session_data(event.data, event.stream_ended)
        elif (
            isinstance(event, DatagramReceived)
            and self.established
            and event.stream_id == self.session_id
        ):
            self._on_datagram(event.data)

    def _on_response(self, event: HeadersReceived) -> None:
        if event.stream_id != self.session_id or self._answered:
            return
        status_text = dict(event.headers).get(b":status", b"0")
        status = int(status_text) if status_text.isdigit() else 0
        if 100 <= status < 200:
            return
        self._answered = True
        if 200 <= status < 300 and not event.stream_ended:
            self.established = True
            self._on_session(None)
        else:
            self._on_session(WebTransportRejected(status, event.headers))

    def _on_request(self, event: HeadersReceived) -> None:
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
        if self.session_id is not None:
            self._respond(stream_id, 429)
            return
        if self._path_filter is not None and not self._path_filter(path):
            self._respond(stream_id, 404)
            return
        self._h3.send_headers(
            stream_id, [(b":status", b"200"), (b"sec-webtransport-http3-draft", b"draft02")]
        )
        self.session_id = stream_id
        self.path = path
        self.request_headers = list(event.headers)
        self.established = True
        self._on_session(None)
        self._wakeup()

    def _respond(self, stream_id: int, status: int) -> None:
        try:
            self._h3.send_headers(stream_id, [(b":status", str(status).encode())], end_stream=True)
        except Exception:
            logger.debug("could not answer request stream %d", stream_id, exc_info=True)
        self._wakeup()

    def _on_session_data(self, data: bytes, ended: bool) -> None:
        self._capsules += data
        for capsule_type, payload in parse_capsules(self._capsules):
            if capsule_type == CLOSE_SESSION_CAPSULE and len(payload) >= 4:
                code = int.from_bytes(payload[:4], "big")
                self._peer_close = (code, payload[4:].decode("utf-8", "replace"))
        if len(self._capsules) > MAX_CAPSULE_BYTES:
            self._capsules.clear()
        if ended:
            self._session_closed_by_peer()

    def _session_closed_by_peer(self) -> None:
        """The peer ended the session: end the connection with it."""
        code, reason = self._peer_close or (0, "")
        self._on_closed(code, reason)
        self._quic.close(error_code=NO_ERROR, reason_phrase=reason)
        self._wakeup()
