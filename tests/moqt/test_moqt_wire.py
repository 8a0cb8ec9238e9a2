"""Primitive encodings: varints, key-value pairs, tuples, reason phrases."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from moqt_helpers import key_value_pairs, namespaces, varints

from clutchcall.moqt.errors import MoqtProtocolError, MoqtUsageError, SessionErrorCode
from clutchcall.moqt.wire import (
    MAX_VARINT,
    Location,
    NeedMoreData,
    Reader,
    decode_key_value_pairs,
    encode_key_value_pairs,
    encode_varint,
    is_prefix,
    varint_size,
    write_key_value_pair,
    write_namespace,
    write_reason_phrase,
)

# RFC 9000 appendix A.1 sample varints.
RFC9000_VARINTS = [
    (bytes.fromhex("c2197c5eff14e88c"), 151_288_809_941_952_652),
    (bytes.fromhex("9d7f3e7d"), 494_878_333),
    (bytes.fromhex("7bbd"), 15_293),
    (bytes.fromhex("25"), 37),
]


@pytest.mark.parametrize(("encoded", "value"), RFC9000_VARINTS)
def test_varint_decodes_rfc9000_samples(encoded: bytes, value: int) -> None:
    reader = Reader(encoded)
    assert reader.read_varint() == value
    assert reader.at_end()


def test_varint_encodes_shortest_form() -> None:
    assert encode_varint(37) == b"\x25"
    assert encode_varint(15_293) == bytes.fromhex("7bbd")
    assert encode_varint(494_878_333) == bytes.fromhex("9d7f3e7d")
    assert encode_varint(151_288_809_941_952_652) == bytes.fromhex("c2197c5eff14e88c")
    assert encode_varint(63) == b"\x3f"
    assert encode_varint(64) == b"\x40\x40"


def test_non_minimal_varint_is_read() -> None:
    # RFC 9000: 0x4025 is a two-byte encoding of 37.
    assert Reader(bytes.fromhex("4025")).read_varint() == 37


@settings(database=None)
@given(varints)
def test_varint_round_trip(value: int) -> None:
    encoded = encode_varint(value)
    assert len(encoded) == varint_size(value)
    assert Reader(encoded).read_varint() == value


@pytest.mark.parametrize("value", [-1, MAX_VARINT + 1])
def test_varint_out_of_range_is_a_usage_error(value: int) -> None:
    with pytest.raises(MoqtUsageError):
        encode_varint(value)


def test_truncated_varint_needs_more_data() -> None:
    with pytest.raises(NeedMoreData):
        Reader(b"\xc2\x19").read_varint()
    with pytest.raises(NeedMoreData):
        Reader(b"").read_uint8()
    with pytest.raises(NeedMoreData):
        Reader(b"\x01").read_uint16()


def test_key_value_pair_vectors() -> None:
    # Even type: a varint value. Odd type: length and bytes.
    assert encode_key_value_pairs(((0x02, 100),)) == bytes.fromhex("024064")
    assert encode_key_value_pairs(((0x01, b"/x"),)) == bytes.fromhex("01022f78")


@settings(database=None)
@given(st.lists(key_value_pairs, max_size=5).map(tuple))
def test_key_value_pairs_round_trip(pairs: tuple[tuple[int, int | bytes], ...]) -> None:
    assert decode_key_value_pairs(encode_key_value_pairs(pairs)) == pairs


def test_key_value_pair_type_and_value_must_agree() -> None:
    with pytest.raises(MoqtUsageError):
        write_key_value_pair(bytearray(), (2, b"bytes"))
    with pytest.raises(MoqtUsageError):
        write_key_value_pair(bytearray(), (3, 7))
    with pytest.raises(MoqtUsageError):
        write_key_value_pair(bytearray(), (3, b"x" * 65536))


def test_key_value_pair_over_64k_is_refused() -> None:
    data = encode_varint(0x05) + encode_varint(65536)
    with pytest.raises(MoqtProtocolError):
        Reader(data).read_key_value_pair()


def test_truncated_extension_block_is_a_formatting_error() -> None:
    with pytest.raises(MoqtProtocolError) as info:
        decode_key_value_pairs(b"\x01\x05ab")
    assert info.value.error_code == SessionErrorCode.KEY_VALUE_FORMATTING_ERROR


@settings(database=None, max_examples=50)
@given(namespaces)
def test_namespace_round_trip(namespace: tuple[bytes, ...]) -> None:
    buf = bytearray()
    write_namespace(buf, namespace)
    assert Reader(bytes(buf)).read_namespace() == namespace


def test_namespace_limits() -> None:
    with pytest.raises(MoqtProtocolError):
        Reader(b"\x00").read_namespace()
    assert Reader(b"\x00").read_namespace(allow_empty=True) == ()
    with pytest.raises(MoqtProtocolError):
        Reader(b"\x21" + b"\x00" * 33).read_namespace()
    with pytest.raises(MoqtUsageError):
        write_namespace(bytearray(), ())
    with pytest.raises(MoqtUsageError):
        write_namespace(bytearray(), (b"a",) * 33)
    with pytest.raises(MoqtUsageError):
        write_namespace(bytearray(), ("text",))  # type: ignore[arg-type]
    too_long = b"\x02" + b"\x50\x00" + b"a" * 4096 + b"\x01b"
    with pytest.raises(MoqtProtocolError):
        Reader(too_long).read_namespace()


def test_huge_field_length_is_refused_before_buffering() -> None:
    # A namespace field that claims 2^40 bytes is refused with only 10 bytes in hand.
    data = b"\x01" + encode_varint(1 << 40)
    with pytest.raises(MoqtProtocolError):
        Reader(data).read_namespace()


def test_reason_phrase_limits() -> None:
    write_reason_phrase(bytearray(), "x" * 1024)
    with pytest.raises(MoqtUsageError):
        write_reason_phrase(bytearray(), "x" * 1025)
    with pytest.raises(MoqtProtocolError):
        Reader(encode_varint(1025) + b"x" * 1025).read_reason_phrase()
    assert Reader(b"\x02\xff\xfe").read_reason_phrase() == "\ufffd\ufffd"


def test_locations_order_by_group_then_object() -> None:
    assert Location(1, 9) < Location(2, 0)
    assert Location(2, 0) < Location(2, 1)
    assert sorted([Location(3, 1), Location(1, 5), Location(3, 0)]) == [
        Location(1, 5),
        Location(3, 0),
        Location(3, 1),
    ]


def test_is_prefix() -> None:
    assert is_prefix((), (b"a",))
    assert is_prefix((b"a",), (b"a", b"b"))
    assert not is_prefix((b"a", b"b"), (b"a",))
    assert not is_prefix((b"b",), (b"a", b"b"))
