"""Data plane of draft-14 (section 10): subgroup and fetch streams, object datagrams.

Media timestamps ride in an object extension header as the LOC draft defines them:
type 0x10 (Timestamp, draft-ietf-moq-loc-04), a varint of microseconds. Type 0x06,
the Timestamp id of draft-ietf-moq-loc-03, is also read. This matches moq-rs, which
writes 0x10 and reads both.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from .errors import MoqtProtocolError, MoqtUsageError
from .wire import (
    MAX_KVP_VALUE_LENGTH,
    MAX_VARINT,
    NeedMoreData,
    Parameters,
    Reader,
    decode_key_value_pairs,
    encode_key_value_pairs,
    encode_varint,
)

#: LOC Timestamp extension header (draft-ietf-moq-loc-04), microseconds.
TIMESTAMP_EXTENSION = 0x10
#: The Timestamp id of draft-ietf-moq-loc-03, accepted on receipt only.
LEGACY_TIMESTAMP_EXTENSION = 0x06
#: Prior Group ID Gap, Prior Object ID Gap and Immutable Extensions (draft-14 section 11).
PRIOR_GROUP_ID_GAP_EXTENSION = 0x3C
PRIOR_OBJECT_ID_GAP_EXTENSION = 0x3E
IMMUTABLE_EXTENSIONS = 0x0B

FETCH_HEADER_TYPE = 0x05
#: Extension blocks longer than this are refused before they are buffered.
MAX_EXTENSIONS_LENGTH = 2 * (MAX_KVP_VALUE_LENGTH + 16)
#: Default cap on a single object payload received on a stream.
DEFAULT_MAX_OBJECT_SIZE = 1 << 20


class ObjectStatus(IntEnum):
    NORMAL = 0x0
    DOES_NOT_EXIST = 0x1
    END_OF_GROUP = 0x3
    END_OF_TRACK = 0x4


_STATUSES = frozenset(int(s) for s in ObjectStatus)


class SubgroupIdMode(IntEnum):
    """How a SUBGROUP_HEADER conveys the Subgroup ID (the 0x02/0x04 type bits)."""

    ZERO = 0x00
    FIRST_OBJECT = 0x02
    EXPLICIT = 0x04


def timestamp_extension(timestamp_us: int) -> Parameters:
    """The extension headers that carry ``timestamp_us``."""
    return ((TIMESTAMP_EXTENSION, timestamp_us),)


def timestamp_from_extensions(extensions: Parameters) -> int | None:
    """The LOC timestamp in microseconds, or None if the object carries none."""
    legacy = None
    for kind, value in extensions:
        if isinstance(value, int):
            if kind == TIMESTAMP_EXTENSION:
                return value
            if kind == LEGACY_TIMESTAMP_EXTENSION and legacy is None:
                legacy = value
    return legacy


def _check_status(status: int, payload: bytes, extensions: Parameters) -> None:
    if status not in _STATUSES:
        raise MoqtProtocolError(f"unknown object status {status}")
    if status == ObjectStatus.DOES_NOT_EXIST and extensions:
        raise MoqtProtocolError("an object that does not exist carries extension headers")
    if status != ObjectStatus.NORMAL and payload:
        raise MoqtProtocolError("an object with a status carries a payload")


def _usage_check_object(status: int, payload: bytes, extensions: Parameters) -> None:
    try:
        _check_status(status, payload, extensions)
    except MoqtProtocolError as exc:
        raise MoqtUsageError(exc.reason) from None


# --- Subgroup streams ----------------------------------------------------------------


@dataclass(frozen=True)
class SubgroupHeader:
    """SUBGROUP_HEADER: the first bytes of a subgroup stream."""

    track_alias: int
    group_id: int
    publisher_priority: int = 128
    #: Meaningful only with ``SubgroupIdMode.EXPLICIT``; otherwise 0.
    subgroup_id: int = 0
    subgroup_id_mode: SubgroupIdMode = SubgroupIdMode.ZERO
    #: Every object on the stream carries an extension headers length.
    has_extensions: bool = False
    #: The last object before FIN is the last object of the group.
    end_of_group: bool = False

    @property
    def stream_type(self) -> int:
        return (
            0x10
            | int(self.subgroup_id_mode)
            | (0x01 if self.has_extensions else 0)
            | (0x08 if self.end_of_group else 0)
        )

    def encode(self) -> bytes:
        if self.subgroup_id and self.subgroup_id_mode != SubgroupIdMode.EXPLICIT:
            raise MoqtUsageError("a non-zero subgroup ID needs SubgroupIdMode.EXPLICIT")
        if not 0 <= self.publisher_priority <= 0xFF:
            raise MoqtUsageError(f"publisher priority out of range: {self.publisher_priority}")
        buf = bytearray(encode_varint(self.stream_type))
        buf += encode_varint(self.track_alias)
        buf += encode_varint(self.group_id)
        if self.subgroup_id_mode == SubgroupIdMode.EXPLICIT:
            buf += encode_varint(self.subgroup_id)
        buf.append(self.publisher_priority)
        return bytes(buf)

    @classmethod
    def decode_after_type(cls, stream_type: int, reader: Reader) -> SubgroupHeader:
        if not is_subgroup_stream_type(stream_type):
            raise MoqtProtocolError(f"unknown data stream type {stream_type:#x}")
        mode = SubgroupIdMode(stream_type & 0x06)
        track_alias = reader.read_varint()
        group_id = reader.read_varint()
        subgroup_id = reader.read_varint() if mode == SubgroupIdMode.EXPLICIT else 0
        priority = reader.read_uint8()
        return cls(
            track_alias,
            group_id,
            priority,
            subgroup_id,
            mode,
            bool(stream_type & 0x01),
            bool(stream_type & 0x08),
        )


def is_subgroup_stream_type(stream_type: int) -> bool:
    """0x10..0x1D except 0x16/0x17 (both subgroup bits set is undefined)."""
    return 0x10 <= stream_type <= 0x1D and stream_type & 0x06 != 0x06


@dataclass(frozen=True)
class SubgroupObject:
    """One object on a subgroup stream, with its absolute Object ID."""

    object_id: int
    payload: bytes = b""
    status: int = ObjectStatus.NORMAL
    extensions: Parameters = ()

    @property
    def timestamp_us(self) -> int | None:
        return timestamp_from_extensions(self.extensions)


def encode_subgroup_object(
    object_id_delta: int,
    payload: bytes,
    *,
    status: int = ObjectStatus.NORMAL,
    extensions: Parameters = (),
    has_extensions: bool,
) -> bytes:
    """Object fields on a subgroup stream; ``has_extensions`` comes from the header."""
    _usage_check_object(status, payload, extensions)
    buf = bytearray(encode_varint(object_id_delta))
    if has_extensions:
        block = encode_key_value_pairs(extensions)
        buf += encode_varint(len(block))
        buf += block
    elif extensions:
        raise MoqtUsageError("the subgroup header was opened without extensions")
    buf += encode_varint(len(payload))
    if payload:
        buf += payload
    else:
        buf += encode_varint(status)
    return bytes(buf)


def encode_audio_stream(
    track_alias: int,
    group_id: int,
    publisher_priority: int,
    payload: bytes,
    timestamp_us: int | None,
    end_of_group: bool,
) -> bytes:
    """A whole subgroup stream of one object (ID 0, status normal, non-empty payload,
    the LOC timestamp its only extension): the bytes ``SubgroupHeader.encode()``
    and :func:`encode_subgroup_object` give for it, without their generality. This
    is how every audio frame travels."""
    if not payload or not 0 <= publisher_priority <= 0xFF:
        raise MoqtUsageError("an audio object needs a payload and a priority of 0 to 255")
    stream_type = 0x18 if end_of_group else 0x10
    if timestamp_us is None:
        extension = b""
    else:
        stream_type |= 0x01
        pair = _TIMESTAMP_KEY + encode_varint(timestamp_us)
        extension = encode_varint(len(pair)) + pair
    return b"".join(
        (
            bytes((stream_type,)),
            encode_varint(track_alias),
            encode_varint(group_id),
            bytes((publisher_priority, 0)),  # the priority, then Object ID delta 0
            extension,
            encode_varint(len(payload)),
            payload,
        )
    )


_TIMESTAMP_KEY = encode_varint(TIMESTAMP_EXTENSION)


# --- Fetch streams -------------------------------------------------------------------


@dataclass(frozen=True)
class FetchHeader:
    request_id: int

    def encode(self) -> bytes:
        return encode_varint(FETCH_HEADER_TYPE) + encode_varint(self.request_id)


@dataclass(frozen=True)
class FetchObject:
    group_id: int
    subgroup_id: int
    object_id: int
    publisher_priority: int
    payload: bytes = b""
    status: int = ObjectStatus.NORMAL
    extensions: Parameters = ()

    def encode(self) -> bytes:
        _usage_check_object(self.status, self.payload, self.extensions)
        buf = bytearray(encode_varint(self.group_id))
        buf += encode_varint(self.subgroup_id)
        buf += encode_varint(self.object_id)
        buf.append(self.publisher_priority)
        block = encode_key_value_pairs(self.extensions)
        buf += encode_varint(len(block))
        buf += block
        buf += encode_varint(len(self.payload))
        if self.payload:
            buf += self.payload
        else:
            buf += encode_varint(self.status)
        return bytes(buf)


# --- Incremental parsing of uni streams ----------------------------------------------

DataStreamItem = SubgroupHeader | SubgroupObject | FetchHeader | FetchObject


class DataStreamParser:
    """Parses one incoming unidirectional stream, however its bytes are chunked.

    Yields the header first, then each complete object. Declared lengths above
    ``max_object_size`` (payloads) or :data:`MAX_EXTENSIONS_LENGTH` (extension
    blocks) are refused as soon as they are read, before any of their bytes are held.
    """

    def __init__(self, max_object_size: int = DEFAULT_MAX_OBJECT_SIZE) -> None:
        self._buffer = bytearray()
        self._max_object_size = max_object_size
        self.header: SubgroupHeader | FetchHeader | None = None
        self._last_object_id: int | None = None
        self.finished = False

    def feed(self, data: bytes, end: bool = False) -> list[DataStreamItem]:
        if self.finished:
            if data or not end:
                raise MoqtProtocolError("data after the end of a stream")
            return []
        self._buffer += data
        items: list[DataStreamItem] = []
        buffer = self._buffer
        pos = 0
        while pos < len(buffer):
            reader = Reader(buffer, pos)
            try:
                item = self._parse_one(reader)
            except NeedMoreData:
                break
            items.append(item)
            pos = reader.pos
        del buffer[:pos]
        if end:
            self.finished = True
            if buffer:
                raise MoqtProtocolError("stream ended in the middle of an object")
        return items

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def _parse_one(self, reader: Reader) -> DataStreamItem:
        header = self.header
        if header is None:
            stream_type = reader.read_varint()
            new_header: SubgroupHeader | FetchHeader
            if stream_type == FETCH_HEADER_TYPE:
                new_header = FetchHeader(reader.read_varint())
            else:
                new_header = SubgroupHeader.decode_after_type(stream_type, reader)
            self.header = new_header
            return new_header
        if isinstance(header, SubgroupHeader):
            return self._parse_subgroup_object(reader, header)
        return self._parse_fetch_object(reader)

    def _read_extensions(self, reader: Reader) -> Parameters:
        length = reader.read_varint()
        if length > MAX_EXTENSIONS_LENGTH:
            raise MoqtProtocolError(f"extension headers of {length} bytes are too long")
        return decode_key_value_pairs(reader.read_bytes(length))

    def _read_payload_and_status(self, reader: Reader) -> tuple[bytes, int]:
        length = reader.read_varint()
        if length > self._max_object_size:
            raise MoqtProtocolError(
                f"object payload of {length} bytes exceeds {self._max_object_size}"
            )
        if length == 0:
            return b"", reader.read_varint()
        return reader.read_bytes(length), 0

    def _parse_subgroup_object(self, reader: Reader, header: SubgroupHeader) -> SubgroupObject:
        delta = reader.read_varint()
        extensions = self._read_extensions(reader) if header.has_extensions else ()
        payload, status = self._read_payload_and_status(reader)
        _check_status(status, payload, extensions)
        last = self._last_object_id
        object_id = delta if last is None else last + delta + 1
        if object_id > MAX_VARINT:
            raise MoqtProtocolError("object ID overflows")
        self._last_object_id = object_id
        return SubgroupObject(object_id, payload, status, extensions)

    def _parse_fetch_object(self, reader: Reader) -> FetchObject:
        group_id = reader.read_varint()
        subgroup_id = reader.read_varint()
        object_id = reader.read_varint()
        priority = reader.read_uint8()
        extensions = self._read_extensions(reader)
        payload, status = self._read_payload_and_status(reader)
        _check_status(status, payload, extensions)
        return FetchObject(group_id, subgroup_id, object_id, priority, payload, status, extensions)


def parse_whole_subgroup_stream(
    data: bytes, max_object_size: int = DEFAULT_MAX_OBJECT_SIZE
) -> tuple[SubgroupHeader, list[SubgroupObject]] | None:
    """A complete subgroup stream (its bytes up to the FIN) in one pass: the header
    and its objects, or None for anything else (a fetch stream, a malformed or
    truncated one). Without the incremental parser's buffering; an audio frame
    travels as one such stream. Whatever this refuses, :class:`DataStreamParser`
    parses (or refuses with the precise error)."""
    reader = Reader(data)
    try:
        stream_type = reader.read_varint()
        if not is_subgroup_stream_type(stream_type):
            return None
        header = SubgroupHeader.decode_after_type(stream_type, reader)
        parser = DataStreamParser(max_object_size)
        objects = [parser._parse_subgroup_object(reader, header)]
        while not reader.at_end():
            objects.append(parser._parse_subgroup_object(reader, header))
    except (NeedMoreData, MoqtProtocolError):
        return None
    return header, objects


AudioObject = tuple[int, int, int, int, bytes, Parameters]
"""(track alias, group ID, publisher priority, object ID, payload, extensions)."""

_AUDIO_STREAM_TYPES = frozenset((0x10, 0x11, 0x18, 0x19))
_VARINT_MASKS = {2: 0x3FFF, 4: 0x3FFF_FFFF, 8: MAX_VARINT}


def _varint_at(data: bytes, pos: int) -> tuple[int, int]:
    """The varint at ``pos`` and the position after it (IndexError if cut short)."""
    first = data[pos]
    if first < 0x40:
        return first, pos + 1
    end = pos + (1 << (first >> 6))
    if end > len(data):
        raise IndexError(pos)
    return int.from_bytes(data[pos:end], "big") & _VARINT_MASKS[end - pos], end


def parse_audio_stream(
    data: bytes, max_object_size: int = DEFAULT_MAX_OBJECT_SIZE
) -> AudioObject | None:
    """A whole subgroup stream that carries one object with a payload, on a stream
    type without a Subgroup ID field (0x10, 0x11, 0x18, 0x19): an audio frame as
    publishers send it. None for any other stream (or a malformed one), which
    :func:`parse_whole_subgroup_stream` or :class:`DataStreamParser` handles."""
    try:
        stream_type = data[0]
        if stream_type not in _AUDIO_STREAM_TYPES:
            return None
        alias, pos = _varint_at(data, 1)
        group, pos = _varint_at(data, pos)
        priority = data[pos]
        object_id, pos = _varint_at(data, pos + 1)
        extensions: Parameters = ()
        if stream_type & 0x01:
            length, pos = _varint_at(data, pos)
            end = pos + length
            if length > MAX_EXTENSIONS_LENGTH or end > len(data):
                return None
            extensions = decode_key_value_pairs(data[pos:end])
            pos = end
        size, pos = _varint_at(data, pos)
        if not 0 < size <= max_object_size or pos + size != len(data):
            return None
    except (IndexError, MoqtProtocolError):
        return None
    return alias, group, priority, object_id, bytes(data[pos:]), extensions


def subgroup_id_of(header: SubgroupHeader, first_object_id: int) -> int:
    """The Subgroup ID of a stream, given the ID of its first object."""
    if header.subgroup_id_mode == SubgroupIdMode.FIRST_OBJECT:
        return first_object_id
    return header.subgroup_id


# --- Datagrams -----------------------------------------------------------------------


@dataclass(frozen=True)
class ObjectDatagram:
    """OBJECT_DATAGRAM in its canonical form.

    ``status`` None means a payload datagram (types 0x00-0x07); otherwise a status
    datagram (0x20/0x21). The Object ID is omitted on the wire when it is 0 in a
    payload datagram; extensions are present exactly when non-empty.
    """

    track_alias: int
    group_id: int
    object_id: int = 0
    publisher_priority: int = 128
    payload: bytes = b""
    status: int | None = None
    extensions: Parameters = ()
    end_of_group: bool = False

    @property
    def datagram_type(self) -> int:
        has_ext = 0x01 if self.extensions else 0
        if self.status is not None:
            return 0x20 | has_ext
        return has_ext | (0x02 if self.end_of_group else 0) | (0x04 if self.object_id == 0 else 0)

    @property
    def timestamp_us(self) -> int | None:
        return timestamp_from_extensions(self.extensions)

    def encode(self) -> bytes:
        if self.status is not None:
            if self.payload or self.end_of_group:
                raise MoqtUsageError("a status datagram has no payload and no end-of-group flag")
            _usage_check_object(self.status, b"", self.extensions)
        if not 0 <= self.publisher_priority <= 0xFF:
            raise MoqtUsageError(f"publisher priority out of range: {self.publisher_priority}")
        kind = self.datagram_type
        buf = bytearray(encode_varint(kind))
        buf += encode_varint(self.track_alias)
        buf += encode_varint(self.group_id)
        if not kind & 0x04:
            buf += encode_varint(self.object_id)
        buf.append(self.publisher_priority)
        if self.extensions:
            block = encode_key_value_pairs(self.extensions)
            buf += encode_varint(len(block))
            buf += block
        if self.status is not None:
            buf += encode_varint(self.status)
        else:
            buf += self.payload
        return bytes(buf)

    @classmethod
    def decode(cls, data: bytes) -> ObjectDatagram:
        reader = Reader(data)
        try:
            kind = reader.read_varint()
            if not (kind <= 0x07 or kind in (0x20, 0x21)):
                raise MoqtProtocolError(f"unknown datagram type {kind:#x}")
            is_status = kind >= 0x20
            track_alias = reader.read_varint()
            group_id = reader.read_varint()
            object_id = 0 if (not is_status and kind & 0x04) else reader.read_varint()
            priority = reader.read_uint8()
            extensions: Parameters = ()
            if kind & 0x01:
                length = reader.read_varint()
                if length == 0:
                    raise MoqtProtocolError("datagram declares extensions of length 0")
                extensions = decode_key_value_pairs(reader.read_bytes(length))
            if is_status:
                status = reader.read_varint()
                if not reader.at_end():
                    raise MoqtProtocolError("status datagram has trailing bytes")
                _check_status(status, b"", extensions)
                return cls(track_alias, group_id, object_id, priority, b"", status, extensions)
        except NeedMoreData:
            raise MoqtProtocolError("truncated datagram") from None
        payload = bytes(data[reader.pos :])
        return cls(
            track_alias, group_id, object_id, priority, payload, None, extensions, bool(kind & 0x02)
        )
