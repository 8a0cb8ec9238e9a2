"""Primitive encodings shared by control messages and data streams (draft-14 section 1.4).

QUIC variable-length integers, key-value pairs, tuples (track namespaces), reason
phrases and locations. Decoding goes through :class:`Reader`, which raises
:class:`NeedMoreData` when its input ends early; callers that hold a complete unit
(a control message payload, a datagram) turn that into a protocol violation, callers
that parse a stream incrementally wait for more bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from .errors import MoqtProtocolError, MoqtUsageError, SessionErrorCode

MAX_VARINT = (1 << 62) - 1
#: Largest value of an odd (length-prefixed) key-value pair.
MAX_KVP_VALUE_LENGTH = (1 << 16) - 1
#: Namespace tuples hold 1..32 fields; namespace prefixes may also be empty.
MAX_NAMESPACE_FIELDS = 32
#: Sum of namespace field lengths plus track name length.
MAX_FULL_TRACK_NAME_LENGTH = 4096
MAX_REASON_PHRASE_LENGTH = 1024
MAX_GOAWAY_URI_LENGTH = 8192

#: A track namespace: an ordered tuple of byte strings.
Namespace: TypeAlias = tuple[bytes, ...]
#: A key-value pair: even types carry an int, odd types carry bytes.
KeyValuePair: TypeAlias = tuple[int, int | bytes]
#: Message parameters or object extension headers, in wire order.
Parameters: TypeAlias = tuple[KeyValuePair, ...]


class NeedMoreData(Exception):
    """Raised by :class:`Reader` when the input ends in the middle of a field."""


@dataclass(frozen=True, order=True)
class Location:
    """A {Group, Object} position in a track, ordered as in draft-14 section 1.4.2."""

    group: int
    object: int


def encode_varint(value: int) -> bytes:
    """Encode ``value`` as a QUIC varint using the shortest form."""
    if value < 0x40:
        if value < 0:
            raise MoqtUsageError(f"varint must not be negative: {value}")
        return bytes((value,))
    if value < 0x4000:
        return (value | 0x4000).to_bytes(2, "big")
    if value < 0x4000_0000:
        return (value | 0x8000_0000).to_bytes(4, "big")
    if value <= MAX_VARINT:
        return (value | 0xC000_0000_0000_0000).to_bytes(8, "big")
    raise MoqtUsageError(f"varint too large: {value}")


def varint_size(value: int) -> int:
    """Number of bytes :func:`encode_varint` uses for ``value``."""
    if value < 0x40:
        return 1
    if value < 0x4000:
        return 2
    if value < 0x4000_0000:
        return 4
    return 8


class Reader:
    """A cursor over a byte buffer; never copies more than the field it returns."""

    __slots__ = ("_data", "_end", "pos")

    def __init__(self, data: bytes | bytearray | memoryview, pos: int = 0) -> None:
        self._data = data
        self.pos = pos
        self._end = len(data)

    @property
    def remaining(self) -> int:
        return self._end - self.pos

    def at_end(self) -> bool:
        return self.pos >= self._end

    def read_varint(self) -> int:
        pos = self.pos
        if pos >= self._end:
            raise NeedMoreData
        first = self._data[pos]
        if first < 0x40:  # one byte: most lengths, IDs and types
            self.pos = pos + 1
            return first
        size = 1 << (first >> 6)
        if pos + size > self._end:
            raise NeedMoreData
        value = first & 0x3F
        for i in range(pos + 1, pos + size):
            value = (value << 8) | self._data[i]
        self.pos = pos + size
        return value

    def read_uint8(self) -> int:
        if self.pos >= self._end:
            raise NeedMoreData
        value = self._data[self.pos]
        self.pos += 1
        return value

    def read_uint16(self) -> int:
        if self.pos + 2 > self._end:
            raise NeedMoreData
        value = (self._data[self.pos] << 8) | self._data[self.pos + 1]
        self.pos += 2
        return value

    def read_bytes(self, length: int) -> bytes:
        if self.pos + length > self._end:
            raise NeedMoreData
        value = bytes(self._data[self.pos : self.pos + length])
        self.pos += length
        return value

    def read_length_prefixed(self, limit: int, what: str) -> bytes:
        """Read a varint length and that many bytes, refusing lengths over ``limit``.

        The limit is checked before waiting for the bytes, so a peer cannot make the
        caller buffer an unbounded amount of data by declaring a huge length.
        """
        length = self.read_varint()
        if length > limit:
            raise MoqtProtocolError(f"{what} length {length} exceeds {limit}")
        return self.read_bytes(length)

    def read_key_value_pair(self) -> KeyValuePair:
        kind = self.read_varint()
        if kind % 2 == 0:
            return (kind, self.read_varint())
        return (kind, self.read_length_prefixed(MAX_KVP_VALUE_LENGTH, "key-value pair"))

    def read_parameters(self) -> Parameters:
        count = self.read_varint()
        if count > self.remaining:
            # Each parameter takes at least two bytes, so this count cannot be honest.
            raise MoqtProtocolError(f"parameter count {count} exceeds message size")
        return tuple(self.read_key_value_pair() for _ in range(count))

    def read_namespace(self, *, allow_empty: bool = False) -> Namespace:
        count = self.read_varint()
        if count > MAX_NAMESPACE_FIELDS or (count == 0 and not allow_empty):
            raise MoqtProtocolError(f"track namespace has {count} fields")
        fields = []
        total = 0
        for _ in range(count):
            field = self.read_length_prefixed(MAX_FULL_TRACK_NAME_LENGTH, "namespace field")
            total += len(field)
            if total > MAX_FULL_TRACK_NAME_LENGTH:
                raise MoqtProtocolError("track namespace is too long")
            fields.append(field)
        return tuple(fields)

    def read_reason_phrase(self) -> str:
        raw = self.read_length_prefixed(MAX_REASON_PHRASE_LENGTH, "reason phrase")
        return raw.decode("utf-8", errors="replace")

    def read_location(self) -> Location:
        return Location(self.read_varint(), self.read_varint())


def write_varint(buf: bytearray, value: int) -> None:
    buf += encode_varint(value)


def write_uint8(buf: bytearray, value: int) -> None:
    if not 0 <= value <= 0xFF:
        raise MoqtUsageError(f"8-bit field out of range: {value}")
    buf.append(value)


def write_bytes(buf: bytearray, value: bytes) -> None:
    """Write a length-prefixed byte string."""
    buf += encode_varint(len(value))
    buf += value


def write_key_value_pair(buf: bytearray, pair: KeyValuePair) -> None:
    kind, value = pair
    if kind % 2 == 0:
        if not isinstance(value, int):
            raise MoqtUsageError(f"key-value type {kind:#x} is even and needs an int value")
        buf += encode_varint(kind)
        buf += encode_varint(value)
    else:
        if not isinstance(value, bytes):
            raise MoqtUsageError(f"key-value type {kind:#x} is odd and needs a bytes value")
        if len(value) > MAX_KVP_VALUE_LENGTH:
            raise MoqtUsageError(f"key-value value of {len(value)} bytes is too long")
        buf += encode_varint(kind)
        write_bytes(buf, value)


def write_parameters(buf: bytearray, params: Parameters) -> None:
    buf += encode_varint(len(params))
    for pair in params:
        write_key_value_pair(buf, pair)


def encode_key_value_pairs(pairs: Parameters) -> bytes:
    """Encode pairs back to back, without a count (object extension header blocks)."""
    buf = bytearray()
    for pair in pairs:
        write_key_value_pair(buf, pair)
    return bytes(buf)


def decode_key_value_pairs(data: bytes) -> Parameters:
    """Decode a complete block of back-to-back pairs; a truncated pair is a violation."""
    reader = Reader(data)
    pairs = []
    try:
        while not reader.at_end():
            pairs.append(reader.read_key_value_pair())
    except NeedMoreData:
        raise MoqtProtocolError(
            "truncated key-value pair", SessionErrorCode.KEY_VALUE_FORMATTING_ERROR
        ) from None
    return tuple(pairs)


def write_namespace(buf: bytearray, namespace: Namespace, *, allow_empty: bool = False) -> None:
    check_namespace(namespace, allow_empty=allow_empty)
    buf += encode_varint(len(namespace))
    for field in namespace:
        write_bytes(buf, field)


def write_reason_phrase(buf: bytearray, reason: str) -> None:
    raw = reason.encode("utf-8")
    if len(raw) > MAX_REASON_PHRASE_LENGTH:
        raise MoqtUsageError(f"reason phrase of {len(raw)} bytes is too long")
    write_bytes(buf, raw)


def write_location(buf: bytearray, location: Location) -> None:
    buf += encode_varint(location.group)
    buf += encode_varint(location.object)


def check_namespace(namespace: Namespace, *, allow_empty: bool = False) -> None:
    """Raise :class:`MoqtUsageError` unless ``namespace`` is a valid tuple of bytes."""
    if not isinstance(namespace, tuple) or not all(isinstance(f, bytes) for f in namespace):
        raise MoqtUsageError(f"namespace must be a tuple of bytes, not {namespace!r}")
    if len(namespace) > MAX_NAMESPACE_FIELDS or (not namespace and not allow_empty):
        raise MoqtUsageError(f"namespace must have 1..32 fields, has {len(namespace)}")


def full_track_name_length(namespace: Namespace, name: bytes) -> int:
    return sum(len(field) for field in namespace) + len(name)


def is_prefix(prefix: Namespace, namespace: Namespace) -> bool:
    """True if ``prefix`` is a (possibly equal) leading part of ``namespace``."""
    return namespace[: len(prefix)] == prefix
