"""The session state machine: two sessions back to back, and a peer that misbehaves."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from moqt_helpers import Link, established

from clutchcall.moqt import messages as m
from clutchcall.moqt import session as session_module
from clutchcall.moqt.errors import (
    MoqtProtocolError,
    MoqtUsageError,
    PublishDoneCode,
    RequestsBlockedError,
    SessionErrorCode,
    StreamResetCode,
)
from clutchcall.moqt.events import (
    Event,
    GoawayReceived,
    ObjectReceived,
    PublishDoneReceived,
    PublishNamespaceAccepted,
    PublishNamespaceCancelled,
    PublishNamespaceDoneReceived,
    PublishNamespaceReceived,
    PublishNamespaceRejected,
    RequestLimitRaised,
    RequestRefused,
    RequestsBlockedReceived,
    SessionClosed,
    SetupCompleted,
    StopSending,
    StreamReset,
    StreamWrite,
    SubscribeAccepted,
    SubscribeNamespaceAccepted,
    SubscribeNamespaceReceived,
    SubscribeNamespaceRejected,
    SubscribeReceived,
    SubscribeRejected,
    SubscribeUpdateReceived,
    UnsubscribeNamespaceReceived,
    UnsubscribeReceived,
)
from clutchcall.moqt.session import Role, Session, SessionState, authorization_token
from clutchcall.moqt.version import DRAFT_14
from clutchcall.moqt.wire import Location, Parameters

NS = (b"voice", b"CA1")


def raw(session: Session, *messages: m.Message) -> list[Event]:
    return session.receive_control(b"".join(m.encode_message(msg) for msg in messages))


def server_ready(**kwargs: object) -> Session:
    """A server that has completed SETUP with a client whose messages we write by hand."""
    server = Session(Role.SERVER, **kwargs)  # type: ignore[arg-type]
    raw(server, m.ClientSetup((DRAFT_14,), ((2, 100),)))
    server.control_data_to_send()
    return server


def client_ready(**kwargs: object) -> Session:
    client = Session(Role.CLIENT, **kwargs)  # type: ignore[arg-type]
    client.control_data_to_send()
    raw(client, m.ServerSetup(DRAFT_14, ((2, 101),)))
    return client


def expect_violation(code: int, session: Session, *messages: m.Message) -> MoqtProtocolError:
    with pytest.raises(MoqtProtocolError) as info:
        raw(session, *messages)
    assert info.value.error_code == code
    assert session.state == SessionState.CLOSED
    assert session.termination is not None and session.termination.by_peer
    return info.value


def subscribed(link: Link, track: str = "uplink", **kwargs: object) -> tuple[int, int]:
    """Subscribe from the client, accept on the server; returns (request id, alias)."""
    request_id = link.client.session.subscribe(NS, track, **kwargs)  # type: ignore[arg-type]
    link.pump()
    (received,) = link.take(link.server)
    assert isinstance(received, SubscribeReceived)
    alias = link.server.session.accept_subscribe(received.request_id)
    link.pump()
    (accepted,) = link.take(link.client)
    assert accepted == SubscribeAccepted(request_id, alias, 0, 1, None, ())
    return request_id, alias


# --- Setup ---------------------------------------------------------------------------


def test_setup_completes_on_both_sides() -> None:
    link = Link(Session(Role.CLIENT, path="/relay?x=1", authority="example.com:443"))
    link.pump()
    (server_event,) = link.take(link.server)
    (client_event,) = link.take(link.client)
    assert isinstance(server_event, SetupCompleted)
    assert server_event.version == DRAFT_14
    assert server_event.path == b"/relay?x=1"
    assert server_event.authority == b"example.com:443"
    assert server_event.peer_implementation == "clutchcall"
    assert server_event.peer_max_request_id == 201  # 100 odd server IDs: 1..199
    assert isinstance(client_event, SetupCompleted)
    assert client_event.path is None
    assert client_event.peer_max_request_id == 200  # 100 even client IDs: 0..198
    assert link.client.session.state == link.server.session.state == SessionState.ESTABLISHED
    assert link.client.session.version == DRAFT_14


def test_client_setup_bytes() -> None:
    client = Session(Role.CLIENT, path="/", implementation=None, request_window=50)
    payload = b"\x01" + bytes.fromhex("c0000000ff00000e") + b"\x02" + b"\x01\x01/" + b"\x02\x40\x65"
    assert client.control_data_to_send() == b"\x20" + len(payload).to_bytes(2, "big") + payload
    assert client.control_data_to_send() == b""


def test_server_rejects_unknown_version() -> None:
    server = Session(Role.SERVER)
    expect_violation(
        SessionErrorCode.VERSION_NEGOTIATION_FAILED, server, m.ClientSetup((0xFF00000D, 1))
    )
    assert server.control_data_to_send() == b""
    assert server.receive_control(b"anything") == []


def test_client_rejects_version_it_did_not_offer() -> None:
    client = Session(Role.CLIENT)
    expect_violation(SessionErrorCode.VERSION_NEGOTIATION_FAILED, client, m.ServerSetup(0xFF00000D))


@pytest.mark.parametrize(
    ("params", "code"),
    [
        (((1, b"/"),), SessionErrorCode.INVALID_PATH),
        (((5, b"host"),), SessionErrorCode.INVALID_AUTHORITY),
        (((2, 1), (2, 3)), SessionErrorCode.PROTOCOL_VIOLATION),
    ],
)
def test_client_rejects_bad_server_setup(params: Parameters, code: int) -> None:
    expect_violation(code, Session(Role.CLIENT), m.ServerSetup(DRAFT_14, params))


@pytest.mark.parametrize(
    ("params", "code"),
    [
        (((1, b"/"),), SessionErrorCode.INVALID_PATH),
        (((5, b"host"),), SessionErrorCode.INVALID_AUTHORITY),
    ],
)
def test_webtransport_server_rejects_path_and_authority(params: Parameters, code: int) -> None:
    expect_violation(
        code, Session(Role.SERVER, webtransport=True), m.ClientSetup((DRAFT_14,), params)
    )


def test_setup_tolerates_unknown_and_repeated_parameters() -> None:
    server = Session(Role.SERVER, setup_parameters=((0x3E, 1),))
    token = authorization_token(b"secret")
    (event,) = raw(server, m.ClientSetup((0x1, DRAFT_14), ((0x20, 1), (0x20, 2), token, token)))
    assert isinstance(event, SetupCompleted)
    assert event.peer_max_request_id == 0
    assert token == (3, b"\x03\x00secret")
    reply = m.ControlStreamParser().feed(server.control_data_to_send())
    assert reply == [m.ServerSetup(DRAFT_14, ((2, 200), (7, b"clutchcall"), (0x3E, 1)))]


@pytest.mark.parametrize(
    "message",
    [
        m.Subscribe(0, NS, b"x"),
        m.MaxRequestId(5),
        m.Goaway(),
        m.ServerSetup(DRAFT_14),
    ],
)
def test_messages_before_setup_are_violations(message: m.Message) -> None:
    expect_violation(SessionErrorCode.PROTOCOL_VIOLATION, Session(Role.SERVER), message)


def test_second_setup_is_a_violation() -> None:
    expect_violation(
        SessionErrorCode.PROTOCOL_VIOLATION, server_ready(), m.ClientSetup((DRAFT_14,))
    )
    expect_violation(SessionErrorCode.PROTOCOL_VIOLATION, client_ready(), m.ServerSetup(DRAFT_14))


def test_constructor_usage_errors() -> None:
    with pytest.raises(MoqtUsageError):
        Session(Role.SERVER, path="/")
    with pytest.raises(MoqtUsageError):
        Session(Role.CLIENT, path="/", webtransport=True)
    with pytest.raises(MoqtUsageError):
        Session(Role.CLIENT, versions=(0xFF00000D,))
    with pytest.raises(MoqtUsageError):
        Session(Role.CLIENT, request_window=-1)


def test_requests_before_setup_are_usage_errors() -> None:
    client = Session(Role.CLIENT)
    with pytest.raises(MoqtUsageError):
        client.subscribe(NS, "uplink")
    with pytest.raises(MoqtUsageError):
        client.goaway()


def test_control_stream_end_is_a_violation() -> None:
    link = established()
    with pytest.raises(MoqtProtocolError):
        link.server.session.receive_control_end()
    assert link.server.session.receive_control_end() == []


# --- The whole voice flow --------------------------------------------------------------


def test_ten_thousand_objects_in_order() -> None:
    link = established()
    client, server = link.client.session, link.server.session

    announce = server.publish_namespace(NS)
    link.pump()
    (received,) = link.take(link.client)
    assert received == PublishNamespaceReceived(announce, NS, ())
    client.accept_publish_namespace(announce)
    link.pump()
    assert link.take(link.server) == [PublishNamespaceAccepted(announce, NS)]

    request_id, _ = subscribed(link, "downlink")
    (sub,) = server._peer_subscriptions  # the publisher's own request ID for it
    started = time.perf_counter()
    for n in range(10_000):
        server.send_object(sub, n, b"frame-%d" % n, timestamp_us=20_000 * n)
        if n % 500 == 0:
            link.pump()
    link.pump()
    elapsed = time.perf_counter() - started
    received_objects = link.take(link.client)
    assert len(received_objects) == 10_000
    for n, event in enumerate(received_objects):
        assert isinstance(event, ObjectReceived)
        assert (event.request_id, event.group_id, event.object_id) == (request_id, n, 0)
        assert event.payload == b"frame-%d" % n
        assert event.timestamp_us == 20_000 * n
        assert event.track_name == b"downlink" and event.namespace == NS
        assert not event.via_datagram
    assert elapsed < 20

    client.unsubscribe(request_id)
    link.pump()
    assert link.take(link.server) == [UnsubscribeReceived(sub)]
    assert server.send_object(sub, 10_000, b"late") is None

    server.publish_namespace_done(NS)
    link.pump()
    assert link.take(link.client) == [PublishNamespaceDoneReceived(NS)]

    client.close()
    assert client.state == SessionState.CLOSED
    assert client.termination is not None
    assert client.termination.error_code == SessionErrorCode.NO_ERROR
    assert not client.termination.by_peer
    assert server.connection_lost(0, "bye") == [SessionClosed(0, "bye")]
    assert server.connection_lost(0, "again") == []


# --- Request ID accounting -------------------------------------------------------------


def test_requests_blocked_then_unblocked() -> None:
    link = Link(server=Session(Role.SERVER, request_window=1))
    link.pump()
    client = link.client.session
    client.subscribe(NS, "a")
    # The server raised the limit as soon as the first request arrived.
    link.pump()
    events = link.take(link.client)
    assert RequestLimitRaised(4) in events
    assert client.peer_max_request_id == 4
    client.subscribe(NS, "b")
    with pytest.raises(RequestsBlockedError):
        client.subscribe(NS, "c")
    with pytest.raises(RequestsBlockedError):
        client.subscribe(NS, "c")  # REQUESTS_BLOCKED goes out only once per limit
    link.pump()
    server_events = link.take(link.server)
    assert RequestsBlockedReceived(4) in server_events
    assert sum(isinstance(e, RequestsBlockedReceived) for e in server_events) == 1
    assert client.next_request_id == 4


def test_no_window_means_no_requests_and_manual_raise() -> None:
    link = Link(
        Session(Role.CLIENT, send_requests_blocked=False),
        Session(Role.SERVER, request_window=0),
    )
    link.pump()
    link.take(link.client)
    client, server = link.client.session, link.server.session
    with pytest.raises(RequestsBlockedError):
        client.subscribe(NS, "a")
    assert client.control_data_to_send() == b""
    server.raise_request_limit(2)
    with pytest.raises(MoqtUsageError):
        server.raise_request_limit(2)
    link.pump()
    assert link.take(link.client) == [RequestLimitRaised(2)]
    assert client.subscribe(NS, "a") == 0


def test_sliding_window_never_blocks_a_steady_peer() -> None:
    link = Link(server=Session(Role.SERVER, request_window=4))
    link.pump()
    client, server = link.client.session, link.server.session
    for i in range(40):
        request_id = client.subscribe(NS, f"t{i}")
        link.pump()
        (received,) = [e for e in link.take(link.server) if isinstance(e, SubscribeReceived)]
        server.reject_subscribe(received.request_id)
        link.pump()
        assert SubscribeRejected(request_id, 4, "") in link.take(link.client)
    assert client.next_request_id == 80


@pytest.mark.parametrize(
    ("request_id", "code"),
    [
        (1, SessionErrorCode.INVALID_REQUEST_ID),  # odd: the server's parity
        (400, SessionErrorCode.TOO_MANY_REQUESTS),  # beyond the granted 200
    ],
)
def test_bad_peer_request_ids(request_id: int, code: int) -> None:
    expect_violation(code, server_ready(), m.Subscribe(request_id, NS, b"x"))


def test_request_ids_may_arrive_out_of_order_but_not_twice() -> None:
    server = server_ready()
    raw(server, m.SubscribeNamespace(2, (b"a",)), m.PublishNamespace(0, NS))
    raw(server, m.Subscribe(6, NS, b"x"))
    expect_violation(SessionErrorCode.INVALID_REQUEST_ID, server, m.Subscribe(6, NS, b"y"))
    server = server_ready()
    raw(server, m.Subscribe(0, NS, b"x"), m.Unsubscribe(0))
    expect_violation(SessionErrorCode.INVALID_REQUEST_ID, server, m.Subscribe(0, NS, b"x"))


def test_data_before_setup_is_dropped() -> None:
    client = Session(Role.CLIENT)
    assert client.receive_datagram(b"\x04\x00\x00\x00x") == []
    assert client.receive_stream("k", b"\x10\x00\x00\x00") == []
    assert client.stream_commands_to_send() == [StopSending("k", StreamResetCode.CANCELLED)]


def test_publish_done_without_a_stream_count_keeps_late_streams() -> None:
    """moq-rs always reports 0 streams; the alias stays until the app lets it go."""
    client = client_ready()
    request_id = client.subscribe(NS, "a")
    raw(client, m.SubscribeOk(request_id, 3))
    client.control_data_to_send()
    assert raw(client, m.PublishDone(request_id, 200, 0, "OK")) == [
        PublishDoneReceived(request_id, 200, 0, "OK")
    ]
    (late,) = client.receive_stream("k", b"\x10\x03\x07\x00\x00\x01x", end=True)
    assert isinstance(late, ObjectReceived) and late.group_id == 7
    assert client.subscribe(NS, "a") == 2  # the same track may be subscribed again
    client.control_data_to_send()
    client.unsubscribe(request_id)  # forgets it; nothing goes on the wire
    assert client.control_data_to_send() == b""
    with pytest.raises(MoqtUsageError):
        client.subscribe_update(request_id, start=Location(0, 0))
    client.receive_stream("k2", b"\x10\x03\x08\x00\x00\x01x")
    assert client.stream_commands_to_send() == [StopSending("k2", StreamResetCode.CANCELLED)]


def test_max_request_id_must_increase() -> None:
    client = client_ready()
    raw(client, m.MaxRequestId(103))
    expect_violation(SessionErrorCode.PROTOCOL_VIOLATION, client, m.MaxRequestId(103))


# --- GOAWAY ----------------------------------------------------------------------------


def test_goaway_from_server() -> None:
    link = established()
    link.server.session.goaway(b"moqt://other/")
    with pytest.raises(MoqtUsageError):
        link.server.session.goaway()
    link.pump()
    assert link.take(link.client) == [GoawayReceived(b"moqt://other/")]
    with pytest.raises(MoqtUsageError):
        link.client.session.subscribe(NS, "uplink")
    with pytest.raises(MoqtUsageError):
        link.client.session.goaway(b"uri")
    expect_violation(SessionErrorCode.PROTOCOL_VIOLATION, link.client.session, m.Goaway())


def test_client_goaway_must_not_carry_a_uri() -> None:
    server = server_ready()
    expect_violation(SessionErrorCode.PROTOCOL_VIOLATION, server, m.Goaway(b"x"))
    server = server_ready()
    assert raw(server, m.Goaway()) == [GoawayReceived(b"")]


# --- Subscriptions -------------------------------------------------------------------


def test_subscribe_rejected() -> None:
    link = established()
    request_id = link.client.session.subscribe(NS, "uplink")
    link.pump()
    (received,) = link.take(link.server)
    assert isinstance(received, SubscribeReceived)
    assert received.forward and received.filter_type == m.FilterType.LARGEST_OBJECT
    link.server.session.reject_subscribe(received.request_id, 4, "no such track")
    with pytest.raises(MoqtUsageError):
        link.server.session.reject_subscribe(received.request_id)
    link.pump()
    assert link.take(link.client) == [SubscribeRejected(request_id, 4, "no such track")]
    with pytest.raises(MoqtUsageError):
        link.client.session.unsubscribe(request_id)


def test_subscribe_usage_errors() -> None:
    link = established()
    client = link.client.session
    client.subscribe(NS, "uplink")
    with pytest.raises(MoqtUsageError):
        client.subscribe(NS, "uplink")
    with pytest.raises(MoqtUsageError):
        client.subscribe(NS, "x", group_order=7)
    with pytest.raises(MoqtUsageError):
        client.subscribe((), "x")
    with pytest.raises(MoqtUsageError):
        client.subscribe(NS, 5)  # type: ignore[arg-type]
    with pytest.raises(MoqtUsageError):
        client.subscribe_update(99, start=Location(0, 0))
    with pytest.raises(MoqtUsageError):
        client.subscribe_update(0, start=Location(5, 0), end_group=3)
    with pytest.raises(MoqtUsageError):
        link.server.session.accept_subscribe(42)


def test_default_aliases_skip_explicit_ones() -> None:
    server = server_ready()
    raw(server, m.Subscribe(0, NS, b"a"), m.Subscribe(2, NS, b"b"), m.Subscribe(4, NS, b"c"))
    with pytest.raises(MoqtUsageError):
        server.send_object(0, 0, b"x")  # not accepted yet
    assert server.accept_subscribe(0, track_alias=1) == 1
    assert server.accept_subscribe(2) == 0
    assert server.accept_subscribe(4) == 2


def test_publish_done_before_subscribe_ok_ends_the_subscription() -> None:
    client = client_ready()
    request_id = client.subscribe(NS, "a")
    assert raw(client, m.PublishDone(request_id, 2, 0)) == [
        PublishDoneReceived(request_id, 2, 0, "")
    ]
    with pytest.raises(MoqtUsageError):
        client.unsubscribe(request_id)


def test_retired_aliases_are_remembered_up_to_a_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(session_module, "_RETIRED_ALIAS_MEMORY", 2)
    client = client_ready()
    for alias in range(3):
        request_id = client.subscribe(NS, f"t{alias}")
        raw(client, m.SubscribeOk(request_id, alias))
        client.unsubscribe(request_id)
    assert list(client._retired_aliases) == [1, 2]


def test_calls_after_close_are_usage_errors() -> None:
    client = client_ready()
    request_id = client.subscribe(NS, "a")
    client.close()
    with pytest.raises(MoqtUsageError):
        client.unsubscribe(request_id)


def test_duplicate_track_alias() -> None:
    client = client_ready()
    client.subscribe(NS, "a")
    client.subscribe(NS, "b")
    raw(client, m.SubscribeOk(0, 7))
    expect_violation(SessionErrorCode.DUPLICATE_TRACK_ALIAS, client, m.SubscribeOk(2, 7))


def test_explicit_alias_in_use_is_a_usage_error() -> None:
    link = established()
    subscribed(link, "a")
    link.client.session.subscribe(NS, "b")
    link.pump()
    (received,) = link.take(link.server)
    assert isinstance(received, SubscribeReceived)
    with pytest.raises(MoqtUsageError):
        link.server.session.accept_subscribe(received.request_id, track_alias=0)
    assert link.server.session.accept_subscribe(received.request_id, track_alias=9) == 9


@pytest.mark.parametrize(
    "messages",
    [
        [m.SubscribeOk(0, 1), m.SubscribeOk(0, 2)],
        [m.SubscribeOk(0, 1), m.SubscribeError(0, 1)],
        [m.SubscribeOk(4, 1)],  # never sent
        [m.SubscribeOk(1, 1)],  # the server's parity
        [m.PublishNamespaceOk(0)],  # a SUBSCRIBE, not a PUBLISH_NAMESPACE
        [m.PublishOk(0)],
        [m.FetchOk(0, 1, 0, Location(0, 0))],
        [m.TrackStatusOk(0, 0)],
        [m.PublishError(0, 1)],
        [m.FetchError(0, 1)],
        [m.TrackStatusError(0, 1)],
    ],
)
def test_bad_responses_are_violations(messages: list[m.Message]) -> None:
    client = client_ready()
    client.subscribe(NS, "a")
    expect_violation(SessionErrorCode.PROTOCOL_VIOLATION, client, *messages)


def test_responses_after_unsubscribe_are_ignored() -> None:
    client = client_ready()
    request_id = client.subscribe(NS, "a")
    client.unsubscribe(request_id)
    assert raw(client, m.SubscribeOk(request_id, 3), m.PublishDone(request_id, 0, 0)) == []
    assert raw(client, m.SubscribeError(request_id, 1)) == []


def test_second_subscription_to_one_track_is_a_violation() -> None:
    server = server_ready()
    raw(server, m.Subscribe(0, NS, b"up"))
    expect_violation(SessionErrorCode.PROTOCOL_VIOLATION, server, m.Subscribe(2, NS, b"up"))


def test_streams_before_subscribe_ok_are_held_then_delivered() -> None:
    link = established()
    client, server = link.client.session, link.server.session
    request_id = client.subscribe(NS, "uplink")
    server.receive_control(client.control_data_to_send())
    server.accept_subscribe(0)
    server.send_object(0, 1, b"early", timestamp_us=5)
    key = server.open_subgroup(0, 2)
    assert key is not None
    server.write_object(key, 0, b"a")
    # The data streams overtake SUBSCRIBE_OK.
    for command in server.stream_commands_to_send():
        assert isinstance(command, StreamWrite)
        assert client.receive_stream(("s", command.key), command.data, command.end) == []
    events = client.receive_control(server.control_data_to_send())
    assert [type(e) for e in events] == [SubscribeAccepted, ObjectReceived, ObjectReceived]
    assert [e.payload for e in events if isinstance(e, ObjectReceived)] == [b"early", b"a"]
    server.write_object(key, 1, b"b")
    server.close_subgroup(key)
    (command,) = server.stream_commands_to_send()
    assert isinstance(command, StreamWrite) and command.end and not command.open
    (late,) = client.receive_stream(("s", key), command.data, True)
    assert isinstance(late, ObjectReceived) and late.request_id == request_id
    assert late.object_id == 1 and late.group_id == 2 and late.subgroup_id == 0


def test_held_streams_are_dropped_when_the_subscribe_fails() -> None:
    client = client_ready()
    client.subscribe(NS, "uplink")
    client.control_data_to_send()
    header = b"\x10\x05\x00\x00"
    assert client.receive_stream("k1", header + b"\x00\x01x") == []
    assert client.receive_stream("k2", header + b"\x00\x01y", end=True) == []
    raw(client, m.SubscribeError(0, 4))
    assert client.stream_commands_to_send() == [StopSending("k1", StreamResetCode.CANCELLED)]
    assert client.receive_stream("k1", b"\x00\x01z", end=True) == []


def test_streams_for_unknown_aliases_are_stopped() -> None:
    client = client_ready()
    assert client.receive_stream("k", b"\x10\x05\x00\x00\x00\x01x") == []
    assert client.stream_commands_to_send() == [StopSending("k", StreamResetCode.CANCELLED)]
    assert client.receive_stream("k", b"more") == []
    assert client.receive_stream("k", b"", end=True) == []
    assert client.receive_stream("empty", b"", end=True) == []


def test_pending_stream_memory_is_bounded() -> None:
    client = client_ready(max_pending_stream_bytes=1000)
    client.subscribe(NS, "uplink")
    assert client.receive_stream("k", b"\x10\x05\x00\x00" + b"\x00\x40\x64" + b"x" * 100) == []
    assert client.stream_commands_to_send() == []
    client.receive_stream("k", b"\x00\x44\x00" + b"x" * 1024)
    assert client.stream_commands_to_send() == [StopSending("k", StreamResetCode.CANCELLED)]


def test_fetch_streams_are_stopped() -> None:
    client = client_ready()
    client.receive_stream("f", b"\x05\x00")
    assert client.stream_commands_to_send() == [StopSending("f", StreamResetCode.CANCELLED)]


def test_unsubscribe_resets_open_streams() -> None:
    link = established()
    client, server = link.client.session, link.server.session
    request_id, _ = subscribed(link)
    key = server.open_subgroup(0, 0, publisher_priority=3)
    assert key is not None
    server.write_object(key, 0, b"a", timestamp_us=1)
    link.pump()
    (first,) = link.take(link.client)
    assert isinstance(first, ObjectReceived) and first.publisher_priority == 3
    client.unsubscribe(request_id)
    link.pump()
    assert link.take(link.server) == [UnsubscribeReceived(0)]
    assert link.server.resets == [StreamReset(key, StreamResetCode.CANCELLED)]
    assert server.write_object(key, 1, b"b") is False
    server.close_subgroup(key)
    server.reset_subgroup(key)
    assert server.open_subgroup(0, 1) is None
    assert server.send_datagram(0, 1, b"x") is False
    with pytest.raises(MoqtUsageError):
        server.write_object(12345, 0, b"x")
    with pytest.raises(MoqtUsageError):
        server.send_object(5, 0, b"x")  # never a request ID of the peer


def test_unsubscribe_stops_incoming_streams() -> None:
    link = established()
    client, server = link.client.session, link.server.session
    request_id, _ = subscribed(link)
    key = server.open_subgroup(0, 0)
    assert key is not None
    server.write_object(key, 0, b"a")
    link.pump()
    link.take(link.client)
    client.unsubscribe(request_id)
    assert StopSending(("s", key), StreamResetCode.CANCELLED) in client.stream_commands_to_send()


def test_subgroup_writer_rules() -> None:
    link = established()
    server = link.server.session
    subscribed(link)
    key = server.open_subgroup(0, 4, subgroup_id=2, end_of_group=True, extensions=False)
    assert key is not None
    server.write_object(key, 3, b"x")
    with pytest.raises(MoqtUsageError):
        server.write_object(key, 3, b"y")
    with pytest.raises(MoqtUsageError):
        server.write_object(key, 4, b"y", timestamp_us=5)
    server.write_object(key, 7, b"", status=0)
    with pytest.raises(MoqtUsageError):
        server.publish_done(0)
    server.reset_subgroup(key, StreamResetCode.DELIVERY_TIMEOUT)
    link.pump()
    events = link.take(link.client)
    assert [
        (e.subgroup_id, e.object_id, e.payload) for e in events if isinstance(e, ObjectReceived)
    ] == [
        (2, 3, b"x"),
        (2, 7, b""),
    ]
    assert link.server.resets == [StreamReset(key, StreamResetCode.DELIVERY_TIMEOUT)]


def test_publish_done_reports_the_stream_count() -> None:
    link = established()
    server = link.server.session
    request_id, _ = subscribed(link)
    server.send_object(0, 0, b"a")
    key = server.open_subgroup(0, 1)
    assert key is not None
    server.write_object(key, 0, b"b", status=0)
    server.write_object(key, 1, status=3)
    server.close_subgroup(key)
    server.publish_done(0, PublishDoneCode.TRACK_ENDED, "done")
    with pytest.raises(MoqtUsageError):
        server.publish_done(0)
    link.pump()
    events = link.take(link.client)
    # PUBLISH_DONE overtakes the streams; their objects are still delivered.
    assert events[0] == PublishDoneReceived(request_id, PublishDoneCode.TRACK_ENDED, 2, "done")
    payloads = [(e.payload, e.status) for e in events if isinstance(e, ObjectReceived)]
    assert payloads == [(b"a", 0), (b"b", 0), (b"", 3)]
    eog = events[-1]
    assert isinstance(eog, ObjectReceived) and eog.end_of_group
    # Both streams finished, so the subscription is forgotten: a third is dropped.
    link.client.session.receive_stream("late", b"\x10\x00\x05\x00\x00\x01x")
    assert link.client.session.stream_commands_to_send() == [
        StopSending("late", StreamResetCode.CANCELLED)
    ]


def test_datagrams() -> None:
    link = established()
    server = link.server.session
    _, alias = subscribed(link)
    assert server.send_datagram(0, 3, b"pcm", timestamp_us=99, end_of_group=True)
    assert server.send_datagram(0, 4, status=3, object_id=1)
    link.pump()
    first, second = link.take(link.client)
    assert isinstance(first, ObjectReceived) and isinstance(second, ObjectReceived)
    assert first.via_datagram and first.subgroup_id is None
    assert (first.group_id, first.payload, first.timestamp_us, first.end_of_group) == (
        3,
        b"pcm",
        99,
        True,
    )
    assert (second.status, second.end_of_group, second.object_id) == (3, True, 1)
    # Unknown alias: dropped quietly.
    assert link.client.session.receive_datagram(bytes([0x04, alias + 1, 0, 0]) + b"x") == []
    with pytest.raises(MoqtProtocolError):
        link.client.session.receive_datagram(b"\x09")


def test_forward_zero_then_subscribe_update() -> None:
    link = established()
    client, server = link.client.session, link.server.session
    request_id, _ = subscribed(link, forward=False)
    assert server.send_object(0, 0, b"x") is None
    assert server.open_subgroup(0, 0) is None
    client.subscribe_update(request_id, start=Location(1, 0), subscriber_priority=9)
    link.pump()
    (update,) = link.take(link.server)
    assert update == SubscribeUpdateReceived(0, Location(1, 0), 0, 9, True, ())
    assert server.send_object(0, 1, b"x") is not None


def test_subscribe_update_rules() -> None:
    server = server_ready()
    raw(
        server,
        m.Subscribe(0, NS, b"a", filter_type=3, start=Location(5, 0)),
        m.SubscribeUpdate(2, 0, Location(6, 0), 11, 1, 1),
    )
    expect_violation(
        SessionErrorCode.PROTOCOL_VIOLATION,
        server,
        m.SubscribeUpdate(4, 0, Location(6, 0), 0, 1, 1),
    )
    server = server_ready()
    raw(server, m.Subscribe(0, NS, b"a", filter_type=3, start=Location(5, 0)))
    expect_violation(
        SessionErrorCode.PROTOCOL_VIOLATION,
        server,
        m.SubscribeUpdate(2, 0, Location(4, 0), 0, 1, 1),
    )
    server = server_ready()
    expect_violation(
        SessionErrorCode.PROTOCOL_VIOLATION,
        server,
        m.SubscribeUpdate(0, 8, Location(4, 0), 0, 1, 1),
    )
    server = server_ready()
    raw(server, m.Subscribe(0, NS, b"a"), m.Unsubscribe(0))
    assert raw(server, m.SubscribeUpdate(2, 0, Location(4, 0), 0, 1, 1), m.Unsubscribe(0)) == []
    expect_violation(SessionErrorCode.PROTOCOL_VIOLATION, server, m.Unsubscribe(6))


@pytest.mark.parametrize(
    ("message", "reply"),
    [
        (m.Publish(0, NS, b"a", 3), m.PublishError(0, 3, "")),
        (m.Fetch(0, 0, 0, 2, joining_request_id=0, joining_start=0), m.FetchError(0, 3, "")),
        (m.TrackStatus(0, NS, b"a"), m.TrackStatusError(0, 3, "")),
    ],
)
def test_unsupported_requests_are_refused(message: m.Message, reply: m.Message) -> None:
    server = server_ready()
    assert raw(server, message) == [RequestRefused(0, message)]
    assert m.ControlStreamParser().feed(server.control_data_to_send()) == [reply]
    assert raw(server, m.FetchCancel(0)) == []
    expect_violation(SessionErrorCode.PROTOCOL_VIOLATION, server, m.FetchCancel(2))


def test_objects_for_a_refused_publish_are_dropped() -> None:
    client = client_ready()
    raw(client, m.Publish(1, NS, b"a", 3))
    client.subscribe(NS, "b")  # a pending subscription would otherwise hold the stream
    client.receive_stream("p", b"\x10\x03\x00\x00\x00\x01x")
    assert client.stream_commands_to_send() == [StopSending("p", StreamResetCode.CANCELLED)]


# --- Namespaces ----------------------------------------------------------------------


def test_publish_namespace_rejected_and_cancelled() -> None:
    link = established()
    client, server = link.client.session, link.server.session
    first = client.publish_namespace(NS)
    with pytest.raises(MoqtUsageError):
        client.publish_namespace(NS)
    second = client.publish_namespace(["voice", "CA2"])
    link.pump()
    received = link.take(link.server)
    assert [e.request_id for e in received if isinstance(e, PublishNamespaceReceived)] == [
        first,
        second,
    ]
    server.reject_publish_namespace(first, 1, "unauthorized")
    server.accept_publish_namespace(second)
    with pytest.raises(MoqtUsageError):
        server.accept_publish_namespace(second)
    with pytest.raises(MoqtUsageError):
        server.reject_publish_namespace(second)
    link.pump()
    assert link.take(link.client) == [
        PublishNamespaceRejected(first, NS, 1, "unauthorized"),
        PublishNamespaceAccepted(second, (b"voice", b"CA2")),
    ]
    server.cancel_publish_namespace(["voice", "CA2"], 2, "expired")
    with pytest.raises(MoqtUsageError):
        server.cancel_publish_namespace(["voice", "CA2"])
    link.pump()
    assert link.take(link.client) == [PublishNamespaceCancelled((b"voice", b"CA2"), 2, "expired")]
    with pytest.raises(MoqtUsageError):
        client.publish_namespace_done(["voice", "CA2"])
    # An answer for a withdrawn namespace is ignored; a second answer breaks the protocol.
    assert client.receive_control(m.encode_message(m.PublishNamespaceOk(second))) == []
    third = client.publish_namespace(["voice", "CA3"])
    assert raw(client, m.PublishNamespaceOk(third)) == [
        PublishNamespaceAccepted(third, (b"voice", b"CA3"))
    ]
    expect_violation(SessionErrorCode.PROTOCOL_VIOLATION, client, m.PublishNamespaceOk(third))


def test_publish_namespace_done_for_a_pending_or_unknown_namespace() -> None:
    client = client_ready()
    raw(client, m.PublishNamespace(1, NS))
    assert raw(client, m.PublishNamespaceDone(NS)) == [PublishNamespaceDoneReceived(NS)]
    assert raw(client, m.PublishNamespaceDone((b"other",))) == []
    assert raw(client, m.PublishNamespaceCancel((b"other",), 0)) == []
    with pytest.raises(MoqtUsageError):
        client.accept_publish_namespace(1)


def test_namespace_subscriptions() -> None:
    link = established()
    client, server = link.client.session, link.server.session
    everything = client.subscribe_namespace([])
    with pytest.raises(MoqtUsageError):
        client.subscribe_namespace(["voice"])
    link.pump()
    (received,) = link.take(link.server)
    assert received == SubscribeNamespaceReceived(everything, (), ())
    server.accept_subscribe_namespace(everything)
    with pytest.raises(MoqtUsageError):
        server.accept_subscribe_namespace(everything)
    link.pump()
    assert link.take(link.client) == [SubscribeNamespaceAccepted(everything, ())]
    client.unsubscribe_namespace([])
    with pytest.raises(MoqtUsageError):
        client.unsubscribe_namespace([])
    link.pump()
    assert link.take(link.server) == [UnsubscribeNamespaceReceived(())]

    voice = client.subscribe_namespace(["voice"])
    link.pump()
    link.take(link.server)
    server.reject_subscribe_namespace(voice, 4, "unknown")
    with pytest.raises(MoqtUsageError):
        server.reject_subscribe_namespace(voice)
    link.pump()
    assert link.take(link.client) == [SubscribeNamespaceRejected(voice, (b"voice",), 4, "unknown")]


def test_overlapping_namespace_subscription_is_refused() -> None:
    server = server_ready()
    raw(server, m.SubscribeNamespace(0, (b"voice",)))
    assert raw(server, m.SubscribeNamespace(2, (b"voice", b"CA1"))) == []
    assert m.ControlStreamParser().feed(server.control_data_to_send()) == [
        m.SubscribeNamespaceError(2, 5, "overlaps an existing namespace subscription")
    ]
    assert raw(server, m.UnsubscribeNamespace((b"nothing",))) == []


# --- Closing and misuse after close ----------------------------------------------------


def test_closed_session_refuses_calls_and_ignores_input() -> None:
    link = established()
    server = link.server.session
    subscribed(link)
    server.close(SessionErrorCode.GOAWAY_TIMEOUT, "late")
    server.close()  # idempotent
    assert server.termination is not None
    assert server.termination.error_code == SessionErrorCode.GOAWAY_TIMEOUT
    with pytest.raises(MoqtUsageError):
        server.send_object(0, 0, b"x")
    with pytest.raises(MoqtUsageError):
        server.write_object(0, 0, b"x")
    with pytest.raises(MoqtUsageError):
        server.publish_namespace(NS)
    with pytest.raises(MoqtUsageError):
        server.accept_subscribe(0)
    assert server.receive_control(b"\x0a\x00\x01\x00") == []
    assert server.receive_stream("k", b"\x10") == []
    assert server.receive_datagram(b"\x00") == []
    assert server.receive_stream_reset("k") == []
    assert server.receive_stop_sending(5) == []


def test_stop_sending_resets_an_outgoing_stream() -> None:
    link = established()
    server = link.server.session
    subscribed(link)
    key = server.open_subgroup(0, 0)
    assert key is not None
    server.receive_stop_sending(key, 1)
    commands = server.stream_commands_to_send()
    assert commands[-1] == StreamReset(key, StreamResetCode.CANCELLED)
    assert server.write_object(key, 0, b"x") is False


def test_huge_object_on_a_stream_is_refused_without_buffering() -> None:
    link = established()
    subscribed(link)
    client = link.client.session
    with pytest.raises(MoqtProtocolError):
        client.receive_stream("k", b"\x10\x00\x00\x00\x00" + b"\xc0\x00\x01\x00\x00\x00\x00\x00")
    assert client.state == SessionState.CLOSED


def test_same_events_byte_by_byte() -> None:
    """The events of a whole conversation do not depend on how the bytes are chunked."""

    def run(chunk: int) -> list[Event]:
        link = established()
        client, server = link.client.session, link.server.session
        server.publish_namespace(NS)
        link.pump()
        client.accept_publish_namespace(1)
        request_id = client.subscribe(NS, "uplink")
        control = client.control_data_to_send()
        events = []
        for i in range(0, len(control), chunk):
            events += server.receive_control(control[i : i + chunk])
        server.accept_subscribe(0)
        for n in range(3):
            server.send_object(0, n, bytes(50) + b"%d" % n, timestamp_us=n)
        server.send_datagram(0, 9, b"d")
        control = server.control_data_to_send()
        for i in range(0, len(control), chunk):
            events += client.receive_control(control[i : i + chunk])
        for command in server.stream_commands_to_send():
            assert isinstance(command, StreamWrite)
            data = command.data
            for i in range(0, len(data), chunk):
                last = i + chunk >= len(data)
                events += client.receive_stream(command.key, data[i : i + chunk], last)
        for datagram in server.datagrams_to_send():
            events += client.receive_datagram(datagram)
        assert request_id == 0
        return events

    whole = run(10**6)
    assert len(whole) == 7
    assert run(1) == whole
    assert run(7) == whole


@settings(database=None, max_examples=200, deadline=None)
@given(st.binary(max_size=120))
def test_fuzz_control_input_only_raises_protocol_errors(data: bytes) -> None:
    server = server_ready()
    try:
        server.receive_control(data)
    except MoqtProtocolError:
        assert server.state == SessionState.CLOSED


@settings(database=None, max_examples=200, deadline=None)
@given(st.binary(max_size=120), st.booleans())
def test_fuzz_stream_and_datagram_input_only_raises_protocol_errors(data: bytes, end: bool) -> None:
    client = client_ready()
    client.subscribe(NS, "a")
    raw(client, m.SubscribeOk(0, 0))
    try:
        client.receive_stream("k", data, end)
    except MoqtProtocolError as exc:
        assert exc.error_code in set(SessionErrorCode)
    client = client_ready()
    client.subscribe(NS, "a")
    raw(client, m.SubscribeOk(0, 0))
    try:
        client.receive_datagram(data)
    except MoqtProtocolError as exc:
        assert exc.error_code in set(SessionErrorCode)


@settings(database=None, max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 3), st.binary(min_size=1, max_size=40), st.booleans()),
        min_size=1,
        max_size=4,
    ),
    st.integers(0, 1000),
)
def test_a_whole_stream_delivers_as_the_same_stream_in_pieces(
    specs: list[tuple[int, bytes, bool]], group: int
) -> None:
    """A stream received whole (the one-pass path) gives exactly the events the
    incremental path gives for the same bytes received in two pieces."""
    from clutchcall.moqt.data import SubgroupHeader, encode_subgroup_object, timestamp_extension

    results = []
    for pieces in (1, 2):
        link = established()
        _, alias = subscribed(link)
        header = SubgroupHeader(alias, group, 7, has_extensions=True, end_of_group=True)
        wire = header.encode()
        for gap, payload, stamped in specs:
            extensions = timestamp_extension(group * 20_000) if stamped else ()
            wire += encode_subgroup_object(gap, payload, extensions=extensions, has_extensions=True)
        session = link.client.session
        if pieces == 1:
            events = session.receive_stream(("uni", 3), wire, end=True)
        else:
            events = session.receive_stream(("uni", 3), wire[:1])
            events += session.receive_stream(("uni", 3), wire[1:], end=True)
        assert len(events) == len(specs)
        results.append(events)
    assert results[0] == results[1]


def test_a_whole_stream_for_an_unknown_alias_takes_the_general_path() -> None:
    from clutchcall.moqt.data import SubgroupHeader, encode_subgroup_object

    link = established()
    _, alias = subscribed(link)
    wire = SubgroupHeader(alias + 1, 0).encode() + encode_subgroup_object(
        0, b"x", has_extensions=False
    )
    # No subscription has that alias and none is pending: the stream is discarded.
    assert link.client.session.receive_stream(("uni", 3), wire, end=True) == []
    assert link.client.session.state == SessionState.ESTABLISHED
