"""Every use of aioquic's internals: a QuicConnection with read-driven flow control.

The rest of clutchcall uses aioquic's public API only (plus what this module
exports); tests/transport/test_aioquic_internals.py checks that each private
attribute, hook and module relied on here still has the shape expected, so that
an aioquic upgrade fails there, by name, rather than somewhere in the transport.

aioquic grants the peer more receive credit as soon as data *arrives* (it doubles
the window once half of it is used), so a peer can make an application that does
not read buffer without limit. :class:`FlowControlledQuicConnection` instead
grants credit for data the application has *consumed*: the peer may have at most
one window of unread data per stream and one connection window in total.

It also closes with an acknowledgement: the packet carrying CONNECTION_CLOSE
first acknowledges every packet received, and nothing that arrives once the close
was asked for is processed. aioquic acknowledges after a short delay and sends
only the close frame, so a peer could not tell the data processed in the last
moments from the data never received; now what it sees acknowledged is exactly
what arrived (a publisher settles its frames by that).

And a probe timeout only probes. When the peer has acknowledged nothing for a
while, aioquic 1.7.2 declares the oldest packet lost so that its probe carries
that packet's data again; if the acknowledgement was merely late, it then arrives
for a packet aioquic no longer tracks and is ignored, so data the peer received
stays unacknowledged until the copy is acknowledged too, and for good if the
connection ends first (a frame the relay received counted as dropped, or sent
twice). Here the probe is a PING (RFC 9002 section 6.2 says a probe timeout must
not declare packets lost); a packet really lost is declared so, as usual, once a
later one is acknowledged.

Nor does it pace. aioquic spreads packets over the smoothed round trip at the
rate the congestion window allows, counting every packet as a full-size one. A
voice connection's packets are small and already paced by the audio (a frame per
track every 20 ms), and on a busy event loop acknowledgements are read late, so
the smoothed round trip grows, the pacing rate falls below the rate frames are
written, unsent streams pile up (aioquic visits each of them for every packet it
builds) and the loop falls further behind: a process at its limit collapsed
instead of dropping what it could not send. The congestion window still bounds
the bytes in flight.

And building packets costs what they carry, not what waits. aioquic visits every
stream that has data for every packet it builds, also once the packet is full, so
a pass that sends N waiting frames (one stream each) did on the order of N
squared visits; here a full packet ends the visit and the next packet starts with
the stream that did not fit. Nor does a pass build one more packet, visiting every
stream again, only to find it empty (aioquic's way to end it): once a packet with
room left is written and no datagram, stream or limit announcement is waiting,
the pass ends. The streams aioquic tracks at once are also bounded
(:data:`MAX_LIVE_STREAMS`): it visits each of them for every packet too (for
flow-control updates), so a new local stream waits while that many are open.

Short streams go out without aioquic's stream state. MoQT gives each audio frame
a unidirectional stream of its own, written whole at once; aioquic would make a
QuicStream (a sender, a receiver and their range sets) for each, visit it in every
packet built until the peer acknowledges it, and discard it on a later pass.
:meth:`FlowControlledQuicConnection.send_whole_uni_stream` takes the next stream
ID, keeps only the bytes, writes them as one STREAM frame (offset 0, FIN: the
bytes aioquic writes) ahead of aioquic's streams in the next packet with room,
sends them again if that packet is lost, and forgets them once acknowledged. The
peer's stream limit, per-stream credit and connection credit apply as for any
stream, and such streams count towards :data:`MAX_LIVE_STREAMS` until
acknowledged. Resetting one before that hands it to aioquic, which sends
RESET_STREAM. aioquic itself treats the ID as a stream already discarded: what the
peer sends about it (STOP_SENDING) is ignored.

This overrides private hooks of aioquic, which is pinned to 1.7.2 (see
pyproject.toml); the transport tests prove the flow control (a reader that stops
reading stalls the sender instead of growing memory), the frame-accounting tests
the close.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import KeysView
from typing import Any

from aioquic import tls

# The same classes as aioquic.buffer's (whose re-export mypy does not see).
from aioquic._buffer import Buffer, BufferReadError
from aioquic.buffer import size_uint_var
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import (
    ACK_FRAME_CAPACITY,
    TRANSPORT_CLOSE_FRAME_CAPACITY,
    NetworkAddress,
    QuicConnection,
    QuicConnectionAdapter,
    QuicConnectionState,
)
from aioquic.quic.events import StreamDataReceived
from aioquic.quic.packet import QuicFrameType, push_ack_frame
from aioquic.quic.packet_builder import QuicDeliveryState, QuicPacketBuilder
from aioquic.quic.recovery import QuicPacketSpace
from aioquic.quic.stream import QuicStream

STREAM_WINDOW = 1 << 20
"""Receive credit per stream: unread bytes a peer may have in flight on one stream."""

CONNECTION_WINDOW = 8 << 20
"""Receive credit for the whole connection."""

UNI_STREAM_WINDOW = 4096
"""Unidirectional streams the peer may have open at once (aioquic's default is 128).

MoQT sends each audio frame on a stream of its own; a connection carrying many
calls opens thousands a second, and aioquic returns credit only as finished
streams are discarded when a packet is sent, so 128 runs out and frames wait."""

MAX_LIVE_STREAMS = 2048
"""Streams of one connection aioquic may track at once; opening a local stream
waits while as many are (``can_open_stream`` is False).

A stream stays tracked until everything on it is acknowledged (and, for one the
peer opened, read), and aioquic visits each tracked stream for every packet it
builds. A publisher that writes faster than the peer acknowledges (a process
that fell behind, a path that stalled) so makes its frames wait in its own
bounded queue, where they age out, instead of making every packet dearer. 2048
is 400 ms of 20 ms frames for 100 calls on one connection."""

WHOLE_STREAM_MAX = 1024
"""Largest stream :meth:`FlowControlledQuicConnection.send_whole_uni_stream` takes:
it always fits one packet."""

MAX_DATAGRAM_FRAME_SIZE = 65536
"""Advertised max_datagram_frame_size (enables QUIC DATAGRAM frames)."""

__all__ = [
    "CONNECTION_WINDOW",
    "MAX_DATAGRAM_FRAME_SIZE",
    "MAX_LIVE_STREAMS",
    "STREAM_WINDOW",
    "UNI_STREAM_WINDOW",
    "WHOLE_STREAM_MAX",
    "Buffer",
    "BufferReadError",
    "FlowControlledQuicConnection",
]


class _NoDebugAdapter(QuicConnectionAdapter):
    """aioquic's per-connection logger, without its DEBUG lines (it writes three
    for every stream a frame travels on, each costing a level check)."""

    def debug(self, msg: object, *args: object, **kwargs: Any) -> None:
        pass


class _NothingMore(Exception):
    """The packet just written left nothing to send: end the pass."""


class _PacketFull(Exception):
    """Raised from ``_write_stream_frame`` when the packet has no room left."""


_ROOMY = 32
"""Room (bytes) a packet has left below which it counts as full: no stream frame
header and some data fit in less."""

#: STREAM frame type with the LEN and FIN bits (offset 0: no OFF bit).
_STREAM_WHOLE = QuicFrameType.STREAM_BASE | 2 | 1


def _no_pacing(congestion_window: int, smoothed_rtt: float) -> None:
    """Stands in for ``QuicPacketPacer.update_rate``: no rate, so no pacing."""


class FlowControlledQuicConnection(QuicConnection):
    """A QuicConnection that raises MAX_DATA / MAX_STREAM_DATA as data is read."""

    def __init__(self, *, configuration: QuicConfiguration, **kwargs: Any) -> None:
        super().__init__(configuration=configuration, **kwargs)
        # Announced in the transport parameters, which are built during the handshake.
        self._local_max_streams_uni.value = UNI_STREAM_WINDOW
        self._stream_window = configuration.max_stream_data
        self._connection_window = configuration.max_data
        self._unread: dict[int, int] = {}
        self._unread_total = 0
        #: Stream data or a datagram was written since the last transmit.
        self._data_written = False
        #: Whole peer unidirectional streams skip aioquic's stream state (see
        #: _handle_stream_frame); the owner turns this on when it takes such
        #: streams as they arrive and never reads them as streams.
        self.whole_uni_streams = False
        #: Whole local unidirectional streams (send_whole_uni_stream) that the peer
        #: has not acknowledged yet, by stream ID; never sent ones, in order; lost
        #: ones, to send again; the first stream ID not sent yet.
        self._whole_live: dict[int, bytes] = {}
        self._whole_fresh: deque[int] = deque()
        self._whole_lost: deque[int] = deque()
        self._whole_sent_upto = 0
        # aioquic's DEBUG lines are written only if its logger ("quic") is at DEBUG
        # when the connection is made.
        adapter = self._logger
        if not adapter.isEnabledFor(logging.DEBUG):
            self._logger = _NoDebugAdapter(adapter.logger, adapter.extra)
        # A probe timeout retransmits CRYPTO data (the handshake) and otherwise
        # sends a PING, never declaring a packet lost (see the module docstring).
        reschedule = self._loss.reschedule_data

        def probe_without_loss(*, now: float, speed_up_handshake: bool = False) -> None:
            reschedule(now=now, speed_up_handshake=True)

        self._loss.reschedule_data = probe_without_loss  # type: ignore[method-assign]
        # No pacing (see the module docstring): the pacer keeps no send rate, so it
        # never holds a packet back.
        self._loss._pacer.update_rate = _no_pacing  # type: ignore[method-assign]
        # Asked at the top of each packet _write_application builds (see
        # _nothing_more), which notes the builder and the packet open when it began.
        self._pass_builder: QuicPacketBuilder | None = None
        self._pass_packet: object = None
        self._loss._pacer.next_send_time = self._nothing_more  # type: ignore[method-assign,assignment]

    def buffered(self, stream_id: int, delta: int) -> None:
        """Record ``delta`` bytes added to (or removed from) a stream's read buffer."""
        value = self._unread.get(stream_id, 0) + delta
        if value:
            self._unread[stream_id] = value
        else:
            self._unread.pop(stream_id, None)
        self._unread_total += delta

    def _write_connection_limits(self, builder: QuicPacketBuilder, space: QuicPacketSpace) -> None:
        max_data = self._local_max_data
        target = max_data.used - self._unread_total + self._connection_window
        if target - max_data.value >= self._connection_window // 4:
            max_data.value = target
        # aioquic doubles MAX_DATA when half of it is used; hide the usage so that
        # only the read-driven update above applies.
        used = max_data.used
        max_data.used = 0
        try:
            super()._write_connection_limits(builder=builder, space=space)
        finally:
            max_data.used = used
        # Called once per application packet, ahead of aioquic's streams.
        if self._whole_live:
            self._write_whole_streams(builder)

    def send_whole_uni_stream(self, data: bytes) -> int | None:
        """Open a unidirectional stream, write ``data`` and finish it, without the
        state aioquic keeps per stream; returns its ID, or None if this stream
        cannot be sent so (too long, over the peer's stream credit, a qlog being
        written, or the peer allows no new stream now: use ``send_stream_data``).

        The stream goes out as one STREAM frame (offset 0, FIN), the same bytes
        aioquic writes for it, and again if that packet is lost, until acknowledged.
        """
        length = len(data)
        if (
            length > WHOLE_STREAM_MAX
            or length > self._remote_max_stream_data_uni
            or self._quic_logger is not None
            or not self.can_open_stream(unidirectional=True)
        ):
            return None
        stream_id = self._local_next_stream_id_uni
        self._local_next_stream_id_uni = stream_id + 4
        self._whole_live[stream_id] = data
        self._whole_fresh.append(stream_id)
        self._data_written = True
        return stream_id

    def _write_whole_streams(self, builder: QuicPacketBuilder) -> None:
        live = self._whole_live
        for queue in (self._whole_lost, self._whole_fresh):
            while queue:
                stream_id = queue[0]
                data = live.get(stream_id)
                if data is None:  # reset, or acknowledged meanwhile
                    queue.popleft()
                    continue
                length = len(data)
                fresh = stream_id >= self._whole_sent_upto
                if fresh and self._remote_max_data_used + length > self._remote_max_data:
                    return  # the peer's connection credit: wait for MAX_DATA
                capacity = 3 + size_uint_var(stream_id) + length
                if (
                    builder.remaining_flight_space < capacity
                    or builder.remaining_buffer_space < capacity
                ):
                    return
                buf = builder.start_frame(
                    _STREAM_WHOLE,
                    capacity=capacity,
                    handler=self._on_whole_delivery,
                    handler_args=(stream_id,),
                )
                buf.push_uint_var(stream_id)
                buf.push_uint16(length | 0x4000)
                buf.push_bytes(data)
                queue.popleft()
                if fresh:
                    self._whole_sent_upto = stream_id + 4
                    self._remote_max_data_used += length

    def _on_whole_delivery(self, delivery: QuicDeliveryState, stream_id: int) -> None:
        if delivery == QuicDeliveryState.ACKED:
            self._whole_live.pop(stream_id, None)
        elif stream_id in self._whole_live:
            self._whole_lost.append(stream_id)

    def _write_stream_limits(
        self, builder: QuicPacketBuilder, space: QuicPacketSpace, stream: QuicStream
    ) -> None:
        if not stream.max_stream_data_local:
            # A stream we opened one way (each outgoing frame's): it receives
            # nothing, so there is no limit to raise. This runs for every live
            # stream on every packet built.
            return
        receiver = stream.receiver
        if not receiver.is_finished:
            unread = self._unread.get(stream.stream_id or 0, 0)
            target = receiver.highest_offset - unread + self._stream_window
            if target - stream.max_stream_data_local >= self._stream_window // 4:
                stream.max_stream_data_local = target
        # Same trick as above: hide the received offset from aioquic's doubling rule.
        highest = receiver.highest_offset
        receiver.highest_offset = 0
        try:
            super()._write_stream_limits(builder=builder, space=space, stream=stream)
        finally:
            receiver.highest_offset = highest

    def reset_stream(self, stream_id: int, error_code: int) -> None:
        """As aioquic's, but the stream's data is freed at once: aioquic keeps it
        until the peer acknowledges the reset, although none of it is sent again,
        so a peer that acknowledges nothing could make resets pile up."""
        data = self._whole_live.pop(stream_id, None)
        if data is not None:
            # A whole stream gets aioquic's state now, which sends RESET_STREAM
            # (its final size what was sent) until acknowledged.
            made = QuicStream(
                stream_id=stream_id,
                max_stream_data_remote=self._remote_max_stream_data_uni,
                readable=False,
            )
            if stream_id < self._whole_sent_upto:
                made.sender.highest_offset = len(data)
            self._streams[stream_id] = made
            self._streams_queue.append(made)
        super().reset_stream(stream_id, error_code)
        stream = self._streams.get(stream_id)
        if stream is not None and stream.sender._reset_error_code is not None:
            stream.sender._buffer.clear()

    def send_buffer_size(self, stream_id: int) -> int:
        """Bytes written to a stream and not yet acknowledged by the peer."""
        data = self._whole_live.get(stream_id)
        if data is not None:
            return len(data)
        stream = self._streams.get(stream_id)
        if stream is None:
            return 0
        sender = stream.sender
        if sender.is_finished or sender._reset_error_code is not None:
            return 0
        return sender._buffer_stop - sender._buffer_start

    def _handle_stream_frame(self, context: Any, frame_type: int, buf: Buffer) -> None:
        # A peer's unidirectional stream that arrives whole (offset 0 and FIN in one
        # STREAM frame: an audio frame each) and is the next one it may open is
        # delivered at once, with no QuicStream made for it and dropped at the next
        # packet built; it counts as opened and finished, so a copy of it arriving
        # later is ignored as for any discarded stream, and the peer may open one
        # more. Anything else (an offset, a gap in the stream IDs, limits exceeded,
        # a qlog being written) takes aioquic's own path.
        if self.whole_uni_streams and frame_type & 5 == 1 and self._quic_logger is None:
            start = buf.tell()
            stream_id = buf.pull_uint_var()
            limit = self._local_max_streams_uni
            if (
                stream_id & 3 == (3 if self._is_client else 2)
                and stream_id >> 2 == limit.used
                and limit.used < limit.value
            ):
                length = buf.pull_uint_var() if frame_type & 2 else buf.capacity - buf.tell()
                max_data = self._local_max_data
                if (
                    length <= self._local_max_stream_data_uni
                    and max_data.used + length <= max_data.value
                ):
                    data = buf.pull_bytes(length)
                    limit.used += 1
                    limit.value += 1
                    max_data.used += length
                    self._events.append(
                        StreamDataReceived(data=data, end_stream=True, stream_id=stream_id)
                    )
                    return
            buf.seek(start)
        super()._handle_stream_frame(context, frame_type, buf)

    def _write_application(self, builder: QuicPacketBuilder, network_path: Any, now: float) -> None:
        # A stream that finds the packet full ends aioquic's visit of the streams
        # (see the module docstring); the next call starts a new packet with that
        # stream first, since aioquic moved the streams that sent to the end.
        self._pass_builder = builder
        while True:
            self._pass_packet = builder._packet
            try:
                super()._write_application(builder, network_path, now)
            except _PacketFull:
                continue
            except _NothingMore:
                pass
            self._pass_builder = None
            return

    def _nothing_more(self, now: float) -> None:
        """Raises _NothingMore if the packet just written left nothing to send.

        aioquic asks its pacer before each packet (when no ACK is due) and builds
        packets until one comes out empty: after every pass that sent something it
        builds one more packet, visiting every stream again, only to find nothing.
        The packet before had room left, so whatever could go out went out in it,
        unless a limit to announce (a stream discarded meanwhile) or a datagram
        that did not fit is waiting.
        """
        builder = self._pass_builder
        if (
            builder is None
            or builder._packet is None
            or builder._packet is self._pass_packet  # no packet of this pass yet
            or builder.packet_is_empty
            or builder.remaining_flight_space < _ROOMY
            or self._datagrams_pending
            or self._whole_lost
            or self._whole_fresh
        ):
            return
        for limit in (self._local_max_streams_bidi, self._local_max_streams_uni):
            if limit.value != limit.sent and limit.sent - limit.used < limit.value - limit.sent:
                return
        if self._local_max_data.value != self._local_max_data.sent:
            return
        raise _NothingMore

    def _write_stream_frame(
        self,
        builder: QuicPacketBuilder,
        space: QuicPacketSpace,
        stream: QuicStream,
        max_offset: int,
    ) -> int:
        used: int = super()._write_stream_frame(
            builder=builder, space=space, stream=stream, max_offset=max_offset
        )
        sender = stream.sender
        if used:
            # aioquic notices that a stream has nothing more to send only when it
            # asks it again, an extra visit of every stream in every pass.
            if not len(sender._pending) and not sender._pending_eof:
                sender.buffer_is_empty = True
        elif builder.remaining_flight_space < _ROOMY and not builder.packet_is_empty:
            raise _PacketFull
        return used

    def send_stream_data(self, stream_id: int, data: bytes, end_stream: bool = False) -> None:
        super().send_stream_data(stream_id, data, end_stream)
        self._data_written = True

    def send_datagram_frame(self, data: bytes) -> None:
        super().send_datagram_frame(data)
        self._data_written = True

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, NetworkAddress]]:
        # An acknowledgement that is waiting for its delay goes out now, with the
        # data written since the last call, rather than in a packet of its own later.
        if self._data_written:
            self._data_written = False
            space = self._spaces.get(tls.Epoch.ONE_RTT)
            if space is not None and space.ack_at is not None and space.ack_at > now:
                space.ack_at = now
        return super().datagrams_to_send(now)

    def receive_datagram(self, data: bytes, addr: NetworkAddress, now: float) -> None:
        # Once a close is asked for, nothing more is processed, so that the
        # acknowledgement sent with the close covers exactly what was (aioquic
        # itself ignores what arrives once the close has been sent).
        if self._close_pending:
            return
        super().receive_datagram(data, addr, now)

    def _write_connection_close_frame(
        self,
        builder: QuicPacketBuilder,
        epoch: tls.Epoch,
        error_code: int,
        frame_type: int | None,
        reason_phrase: str,
    ) -> None:
        if epoch == tls.Epoch.ONE_RTT:
            self._write_closing_ack(builder, reason_phrase)
        super()._write_connection_close_frame(
            builder=builder,
            epoch=epoch,
            error_code=error_code,
            frame_type=frame_type,
            reason_phrase=reason_phrase,
        )

    def _write_closing_ack(self, builder: QuicPacketBuilder, reason_phrase: str) -> None:
        """Acknowledge every application packet received, ahead of the close frame
        (whose room is kept: older ranges that do not fit are left out)."""
        space = self._spaces[tls.Epoch.ONE_RTT]
        if len(space.ack_queue) == 0:
            return
        close_size = TRANSPORT_CLOSE_FRAME_CAPACITY + len(reason_phrase.encode("utf8"))
        if builder.remaining_buffer_space < ACK_FRAME_CAPACITY + close_size:
            return
        buf = builder.start_frame(QuicFrameType.ACK, capacity=ACK_FRAME_CAPACITY)
        push_ack_frame(buf, space.ack_queue, 0, builder.remaining_buffer_space - close_size)
        space.ack_at = None

    def send_pending(self, stream_id: int) -> bool:
        """Whether data or the FIN written to a stream awaits acknowledgement (False
        for a stream that was reset, finished and discarded, or never opened)."""
        if stream_id in self._whole_live:
            return True
        stream = self._streams.get(stream_id)
        if stream is None:
            return False
        sender = stream.sender
        if sender.is_finished or sender._reset_error_code is not None:
            return False
        return sender._buffer_stop > sender._buffer_start or (
            sender._buffer_fin is not None and not sender._acked_fin
        )

    def can_open_stream(self, *, unidirectional: bool) -> bool:
        """Whether the peer's stream limit allows one more local stream right now."""
        stream_id = self.get_next_available_stream_id(is_unidirectional=unidirectional)
        limit = self._remote_max_streams_uni if unidirectional else self._remote_max_streams_bidi
        return stream_id // 4 < limit and self.room_for_stream()

    def room_for_stream(self) -> bool:
        """Whether fewer than :data:`MAX_LIVE_STREAMS` streams are tracked now."""
        return len(self._streams) + len(self._whole_live) < MAX_LIVE_STREAMS

    @property
    def whole_streams_pending(self) -> bool:
        """Whether a stream sent with :meth:`send_whole_uni_stream` awaits acknowledgement."""
        return bool(self._whole_live)

    def stream_is_blocked(self, stream_id: int) -> bool:
        """Whether a local stream waits for the peer to allow more streams."""
        stream = self._streams.get(stream_id)
        return stream is not None and stream.is_blocked

    @property
    def closing(self) -> bool:
        """Whether the connection is closing, draining or closed (by either side)."""
        return self._close_event is not None

    def close_info(self) -> tuple[int, str] | None:
        event = self._close_event
        if event is None:
            return None
        return event.error_code, event.reason_phrase

    @property
    def closed_by_peer(self) -> bool:
        """Whether the peer sent CONNECTION_CLOSE (we are draining)."""
        return self._state == QuicConnectionState.DRAINING

    @property
    def pending_datagrams(self) -> int:
        return len(self._datagrams_pending)

    @property
    def close_pending(self) -> bool:
        return self._close_pending

    @property
    def remote_max_datagram_frame_size(self) -> int | None:
        return self._remote_max_datagram_frame_size

    def peer_certificate(self) -> Any:
        return self.tls._peer_certificate

    @property
    def max_packet_size(self) -> int:
        """Largest UDP payload the connection sends."""
        return self._max_datagram_size

    @property
    def stream_ids(self) -> KeysView[int]:
        """The streams aioquic still keeps (a live view): finished ones are discarded."""
        return self._streams.keys()
