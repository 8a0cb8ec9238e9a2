"""The shortcuts FlowControlledQuicConnection takes around aioquic, held to aioquic's
own behaviour on a sans-IO connection pair (no sockets, a virtual clock):

- a whole peer unidirectional stream (offset 0 and FIN in one frame, the next one
  in order) is delivered without a QuicStream, exactly once, also when packets
  are reordered, lost, retransmitted and arrive twice;
- an acknowledgement waiting for its delay leaves with the next data written,
  not in a packet of its own;
- a probe timeout only probes;
- nothing is paced, a full packet ends the visit of the waiting streams, and
  local streams wait while MAX_LIVE_STREAMS are tracked.
"""

from __future__ import annotations

import random
from collections import Counter, deque
from typing import Any

import pytest
from aioquic import tls
from aioquic.quic import events
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.packet_builder import QuicPacketBuilder
from aioquic.tls import load_pem_private_key, load_pem_x509_certificates

from clutchcall import transport
from clutchcall.transport import _quic
from clutchcall.transport._quic import UNI_STREAM_WINDOW, FlowControlledQuicConnection

pytestmark = pytest.mark.timeout(60)

CLIENT_ADDR = ("127.0.0.1", 40000)
SERVER_ADDR = ("127.0.0.1", 4433)
CERT = transport.generate_self_signed()


class Pair:
    """A client and a server connection joined by a virtual wire."""

    def __init__(self, *, fast: bool, datagrams: bool = False) -> None:
        server_config = QuicConfiguration(is_client=False, alpn_protocols=["moq-00"])
        server_config.certificate = load_pem_x509_certificates(CERT.cert_pem)[0]
        server_config.private_key = load_pem_private_key(CERT.key_pem)
        client_config = QuicConfiguration(is_client=True, alpn_protocols=["moq-00"])
        client_config.verify_mode = 0  # ssl.CERT_NONE
        if datagrams:
            client_config.max_datagram_frame_size = server_config.max_datagram_frame_size = 65536
        self.now = 0.0
        self.client = FlowControlledQuicConnection(configuration=client_config)
        self.server = FlowControlledQuicConnection(
            configuration=server_config,
            original_destination_connection_id=self.client.original_destination_connection_id,
        )
        self.received: Counter[int] = Counter()
        self.data: dict[int, bytes] = {}
        self.handshake_done = False
        self.lengths: dict[int, list[tuple[int, bool]]] = {}
        self.resets: dict[int, int] = {}
        self.datagrams: list[bytes] = []
        self.client.connect(SERVER_ADDR, now=self.now)
        self.exchange()
        assert self.handshake_done
        self.server.whole_uni_streams = fast

    def to_server(self) -> list[bytes]:
        return [data for data, _ in self.client.datagrams_to_send(now=self.now)]

    def to_client(self) -> list[bytes]:
        return [data for data, _ in self.server.datagrams_to_send(now=self.now)]

    def deliver(self, datagrams: list[bytes]) -> None:
        for data in datagrams:
            self.server.receive_datagram(data, CLIENT_ADDR, now=self.now)
        for event in self.events(self.server, events.QuicEvent):
            if isinstance(event, events.HandshakeCompleted):
                self.handshake_done = True
            if isinstance(event, events.StreamReset):
                self.resets[event.stream_id] = event.error_code
            if isinstance(event, events.DatagramFrameReceived):
                self.datagrams.append(event.data)
            if not isinstance(event, events.StreamDataReceived):
                continue
            self.received[event.stream_id] += 1
            self.lengths.setdefault(event.stream_id, []).append((len(event.data), event.end_stream))
            self.data[event.stream_id] = self.data.get(event.stream_id, b"") + event.data

    def answer(self) -> None:
        for data in self.to_client():
            self.client.receive_datagram(data, SERVER_ADDR, now=self.now)
        self.events(self.client, events.QuicEvent)

    def exchange(self, rounds: int = 10) -> None:
        for _ in range(rounds):
            self.now += 0.005
            for conn in (self.client, self.server):
                timer = conn.get_timer()
                if timer is not None and timer <= self.now:
                    conn.handle_timer(now=self.now)
            self.deliver(self.to_server())
            self.answer()

    @staticmethod
    def events(conn: FlowControlledQuicConnection, kind: type) -> list[events.QuicEvent]:
        found = []
        while (event := conn.next_event()) is not None:
            if isinstance(event, kind):
                found.append(event)
        return found

    def send_streams(self, count: int, *, whole: bool = False) -> list[int]:
        """``count`` one-frame streams from the client, through aioquic's stream
        state or (``whole``) without it."""
        ids = []
        for _ in range(count):
            stream_id = self.client.get_next_available_stream_id(is_unidirectional=True)
            if whole:
                assert self.client.send_whole_uni_stream(payload(stream_id)) == stream_id
            else:
                self.client.send_stream_data(stream_id, payload(stream_id), end_stream=True)
            ids.append(stream_id)
        return ids


def payload(stream_id: int) -> bytes:
    return stream_id.to_bytes(4, "big") + bytes(76)


def run_streams(fast: bool, seed: int, *, whole: bool = False) -> Pair:
    """Many rounds of 40 whole streams, with packets reordered, delayed past their
    retransmission, dropped and duplicated on the way to the server."""
    rng = random.Random(seed)
    pair = Pair(fast=fast)
    held: list[bytes] = []
    sent: list[int] = []
    for _ in range(60):
        sent += pair.send_streams(40, whole=whole)
        pair.now += 0.002
        datagrams = pair.to_server()
        rng.shuffle(datagrams)
        kept = []
        for data in datagrams:
            roll = rng.random()
            if roll < 0.05:
                continue  # lost: the client retransmits its frames
            if roll < 0.15:
                held.append(data)  # arrives late, maybe after its retransmission
                continue
            kept.append(data)
            if roll > 0.95:
                kept.append(data)  # the same datagram twice
        if held and rng.random() < 0.3:
            kept.append(held.pop(0))
        pair.deliver(kept)
        pair.answer()
        pair.exchange(rounds=1)
    pair.deliver(held)
    pair.exchange(rounds=80)  # every loss recovered
    pair.sent = sent  # type: ignore[attr-defined]
    return pair


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_whole_streams_arrive_once_each_with_or_without_the_fast_path(seed: int) -> None:
    fast, slow = run_streams(True, seed), run_streams(False, seed)
    whole = run_streams(True, seed, whole=True)
    for pair in (fast, slow, whole):
        sent = pair.sent  # type: ignore[attr-defined]
        assert set(pair.received) == set(sent)
        for stream_id in sent:
            # Once each: a stream split over two packets comes in two parts, and
            # only the last one ends it; a copy would double the data.
            assert pair.data[stream_id] == payload(stream_id)
            ends = [end for _, end in pair.lengths[stream_id]]
            assert ends[-1] and ends.count(True) == 1, pair.lengths[stream_id]
    # More streams than the peer may have open at once went through, so the fast
    # path gives back stream credit as aioquic does for the streams it discards.
    assert len(fast.sent) > UNI_STREAM_WINDOW // 2  # type: ignore[attr-defined]
    assert fast.server._local_max_streams_uni.used == len(fast.sent)  # type: ignore[attr-defined]
    # The fast path kept no state for the streams it delivered.
    assert len(fast.server._streams) < len(slow.server._streams) + 5
    # Nor did the sender of whole streams, once they were all acknowledged (the
    # datagrams dropped on the way held some: those were sent again).
    client = whole.client
    assert len(client._streams) < 5 and not client.whole_streams_pending
    assert client._whole_lost == deque() and client._whole_fresh == deque()
    assert not any(client.send_pending(i) for i in whole.sent)  # type: ignore[attr-defined]


def plain_packets(whole: bool) -> list[bytes]:
    """The client's packets (before encryption) carrying three one-frame streams."""
    pair = Pair(fast=True)
    pair.client._packet_number = 100  # the same packet numbers on every run
    seal = pair.client._cryptos[tls.Epoch.ONE_RTT].send
    encrypt = seal.encrypt_packet
    sent: list[bytes] = []

    def keep(header: bytes, payload: bytes, number: int) -> bytes:
        sent.append(payload)
        return encrypt(header, payload, number)

    seal.encrypt_packet = keep  # type: ignore[method-assign,assignment]
    pair.send_streams(3, whole=whole)
    pair.to_server()
    return sent


def test_whole_streams_go_out_as_the_same_frames_aioquic_writes() -> None:
    """Byte for byte: the same STREAM frames (offset 0, length, FIN) in the same
    packet, so the peer cannot tell the two senders apart."""
    through_aioquic = plain_packets(whole=False)
    assert through_aioquic and plain_packets(whole=True) == through_aioquic


def test_the_fast_path_lets_the_peer_open_more_streams_than_its_window() -> None:
    pair = Pair(fast=True)
    total = 0
    while total < 2 * UNI_STREAM_WINDOW:
        pair.send_streams(200)
        total += 200
        pair.exchange(rounds=2)
    pair.exchange(rounds=5)
    assert len(pair.received) == total
    assert len(pair.server._streams) < 10


def test_a_pending_ack_rides_with_the_next_data() -> None:
    pair = Pair(fast=True)
    pair.send_streams(1)
    pair.deliver(pair.to_server())
    space = pair.server._spaces[next(iter(pair.server._spaces)).ONE_RTT]
    assert space.ack_at is not None and space.ack_at > pair.now  # waiting for its delay
    assert pair.to_client() == []  # nothing due yet: no packet of its own
    stream_id = pair.server.get_next_available_stream_id(is_unidirectional=True)
    pair.server.send_stream_data(stream_id, b"reply", end_stream=True)
    datagrams = pair.to_client()
    assert len(datagrams) == 1  # the data, and the ACK with it
    assert space.ack_at is None
    acked_before = pair.client._loss.bytes_in_flight
    for data in datagrams:
        pair.client.receive_datagram(data, SERVER_ADDR, now=pair.now)
    assert pair.client._loss.bytes_in_flight < acked_before  # it was an ACK


@pytest.mark.parametrize("late", [True, False], ids=["late-ack", "lost"])
def test_a_probe_timeout_does_not_declare_data_lost(late: bool) -> None:
    """An acknowledgement that comes after the probe timeout still settles the data
    it covers (aioquic alone would have declared the packet lost, ignore the late
    acknowledgement and wait for the copy's); data that was really lost is sent
    again once the probe is acknowledged."""
    pair = Pair(fast=True)
    (stream_id,) = pair.send_streams(1)
    original = pair.to_server()
    if late:
        pair.deliver(original)  # the server has it, its ACK is slow to come
    timer = pair.client.get_timer()
    assert timer is not None
    pair.now = timer
    pair.client.handle_timer(now=pair.now)  # the probe timeout
    probe = pair.to_server()
    assert probe, "a probe is sent"
    assert pair.client.send_pending(stream_id)
    if late:
        pair.now += 0.03  # past the server's ACK delay
        pair.answer()
        # The late ACK covers the original packet: the data is settled, with
        # nothing sent again.
        assert not pair.client.send_pending(stream_id)
        assert pair.received[stream_id] == 1
    else:
        pair.deliver(probe)
        pair.exchange(rounds=5)
        assert not pair.client.send_pending(stream_id)
        assert pair.data[stream_id] == payload(stream_id)


def test_one_pass_sends_every_waiting_frame_without_pacing() -> None:
    """Frames written at once leave in one pass, as far as the congestion window
    allows: aioquic's pacer, once a round trip has set its rate, would hold most
    of them back for later passes."""
    pair = Pair(fast=True)
    ids = pair.send_streams(60)  # about 5 KB, inside the congestion window
    pair.deliver(pair.to_server())
    assert sorted(pair.received) == ids


def test_a_full_packet_ends_the_visit_of_the_waiting_streams(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each packet visits the streams up to the first that does not fit, not every
    waiting stream (which made a pass quadratic in the frames waiting)."""
    visits = 0
    write = QuicConnection._write_stream_frame

    def counting(self: QuicConnection, **kwargs: Any) -> int:
        nonlocal visits
        visits += 1
        return write(self, **kwargs)

    monkeypatch.setattr(QuicConnection, "_write_stream_frame", counting)
    pair = Pair(fast=True)
    ids = pair.send_streams(100)
    datagrams = pair.to_server()
    pair.deliver(datagrams)
    assert sorted(pair.received) == ids
    assert len(datagrams) >= 5
    # A stream is visited once to send its frame (aioquic alone would visit it again
    # to find it has nothing left), and a packet ends on one visit that does not
    # fit. aioquic alone visits every waiting stream for each packet.
    assert visits <= len(ids) + 2 * len(datagrams), (visits, len(datagrams))


def test_local_streams_wait_while_max_live_streams_are_tracked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_quic, "MAX_LIVE_STREAMS", 10)
    pair = Pair(fast=True)
    pair.send_streams(10)
    assert not pair.client.can_open_stream(unidirectional=True)
    assert not pair.client.room_for_stream()
    pair.exchange(rounds=3)  # acknowledged, then discarded by the next pass
    assert pair.client.can_open_stream(unidirectional=True)
    assert len(pair.received) == 10


def test_a_whole_stream_is_pending_until_acknowledged_and_sent_again_if_lost() -> None:
    pair = Pair(fast=True)
    (stream_id,) = pair.send_streams(1, whole=True)
    client = pair.client
    assert client.send_pending(stream_id) and client.whole_streams_pending
    assert client.send_buffer_size(stream_id) == len(payload(stream_id))
    assert pair.to_server()  # lost on the way
    assert client.send_pending(stream_id)
    pair.exchange(rounds=20)  # the probe, its ACK, the loss declared, the copy
    assert pair.received[stream_id] == 1 and pair.data[stream_id] == payload(stream_id)
    assert not client.send_pending(stream_id) and not client.whole_streams_pending
    assert client.send_buffer_size(stream_id) == 0


@pytest.mark.parametrize("sent", [True, False], ids=["sent-and-lost", "never-sent"])
def test_a_reset_whole_stream_reaches_the_peer_as_a_reset(sent: bool) -> None:
    """The peer learns the stream's end either way (else the stream ID it skipped
    would hold one of its stream slots for good), and nothing is sent again."""
    pair = Pair(fast=True)
    (stream_id,) = pair.send_streams(1, whole=True)
    if sent:
        assert pair.to_server()  # lost on the way
    pair.client.reset_stream(stream_id, 5)
    assert not pair.client.send_pending(stream_id) and not pair.client.whole_streams_pending
    assert pair.client.send_buffer_size(stream_id) == 0
    pair.exchange(rounds=20)
    assert pair.resets == {stream_id: 5}
    assert stream_id not in pair.received
    assert pair.client._streams == {}  # the reset was acknowledged and forgotten
    # A stream sent after it is unaffected.
    (later,) = pair.send_streams(1, whole=True)
    pair.exchange(rounds=3)
    assert pair.data[later] == payload(later)


def test_whole_streams_wait_for_the_peers_connection_credit() -> None:
    pair = Pair(fast=True)
    client = pair.client
    client._remote_max_data = client._remote_max_data_used + 100  # room for one frame
    ids = pair.send_streams(3, whole=True)
    pair.deliver(pair.to_server())
    assert list(pair.received) == ids[:1]
    client._remote_max_data += 1000  # as a MAX_DATA frame would
    pair.exchange(rounds=3)
    assert sorted(pair.received) == ids
    assert client._remote_max_data_used == 3 * len(payload(ids[0]))


def test_what_a_whole_stream_cannot_carry_takes_aioquics_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pair = Pair(fast=True)
    client = pair.client
    assert client.send_whole_uni_stream(bytes(_quic.WHOLE_STREAM_MAX + 1)) is None
    client._remote_max_streams_uni = client.get_next_available_stream_id(True) // 4
    assert client.send_whole_uni_stream(b"x") is None  # the peer allows no new stream
    assert not client.whole_streams_pending
    monkeypatch.setattr(client, "_quic_logger", object())  # a qlog is being written
    client._remote_max_streams_uni += 10
    assert client.send_whole_uni_stream(b"x") is None


def test_unacknowledged_whole_streams_count_towards_max_live_streams(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_quic, "MAX_LIVE_STREAMS", 10)
    pair = Pair(fast=True)
    pair.send_streams(10, whole=True)
    assert pair.client.send_whole_uni_stream(b"x") is None
    assert not pair.client.can_open_stream(unidirectional=True)
    pair.exchange(rounds=3)
    assert pair.client.can_open_stream(unidirectional=True)
    assert len(pair.received) == 10


class PacketCounter:
    """Counts the packets a builder starts (aioquic's builder, patched)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        start = QuicPacketBuilder.start_packet

        def counting(builder: QuicPacketBuilder, *args: Any, **kwargs: Any) -> None:
            self.count += 1
            start(builder, *args, **kwargs)

        monkeypatch.setattr(QuicPacketBuilder, "start_packet", counting)

    def during(self, send: Any) -> tuple[int, Any]:
        before = self.count
        result = send()
        return self.count - before, result


def test_a_pass_starts_no_packet_after_the_last_one_it_needs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """aioquic builds packets until one comes out empty; here a packet that had
    room left ends the pass (as does one that carried the ACK that was due)."""
    pair = Pair(fast=True)
    packets = PacketCounter(monkeypatch)
    ids = pair.send_streams(3, whole=True)
    started, datagrams = packets.during(pair.to_server)
    assert (started, len(datagrams)) == (1, 1)
    pair.deliver(datagrams)
    pair.now += 0.03  # the server's ACK is due
    started, datagrams = packets.during(pair.to_client)
    assert (started, len(datagrams)) == (1, 1)
    pair.client.receive_datagram(datagrams[0], SERVER_ADDR, now=pair.now)
    assert not any(pair.client.send_pending(i) for i in ids)
    # A full packet does not end the pass: 30 frames fill three packets (each with
    # room left, too little for one more frame), a long stream three more.
    ids = pair.send_streams(30, whole=True)
    datagrams = pair.to_server()
    pair.deliver(datagrams)
    assert len(datagrams) == 3 and sorted(pair.received)[-30:] == ids
    stream_id = pair.client.get_next_available_stream_id()
    pair.client.send_stream_data(stream_id, bytes(3000), end_stream=True)
    started, datagrams = packets.during(pair.to_server)
    assert len(datagrams) == 3 and started <= 4
    pair.deliver(datagrams)
    assert pair.data[stream_id] == bytes(3000)


def test_what_did_not_fit_beside_a_packet_with_room_still_leaves_in_the_same_pass(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A datagram too big for the room a packet has left, and the stream credit
    that discarding the peer's streams frees, go out in a packet of their own."""
    pair = Pair(fast=False, datagrams=True)  # the server discards the client's streams
    ids = pair.send_streams(4, whole=True)  # written first, then the datagram
    pair.client.send_datagram_frame(bytes(1000))
    datagrams = pair.to_server()
    assert len(datagrams) == 2
    pair.deliver(datagrams)
    assert sorted(pair.received) == ids and pair.datagrams == [bytes(1000)]
    limit = pair.server._local_max_streams_uni
    # As if the client were about to run out of streams: the server announces more
    # as soon as it discards the four finished ones, which it does while writing
    # the packet that carries its ACK, after that packet's MAX_STREAMS slot.
    limit.value = limit.sent = limit.used + 1
    pair.now += 0.03
    pair.answer()
    assert limit.value == limit.used + 5 and limit.sent == limit.value
