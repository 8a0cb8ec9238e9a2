"""Control messages: round trips, draft-14 wire vectors, incremental parsing, fuzz."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moqt_helpers import MESSAGE_STRATEGIES, any_message, splits

from clutchcall.moqt import messages as m
from clutchcall.moqt.errors import MoqtProtocolError, MoqtUsageError, SessionErrorCode
from clutchcall.moqt.version import DRAFT_14
from clutchcall.moqt.wire import Location, Reader, encode_varint


def frame(message_type: int, payload: bytes) -> bytes:
    return encode_varint(message_type) + len(payload).to_bytes(2, "big") + payload


def test_every_message_type_has_a_strategy() -> None:
    assert set(MESSAGE_STRATEGIES) == set(m.MESSAGE_TYPES.values())
    assert len(m.MESSAGE_TYPES) == 30


@pytest.mark.parametrize("cls", list(MESSAGE_STRATEGIES), ids=lambda c: c.NAME)
@settings(
    database=None, max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(data=st.data())
def test_round_trip(cls: type[m.Message], data: st.DataObject) -> None:
    message = data.draw(MESSAGE_STRATEGIES[cls])
    encoded = m.encode_message(message)
    parsed = m.ControlStreamParser().feed(encoded)
    assert parsed == [message]
    assert type(parsed[0]) is cls
    assert Reader(encoded).read_varint() == cls.TYPE
    # Canonical bytes survive decode then encode unchanged.
    assert m.encode_message(parsed[0]) == encoded


# Known-answer vectors, written by hand from the draft-14 wire diagrams (section 9).
VERSION_14 = bytes.fromhex("c0000000ff00000e")  # 0xff00000e as an 8-byte varint
VOICE_NS = b"\x02\x05voice\x03CA1"  # tuple of 2 fields: "voice", "CA1"

VECTORS: list[tuple[m.Message, bytes]] = [
    (
        m.ClientSetup((DRAFT_14,), ((0x01, b"/"), (0x02, 100))),
        frame(0x20, b"\x01" + VERSION_14 + b"\x02" + b"\x01\x01/" + b"\x02\x40\x64"),
    ),
    (
        m.ServerSetup(DRAFT_14, ((0x02, 100), (0x07, b"rs"))),
        frame(0x21, VERSION_14 + b"\x02" + b"\x02\x40\x64" + b"\x07\x02rs"),
    ),
    (m.Goaway(b""), bytes.fromhex("10000100")),
    (m.Goaway(b"moqt://b"), frame(0x10, b"\x08moqt://b")),
    (m.MaxRequestId(200), bytes.fromhex("15000240c8")),
    (m.RequestsBlocked(10), bytes.fromhex("1a00010a")),
    (
        m.Subscribe(0, (b"voice", b"CA1"), b"uplink", 0x80, 1, 1, m.FilterType.LARGEST_OBJECT),
        frame(0x03, b"\x00" + VOICE_NS + b"\x06uplink" + b"\x80\x01\x01" + b"\x02" + b"\x00"),
    ),
    (
        m.Subscribe(
            2,
            (b"voice", b"CA1"),
            b"up",
            0,
            2,
            0,
            m.FilterType.ABSOLUTE_RANGE,
            Location(5, 1),
            9,
            ((0x02, 250),),
        ),
        frame(
            0x03,
            b"\x02"
            + VOICE_NS
            + b"\x02up"
            + b"\x00\x02\x00"
            + b"\x04\x05\x01\x09"
            + b"\x01\x02\x40\xfa",
        ),
    ),
    (
        m.SubscribeOk(0, 5, 0, 1, Location(3, 7)),
        frame(0x04, b"\x00\x05\x00\x01" + b"\x01\x03\x07" + b"\x00"),
    ),
    (m.SubscribeOk(4, 4, 0, 2), frame(0x04, b"\x04\x04\x00\x02\x00\x00")),
    (m.SubscribeError(2, 4, "nope"), frame(0x05, b"\x02\x04\x04nope")),
    (
        m.SubscribeUpdate(6, 0, Location(10, 0), 0, 7, 1),
        frame(0x02, b"\x06\x00\x0a\x00\x00\x07\x01\x00"),
    ),
    (m.Unsubscribe(0), bytes.fromhex("0a000100")),
    (m.PublishDone(0, 2, 3, ""), frame(0x0B, b"\x00\x02\x03\x00")),
    (
        m.Publish(1, (b"voice", b"CA1"), b"dn", 9, 1, None, 1),
        frame(0x1D, b"\x01" + VOICE_NS + b"\x02dn" + b"\x09\x01\x00\x01\x00"),
    ),
    (m.PublishOk(1, 1, 128, 1, 2), frame(0x1E, b"\x01\x01\x80\x01\x02\x00")),
    (m.PublishError(1, 3, "no"), frame(0x1F, b"\x01\x03\x02no")),
    (
        m.Fetch(
            4,
            0x10,
            1,
            m.FetchType.STANDALONE,
            (b"voice", b"CA1"),
            b"up",
            Location(1, 0),
            Location(2, 0),
        ),
        frame(0x16, b"\x04\x10\x01\x01" + VOICE_NS + b"\x02up" + b"\x01\x00\x02\x00" + b"\x00"),
    ),
    (
        m.Fetch(6, 0, 0, m.FetchType.RELATIVE_JOINING, joining_request_id=0, joining_start=2),
        frame(0x16, b"\x06\x00\x00\x02\x00\x02\x00"),
    ),
    (m.FetchOk(4, 1, 0, Location(2, 0)), frame(0x18, b"\x04\x01\x00\x02\x00\x00")),
    (m.FetchError(4, 3, ""), frame(0x19, b"\x04\x03\x00")),
    (m.FetchCancel(4), bytes.fromhex("17000104")),
    (m.TrackStatus(8, (b"a",), b"b"), frame(0x0D, b"\x08\x01\x01a\x01b\x80\x01\x01\x02\x00")),
    (m.TrackStatusOk(8, 0), frame(0x0E, b"\x08\x00\x00\x01\x00\x00")),
    (m.TrackStatusError(8, 3), frame(0x0F, b"\x08\x03\x00")),
    (m.PublishNamespace(2, (b"voice", b"CA1")), frame(0x06, b"\x02" + VOICE_NS + b"\x00")),
    (m.PublishNamespaceOk(2), bytes.fromhex("07000102")),
    (m.PublishNamespaceError(2, 1, "auth"), frame(0x08, b"\x02\x01\x04auth")),
    (m.PublishNamespaceDone((b"voice", b"CA1")), frame(0x09, VOICE_NS)),
    (m.PublishNamespaceCancel((b"voice", b"CA1"), 2, ""), frame(0x0C, VOICE_NS + b"\x02\x00")),
    (m.SubscribeNamespace(1, (b"voice",)), frame(0x11, b"\x01\x01\x05voice\x00")),
    (m.SubscribeNamespace(1, ()), frame(0x11, b"\x01\x00\x00")),
    (m.SubscribeNamespaceOk(1), bytes.fromhex("12000101")),
    (m.SubscribeNamespaceError(1, 5, ""), frame(0x13, b"\x01\x05\x00")),
    (m.UnsubscribeNamespace((b"voice",)), frame(0x14, b"\x01\x05voice")),
]


@pytest.mark.parametrize(("message", "wire"), VECTORS, ids=lambda v: getattr(v, "NAME", ""))
def test_known_answer_vector(message: m.Message, wire: bytes) -> None:
    assert m.encode_message(message) == wire
    assert m.ControlStreamParser().feed(wire) == [message]


def test_vectors_cover_every_message_family() -> None:
    assert {type(message) for message, _ in VECTORS} == set(m.MESSAGE_TYPES.values())


@settings(database=None, max_examples=60, deadline=None)
@given(st.lists(any_message, min_size=1, max_size=6), st.lists(st.integers(0, 10**6)))
def test_random_splits_give_the_same_messages(messages: list[m.Message], cuts: list[int]) -> None:
    wire = b"".join(m.encode_message(msg) for msg in messages)
    parser = m.ControlStreamParser()
    parsed: list[m.Message] = []
    for piece in splits(wire, cuts):
        parsed += parser.feed(piece)
    assert parsed == messages
    assert parser.buffered == 0


def test_byte_at_a_time_gives_the_same_messages() -> None:
    messages = [msg for msg, _ in VECTORS]
    wire = b"".join(wire for _, wire in VECTORS)
    parser = m.ControlStreamParser()
    parsed: list[m.Message] = []
    for i in range(len(wire)):
        parsed += parser.feed(wire[i : i + 1])
    assert parsed == messages


@pytest.mark.parametrize(
    ("wire", "why"),
    [
        (frame(0x01, b""), "unknown type (SETUP of version 00)"),
        (frame(0x40, b""), "unknown type (old CLIENT_SETUP)"),
        (encode_varint(0x3FFF), "unknown type refused before its length arrives"),
        (frame(0x0A, b"\x00\x00"), "trailing bytes"),
        (frame(0x0A, b""), "payload shorter than its fields"),
        (frame(0x03, b"\x00" + VOICE_NS + b"\x00\x80\x03\x01\x02\x00"), "group order 3"),
        (frame(0x03, b"\x00" + VOICE_NS + b"\x00\x80\x01\x02\x02\x00"), "forward 2"),
        (frame(0x03, b"\x00" + VOICE_NS + b"\x00\x80\x01\x01\x05\x00"), "filter type 5"),
        (frame(0x03, b"\x00" + VOICE_NS + b"\x00\x80\x01\x01\x04\x05\x00\x04\x00"), "end < start"),
        (frame(0x03, b"\x00\x00\x00\x80\x01\x01\x02\x00"), "empty namespace"),
        (frame(0x04, b"\x00\x05\x00\x00\x00\x00"), "SUBSCRIBE_OK group order 0"),
        (frame(0x04, b"\x00\x05\x00\x01\x02\x00"), "content exists 2"),
        (frame(0x1D, b"\x01" + VOICE_NS + b"\x02dn\x09\x01\x02\x01\x00"), "PUBLISH content 2"),
        (frame(0x16, b"\x04\x10\x01\x04\x00"), "fetch type 4"),
        (frame(0x05, b"\x02\x04" + encode_varint(1025) + b"x" * 1025), "reason over 1024"),
        (frame(0x02, b"\x06\x00\x0a\x00\x05\x07\x01\x00"), "update end before start"),
        (frame(0x18, b"\x04\x01\x02\x02\x00\x00"), "end of track 2"),
        (frame(0x10, encode_varint(8193) + b"u" * 8193), "GOAWAY URI over 8192"),
        (frame(0x20, b"\x3f"), "version count larger than the message"),
        (frame(0x21, VERSION_14 + b"\x3f"), "parameter count larger than the message"),
    ],
)
def test_malformed_messages_are_protocol_violations(wire: bytes, why: str) -> None:
    with pytest.raises(MoqtProtocolError):
        m.ControlStreamParser().feed(wire)


def test_invalid_messages_cannot_be_encoded() -> None:
    with pytest.raises(MoqtUsageError):
        m.encode_message(m.Subscribe(0, (b"a",), b"b", group_order=3))
    with pytest.raises(MoqtUsageError):
        m.encode_message(m.Subscribe(0, (b"a",), b"b", filter_type=3))
    with pytest.raises(MoqtUsageError):
        m.encode_message(m.Subscribe(0, (b"a",), b"b" * 4096))
    with pytest.raises(MoqtUsageError):
        m.encode_message(m.Fetch(0, 0, 0, m.FetchType.STANDALONE, (b"a",), b"b"))
    with pytest.raises(MoqtUsageError):
        m.encode_message(m.Fetch(0, 0, 0, m.FetchType.ABSOLUTE_JOINING))
    with pytest.raises(MoqtUsageError):
        m.encode_message(
            m.Fetch(0, 0, 0, m.FetchType.ABSOLUTE_JOINING, namespace=(b"a",), joining_start=1)
        )
    with pytest.raises(MoqtUsageError):
        m.encode_message(m.Goaway(b"u" * 8193))
    with pytest.raises(MoqtUsageError):
        m.encode_message(m.PublishNamespace(0, (b"a",), tuple((1, b"x" * 60000) for _ in range(2))))
    with pytest.raises(MoqtUsageError):
        m.encode_message(m.Subscribe(0, (b"a",), b"b", subscriber_priority=256))
    with pytest.raises(MoqtUsageError):
        m.encode_message(
            m.Subscribe(
                0, (b"a",), b"b", filter_type=m.FilterType.ABSOLUTE_RANGE, start=Location(1, 0)
            )
        )
    with pytest.raises(MoqtUsageError):
        m.encode_message(
            m.Fetch(
                0,
                0,
                0,
                m.FetchType.STANDALONE,
                (b"a",),
                b"b" * 4096,
                Location(0, 0),
                Location(1, 0),
            )
        )


def test_fetch_types_do_not_mix() -> None:
    standalone = m.Fetch(
        0,
        0,
        0,
        m.FetchType.STANDALONE,
        (b"a",),
        b"b",
        Location(0, 0),
        Location(1, 0),
        joining_request_id=3,
    )
    assert standalone.problem() == "standalone FETCH carries joining fields"
    joining = m.Fetch(0, 0, 0, m.FetchType.RELATIVE_JOINING, start=Location(0, 0))
    assert joining.problem() == "joining FETCH carries standalone fields"


def test_decode_message_refuses_unknown_types() -> None:
    with pytest.raises(MoqtProtocolError) as info:
        m.decode_message(0x01, b"")
    assert "0x1" in repr(info.value)
    assert info.value.error_code == SessionErrorCode.PROTOCOL_VIOLATION


def test_message_fields_lists_dataclass_fields() -> None:
    assert m.message_fields(m.Unsubscribe(3)) == {"request_id": 3}


@settings(database=None, max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_arbitrary_bytes_only_raise_protocol_errors(data: bytes) -> None:
    parser = m.ControlStreamParser()
    try:
        parser.feed(data)
    except MoqtProtocolError as exc:
        assert exc.error_code == SessionErrorCode.PROTOCOL_VIOLATION
    assert parser.buffered <= len(data)


@settings(database=None, max_examples=300, deadline=None)
@given(any_message, st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1))
def test_fuzz_mutated_messages_only_raise_protocol_errors(
    message: m.Message, mutations: list[tuple[int, int]]
) -> None:
    wire = bytearray(m.encode_message(message))
    for position, value in mutations:
        wire[position % len(wire)] = value
    try:
        for parsed in m.ControlStreamParser().feed(bytes(wire)):
            assert isinstance(parsed, m.Message)
    except MoqtProtocolError as exc:
        assert exc.error_code == SessionErrorCode.PROTOCOL_VIOLATION
