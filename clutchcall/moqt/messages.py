"""Control messages of draft-14 (section 9): dataclasses, encoding and decoding.

Every message on the control stream is ``Type (i) | Length (16) | Payload``. A
payload is a sequence of fields, described by each class's ``_FIELDS``; only
FETCH, whose fields depend on its fetch type, encodes and decodes itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from enum import IntEnum
from typing import Any, ClassVar, TypeAlias

from .errors import MoqtProtocolError, MoqtUsageError
from .wire import (
    MAX_FULL_TRACK_NAME_LENGTH,
    MAX_GOAWAY_URI_LENGTH,
    Location,
    Namespace,
    NeedMoreData,
    Parameters,
    Reader,
    encode_varint,
    full_track_name_length,
    write_bytes,
    write_location,
    write_namespace,
    write_parameters,
    write_reason_phrase,
    write_uint8,
    write_varint,
)

MAX_MESSAGE_PAYLOAD = 0xFFFF


class GroupOrder(IntEnum):
    """Group delivery order; ORIGINAL (0) is only valid in requests."""

    ORIGINAL = 0x0
    ASCENDING = 0x1
    DESCENDING = 0x2


class FilterType(IntEnum):
    """Subscription filter types (draft-14 section 9.7)."""

    NEXT_GROUP_START = 0x1
    LARGEST_OBJECT = 0x2
    ABSOLUTE_START = 0x3
    ABSOLUTE_RANGE = 0x4


class FetchType(IntEnum):
    STANDALONE = 0x1
    RELATIVE_JOINING = 0x2
    ABSOLUTE_JOINING = 0x3


class SetupParameter(IntEnum):
    """Setup parameter types; a namespace separate from message parameters."""

    PATH = 0x01
    MAX_REQUEST_ID = 0x02
    AUTHORIZATION_TOKEN = 0x03
    MAX_AUTH_TOKEN_CACHE_SIZE = 0x04
    AUTHORITY = 0x05
    #: draft-14 lists MOQT_IMPLEMENTATION as 0x05, colliding with AUTHORITY; draft-15
    #: moved it to 0x07, which is what moq-rs sends and reads on draft-14 too.
    MOQT_IMPLEMENTATION = 0x07


class MessageParameter(IntEnum):
    """Version-specific parameter types used in non-setup messages."""

    DELIVERY_TIMEOUT = 0x02
    AUTHORIZATION_TOKEN = 0x03
    MAX_CACHE_DURATION = 0x04


@dataclass(frozen=True, slots=True)
class _Kind:
    """How one kind of field is written and read. ``read`` also gets the fields read
    before it (a track name's bound depends on its namespace, a filter's locations
    on its type)."""

    write: Callable[[bytearray, Any], None]
    read: Callable[[Reader, dict[str, Any]], Any]


def _write_versions(buf: bytearray, versions: tuple[int, ...]) -> None:
    write_varint(buf, len(versions))
    for version in versions:
        write_varint(buf, version)


def _read_versions(reader: Reader, _values: dict[str, Any]) -> tuple[int, ...]:
    count = reader.read_varint()
    if count > reader.remaining:
        raise MoqtProtocolError(f"version count {count} exceeds message size")
    return tuple(reader.read_varint() for _ in range(count))


def _write_uri(buf: bytearray, uri: bytes) -> None:
    if len(uri) > MAX_GOAWAY_URI_LENGTH:
        raise MoqtUsageError("GOAWAY URI is too long")
    write_bytes(buf, uri)


def _read_track_name(reader: Reader, namespace: Namespace) -> bytes:
    limit = MAX_FULL_TRACK_NAME_LENGTH - sum(len(f) for f in namespace)
    return reader.read_length_prefixed(limit, "full track name")


def _write_largest(buf: bytearray, largest: Location | None) -> None:
    write_uint8(buf, 0 if largest is None else 1)
    if largest is not None:
        write_location(buf, largest)


def _read_largest(reader: Reader, _values: dict[str, Any]) -> Location | None:
    content_exists = reader.read_uint8()
    if content_exists > 1:
        raise MoqtProtocolError(f"content exists {content_exists} is not 0 or 1")
    return reader.read_location() if content_exists else None


def _read_filter_type(reader: Reader, _values: dict[str, Any]) -> int:
    filter_type = reader.read_varint()
    if filter_type not in FilterType.__members__.values():
        raise MoqtProtocolError(f"unknown filter type {filter_type}")
    return filter_type


def _write_if_present(write: Callable[[bytearray, Any], None]) -> Callable[[bytearray, Any], None]:
    """``write``, skipping None (problem() has checked that a filter's start and end
    group are present exactly when its type needs them)."""

    def write_present(buf: bytearray, value: Any) -> None:
        if value is not None:
            write(buf, value)

    return write_present


# The field kinds of the declarative codec: each message's ``_FIELDS`` lists its
# fields in wire order.
_VARINT = _Kind(write_varint, lambda reader, _: reader.read_varint())
_U8 = _Kind(write_uint8, lambda reader, _: reader.read_uint8())
_NAMESPACE = _Kind(write_namespace, lambda reader, _: reader.read_namespace())
_PREFIX = _Kind(
    lambda buf, prefix: write_namespace(buf, prefix, allow_empty=True),
    lambda reader, _: reader.read_namespace(allow_empty=True),
)
_TRACK_NAME = _Kind(
    write_bytes, lambda reader, values: _read_track_name(reader, values["namespace"])
)
_REASON = _Kind(write_reason_phrase, lambda reader, _: reader.read_reason_phrase())
_LOCATION = _Kind(write_location, lambda reader, _: reader.read_location())
_PARAMS = _Kind(write_parameters, lambda reader, _: reader.read_parameters())
_VERSIONS = _Kind(_write_versions, _read_versions)
_URI = _Kind(
    _write_uri, lambda reader, _: reader.read_length_prefixed(MAX_GOAWAY_URI_LENGTH, "GOAWAY URI")
)
#: Content Exists, then the largest location if it is 1 (None when 0).
_LARGEST = _Kind(_write_largest, _read_largest)
#: A subscription filter: its type, then the start location (absolute filters
#: only) and the end group (AbsoluteRange only).
_FILTER_TYPE = _Kind(write_varint, _read_filter_type)
_FILTER_START = _Kind(
    _write_if_present(write_location),
    lambda reader, values: (
        reader.read_location()
        if values["filter_type"] in (FilterType.ABSOLUTE_START, FilterType.ABSOLUTE_RANGE)
        else None
    ),
)
_FILTER_END = _Kind(
    _write_if_present(write_varint),
    lambda reader, values: (
        reader.read_varint() if values["filter_type"] == FilterType.ABSOLUTE_RANGE else None
    ),
)


@dataclass(frozen=True)
class Message:
    """Base class of control messages; ``TYPE`` is the wire message type."""

    TYPE: ClassVar[int]
    NAME: ClassVar[str]
    _FIELDS: ClassVar[tuple[tuple[str, _Kind], ...]] = ()

    def encode_payload(self, buf: bytearray) -> None:
        for name, kind in self._FIELDS:
            kind.write(buf, getattr(self, name))

    @classmethod
    def decode_payload(cls, reader: Reader) -> Message:
        values: dict[str, Any] = {}
        for name, kind in cls._FIELDS:
            values[name] = kind.read(reader, values)
        return cls(**values)

    def problem(self) -> str | None:
        """Describe why this message breaks a draft-14 rule, or None if it does not."""
        return None


def _check_u8(value: int, allowed: range, what: str) -> str | None:
    return None if value in allowed else f"{what} {value} is not allowed"


def _check_track_name(namespace: Namespace, name: bytes) -> str | None:
    if full_track_name_length(namespace, name) > MAX_FULL_TRACK_NAME_LENGTH:
        return "full track name is longer than 4096 bytes"
    return None


def _filter_problem(filter_type: int, start: Location | None, end_group: int | None) -> str | None:
    absolute = filter_type in (FilterType.ABSOLUTE_START, FilterType.ABSOLUTE_RANGE)
    if absolute != (start is not None):
        return "start location must be present exactly for absolute filters"
    if (filter_type == FilterType.ABSOLUTE_RANGE) != (end_group is not None):
        return "end group must be present exactly for AbsoluteRange"
    if start is not None and end_group is not None and end_group < start.group:
        return "end group is before the start group"
    return None


# --- Setup ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ClientSetup(Message):
    TYPE: ClassVar[int] = 0x20
    NAME: ClassVar[str] = "CLIENT_SETUP"
    _FIELDS = (("versions", _VERSIONS), ("parameters", _PARAMS))
    versions: tuple[int, ...]
    parameters: Parameters = ()


@dataclass(frozen=True)
class ServerSetup(Message):
    TYPE: ClassVar[int] = 0x21
    NAME: ClassVar[str] = "SERVER_SETUP"
    _FIELDS = (("version", _VARINT), ("parameters", _PARAMS))
    version: int
    parameters: Parameters = ()


@dataclass(frozen=True)
class Goaway(Message):
    TYPE: ClassVar[int] = 0x10
    NAME: ClassVar[str] = "GOAWAY"
    _FIELDS = (("new_session_uri", _URI),)
    new_session_uri: bytes = b""


@dataclass(frozen=True)
class MaxRequestId(Message):
    TYPE: ClassVar[int] = 0x15
    NAME: ClassVar[str] = "MAX_REQUEST_ID"
    _FIELDS = (("request_id", _VARINT),)
    #: One more than the largest Request ID the receiver may use.
    request_id: int


@dataclass(frozen=True)
class RequestsBlocked(Message):
    TYPE: ClassVar[int] = 0x1A
    NAME: ClassVar[str] = "REQUESTS_BLOCKED"
    _FIELDS = (("maximum_request_id", _VARINT),)
    maximum_request_id: int


# --- Subscribe family ----------------------------------------------------------------


@dataclass(frozen=True)
class _SubscribeBody(Message):
    _FIELDS = (
        ("request_id", _VARINT),
        ("namespace", _NAMESPACE),
        ("track_name", _TRACK_NAME),
        ("subscriber_priority", _U8),
        ("group_order", _U8),
        ("forward", _U8),
        ("filter_type", _FILTER_TYPE),
        ("start", _FILTER_START),
        ("end_group", _FILTER_END),
        ("parameters", _PARAMS),
    )
    request_id: int
    namespace: Namespace
    track_name: bytes
    subscriber_priority: int = 128
    group_order: int = GroupOrder.ASCENDING
    forward: int = 1
    filter_type: int = FilterType.LARGEST_OBJECT
    start: Location | None = None
    end_group: int | None = None
    parameters: Parameters = ()

    def problem(self) -> str | None:
        return (
            _check_track_name(self.namespace, self.track_name)
            or _check_u8(self.group_order, range(3), "group order")
            or _check_u8(self.forward, range(2), "forward")
            or _filter_problem(self.filter_type, self.start, self.end_group)
        )


@dataclass(frozen=True)
class Subscribe(_SubscribeBody):
    TYPE: ClassVar[int] = 0x03
    NAME: ClassVar[str] = "SUBSCRIBE"


@dataclass(frozen=True)
class TrackStatus(_SubscribeBody):
    """Same layout as SUBSCRIBE; asks for the track's status without subscribing."""

    TYPE: ClassVar[int] = 0x0D
    NAME: ClassVar[str] = "TRACK_STATUS"


@dataclass(frozen=True)
class _SubscribeOkBody(Message):
    _FIELDS = (
        ("request_id", _VARINT),
        ("track_alias", _VARINT),
        ("expires", _VARINT),
        ("group_order", _U8),
        ("largest", _LARGEST),
        ("parameters", _PARAMS),
    )
    request_id: int
    track_alias: int
    expires: int = 0
    group_order: int = GroupOrder.ASCENDING
    largest: Location | None = None
    parameters: Parameters = ()

    def problem(self) -> str | None:
        return _check_u8(self.group_order, range(1, 3), "group order")


@dataclass(frozen=True)
class SubscribeOk(_SubscribeOkBody):
    TYPE: ClassVar[int] = 0x04
    NAME: ClassVar[str] = "SUBSCRIBE_OK"


@dataclass(frozen=True)
class TrackStatusOk(_SubscribeOkBody):
    TYPE: ClassVar[int] = 0x0E
    NAME: ClassVar[str] = "TRACK_STATUS_OK"


@dataclass(frozen=True)
class _RequestOnly(Message):
    """A message that carries nothing but the request it is about."""

    _FIELDS = (("request_id", _VARINT),)
    request_id: int


@dataclass(frozen=True)
class _RequestError(Message):
    _FIELDS = (("request_id", _VARINT), ("error_code", _VARINT), ("reason", _REASON))
    request_id: int
    error_code: int
    reason: str = ""


@dataclass(frozen=True)
class SubscribeError(_RequestError):
    TYPE: ClassVar[int] = 0x05
    NAME: ClassVar[str] = "SUBSCRIBE_ERROR"


@dataclass(frozen=True)
class TrackStatusError(_RequestError):
    TYPE: ClassVar[int] = 0x0F
    NAME: ClassVar[str] = "TRACK_STATUS_ERROR"


@dataclass(frozen=True)
class SubscribeUpdate(Message):
    TYPE: ClassVar[int] = 0x02
    NAME: ClassVar[str] = "SUBSCRIBE_UPDATE"
    _FIELDS = (
        ("request_id", _VARINT),
        ("subscription_request_id", _VARINT),
        ("start", _LOCATION),
        ("end_group", _VARINT),
        ("subscriber_priority", _U8),
        ("forward", _U8),
        ("parameters", _PARAMS),
    )
    request_id: int
    subscription_request_id: int
    start: Location
    #: End group plus one; 0 means open-ended.
    end_group: int
    subscriber_priority: int
    forward: int
    parameters: Parameters = ()

    def problem(self) -> str | None:
        if self.end_group and self.end_group - 1 < self.start.group:
            return "end group is before the start group"
        return _check_u8(self.forward, range(2), "forward")


@dataclass(frozen=True)
class Unsubscribe(_RequestOnly):
    TYPE: ClassVar[int] = 0x0A
    NAME: ClassVar[str] = "UNSUBSCRIBE"


@dataclass(frozen=True)
class PublishDone(Message):
    TYPE: ClassVar[int] = 0x0B
    NAME: ClassVar[str] = "PUBLISH_DONE"
    _FIELDS = (
        ("request_id", _VARINT),
        ("status_code", _VARINT),
        ("stream_count", _VARINT),
        ("reason", _REASON),
    )
    request_id: int
    status_code: int
    stream_count: int
    reason: str = ""


# --- Publish family ------------------------------------------------------------------


@dataclass(frozen=True)
class Publish(Message):
    TYPE: ClassVar[int] = 0x1D
    NAME: ClassVar[str] = "PUBLISH"
    _FIELDS = (
        ("request_id", _VARINT),
        ("namespace", _NAMESPACE),
        ("track_name", _TRACK_NAME),
        ("track_alias", _VARINT),
        ("group_order", _U8),
        ("largest", _LARGEST),
        ("forward", _U8),
        ("parameters", _PARAMS),
    )
    request_id: int
    namespace: Namespace
    track_name: bytes
    track_alias: int
    group_order: int = GroupOrder.ASCENDING
    largest: Location | None = None
    forward: int = 1
    parameters: Parameters = ()

    def problem(self) -> str | None:
        return (
            _check_track_name(self.namespace, self.track_name)
            or _check_u8(self.group_order, range(1, 3), "group order")
            or _check_u8(self.forward, range(2), "forward")
        )


@dataclass(frozen=True)
class PublishOk(Message):
    TYPE: ClassVar[int] = 0x1E
    NAME: ClassVar[str] = "PUBLISH_OK"
    _FIELDS = (
        ("request_id", _VARINT),
        ("forward", _U8),
        ("subscriber_priority", _U8),
        ("group_order", _U8),
        ("filter_type", _FILTER_TYPE),
        ("start", _FILTER_START),
        ("end_group", _FILTER_END),
        ("parameters", _PARAMS),
    )
    request_id: int
    forward: int = 1
    subscriber_priority: int = 128
    group_order: int = GroupOrder.ASCENDING
    filter_type: int = FilterType.LARGEST_OBJECT
    start: Location | None = None
    end_group: int | None = None
    parameters: Parameters = ()

    def problem(self) -> str | None:
        return (
            _check_u8(self.forward, range(2), "forward")
            or _check_u8(self.group_order, range(1, 3), "group order")
            or _filter_problem(self.filter_type, self.start, self.end_group)
        )


@dataclass(frozen=True)
class PublishError(_RequestError):
    TYPE: ClassVar[int] = 0x1F
    NAME: ClassVar[str] = "PUBLISH_ERROR"


# --- Fetch family --------------------------------------------------------------------


@dataclass(frozen=True)
class Fetch(Message):
    """FETCH; standalone fetches fill namespace..end, joining ones the joining fields."""

    TYPE: ClassVar[int] = 0x16
    NAME: ClassVar[str] = "FETCH"
    request_id: int
    subscriber_priority: int
    group_order: int
    fetch_type: int
    namespace: Namespace = ()
    track_name: bytes = b""
    start: Location | None = None
    end: Location | None = None
    joining_request_id: int | None = None
    joining_start: int | None = None
    parameters: Parameters = ()

    def encode_payload(self, buf: bytearray) -> None:
        write_varint(buf, self.request_id)
        write_uint8(buf, self.subscriber_priority)
        write_uint8(buf, self.group_order)
        write_varint(buf, self.fetch_type)
        if self.fetch_type == FetchType.STANDALONE:
            if self.start is None or self.end is None:
                raise MoqtUsageError("standalone FETCH needs start and end locations")
            write_namespace(buf, self.namespace)
            write_bytes(buf, self.track_name)
            write_location(buf, self.start)
            write_location(buf, self.end)
        else:
            if self.joining_request_id is None or self.joining_start is None:
                raise MoqtUsageError("joining FETCH needs a request ID and a start")
            write_varint(buf, self.joining_request_id)
            write_varint(buf, self.joining_start)
        write_parameters(buf, self.parameters)

    @classmethod
    def decode_payload(cls, reader: Reader) -> Message:
        request_id = reader.read_varint()
        priority = reader.read_uint8()
        group_order = reader.read_uint8()
        fetch_type = reader.read_varint()
        if fetch_type == FetchType.STANDALONE:
            namespace = reader.read_namespace()
            name = _read_track_name(reader, namespace)
            start = reader.read_location()
            end = reader.read_location()
            params = reader.read_parameters()
            return cls(
                request_id,
                priority,
                group_order,
                fetch_type,
                namespace,
                name,
                start,
                end,
                parameters=params,
            )
        if fetch_type in (FetchType.RELATIVE_JOINING, FetchType.ABSOLUTE_JOINING):
            joining_id = reader.read_varint()
            joining_start = reader.read_varint()
            params = reader.read_parameters()
            return cls(
                request_id,
                priority,
                group_order,
                fetch_type,
                joining_request_id=joining_id,
                joining_start=joining_start,
                parameters=params,
            )
        raise MoqtProtocolError(f"unknown fetch type {fetch_type}")

    def problem(self) -> str | None:
        if self.fetch_type == FetchType.STANDALONE:
            problem = _check_track_name(self.namespace, self.track_name)
            if problem is None and self.joining_request_id is not None:
                problem = "standalone FETCH carries joining fields"
        elif self.namespace or self.track_name or self.start or self.end:
            problem = "joining FETCH carries standalone fields"
        else:
            problem = None
        return problem or _check_u8(self.group_order, range(3), "group order")


@dataclass(frozen=True)
class FetchOk(Message):
    TYPE: ClassVar[int] = 0x18
    NAME: ClassVar[str] = "FETCH_OK"
    _FIELDS = (
        ("request_id", _VARINT),
        ("group_order", _U8),
        ("end_of_track", _U8),
        ("end_location", _LOCATION),
        ("parameters", _PARAMS),
    )
    request_id: int
    group_order: int
    end_of_track: int
    end_location: Location
    parameters: Parameters = ()

    def problem(self) -> str | None:
        return _check_u8(self.group_order, range(1, 3), "group order") or _check_u8(
            self.end_of_track, range(2), "end of track"
        )


@dataclass(frozen=True)
class FetchError(_RequestError):
    TYPE: ClassVar[int] = 0x19
    NAME: ClassVar[str] = "FETCH_ERROR"


@dataclass(frozen=True)
class FetchCancel(_RequestOnly):
    TYPE: ClassVar[int] = 0x17
    NAME: ClassVar[str] = "FETCH_CANCEL"


# --- Namespaces ----------------------------------------------------------------------


@dataclass(frozen=True)
class PublishNamespace(Message):
    TYPE: ClassVar[int] = 0x06
    NAME: ClassVar[str] = "PUBLISH_NAMESPACE"
    _FIELDS = (("request_id", _VARINT), ("namespace", _NAMESPACE), ("parameters", _PARAMS))
    request_id: int
    namespace: Namespace
    parameters: Parameters = ()


@dataclass(frozen=True)
class PublishNamespaceOk(_RequestOnly):
    TYPE: ClassVar[int] = 0x07
    NAME: ClassVar[str] = "PUBLISH_NAMESPACE_OK"


@dataclass(frozen=True)
class PublishNamespaceError(_RequestError):
    TYPE: ClassVar[int] = 0x08
    NAME: ClassVar[str] = "PUBLISH_NAMESPACE_ERROR"


@dataclass(frozen=True)
class PublishNamespaceDone(Message):
    TYPE: ClassVar[int] = 0x09
    NAME: ClassVar[str] = "PUBLISH_NAMESPACE_DONE"
    _FIELDS = (("namespace", _NAMESPACE),)
    namespace: Namespace


@dataclass(frozen=True)
class PublishNamespaceCancel(Message):
    TYPE: ClassVar[int] = 0x0C
    NAME: ClassVar[str] = "PUBLISH_NAMESPACE_CANCEL"
    _FIELDS = (("namespace", _NAMESPACE), ("error_code", _VARINT), ("reason", _REASON))
    namespace: Namespace
    error_code: int
    reason: str = ""


@dataclass(frozen=True)
class SubscribeNamespace(Message):
    """SUBSCRIBE_NAMESPACE; an empty prefix (sent by moq-rs) is accepted as "all"."""

    TYPE: ClassVar[int] = 0x11
    NAME: ClassVar[str] = "SUBSCRIBE_NAMESPACE"
    _FIELDS = (("request_id", _VARINT), ("namespace_prefix", _PREFIX), ("parameters", _PARAMS))
    request_id: int
    namespace_prefix: Namespace
    parameters: Parameters = ()


@dataclass(frozen=True)
class SubscribeNamespaceOk(_RequestOnly):
    TYPE: ClassVar[int] = 0x12
    NAME: ClassVar[str] = "SUBSCRIBE_NAMESPACE_OK"


@dataclass(frozen=True)
class SubscribeNamespaceError(_RequestError):
    TYPE: ClassVar[int] = 0x13
    NAME: ClassVar[str] = "SUBSCRIBE_NAMESPACE_ERROR"


@dataclass(frozen=True)
class UnsubscribeNamespace(Message):
    TYPE: ClassVar[int] = 0x14
    NAME: ClassVar[str] = "UNSUBSCRIBE_NAMESPACE"
    _FIELDS = (("namespace_prefix", _PREFIX),)
    namespace_prefix: Namespace


ControlMessage: TypeAlias = Message

MESSAGE_TYPES: dict[int, type[Message]] = {
    cls.TYPE: cls
    for cls in (
        ClientSetup,
        ServerSetup,
        Goaway,
        MaxRequestId,
        RequestsBlocked,
        Subscribe,
        SubscribeOk,
        SubscribeError,
        SubscribeUpdate,
        Unsubscribe,
        PublishDone,
        Publish,
        PublishOk,
        PublishError,
        Fetch,
        FetchOk,
        FetchError,
        FetchCancel,
        TrackStatus,
        TrackStatusOk,
        TrackStatusError,
        PublishNamespace,
        PublishNamespaceOk,
        PublishNamespaceError,
        PublishNamespaceDone,
        PublishNamespaceCancel,
        SubscribeNamespace,
        SubscribeNamespaceOk,
        SubscribeNamespaceError,
        UnsubscribeNamespace,
    )
}


def encode_message(message: Message) -> bytes:
    """Serialize ``message`` with its type and 16-bit length prefix."""
    problem = message.problem()
    if problem is not None:
        raise MoqtUsageError(f"{message.NAME}: {problem}")
    payload = bytearray()
    message.encode_payload(payload)
    if len(payload) > MAX_MESSAGE_PAYLOAD:
        raise MoqtUsageError(f"{message.NAME} payload of {len(payload)} bytes is too long")
    return encode_varint(message.TYPE) + len(payload).to_bytes(2, "big") + payload


def decode_message(message_type: int, payload: bytes) -> Message:
    """Decode one complete payload; any mismatch is a protocol violation."""
    cls = MESSAGE_TYPES.get(message_type)
    if cls is None:
        raise MoqtProtocolError(f"unknown control message type {message_type:#x}")
    reader = Reader(payload)
    try:
        message = cls.decode_payload(reader)
    except NeedMoreData:
        raise MoqtProtocolError(f"{cls.NAME} is shorter than its fields") from None
    if not reader.at_end():
        raise MoqtProtocolError(f"{cls.NAME} has {reader.remaining} bytes after its fields")
    problem = message.problem()
    if problem is not None:
        raise MoqtProtocolError(f"{cls.NAME}: {problem}")
    return message


class ControlStreamParser:
    """Splits the control stream into messages, however the bytes are chunked.

    Buffering is bounded: a message is at most 8 + 2 + 65535 bytes, and an unknown
    type is refused as soon as its type varint is complete.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Message]:
        self._buffer += data
        messages: list[Message] = []
        buffer = self._buffer
        pos = 0
        while True:
            reader = Reader(buffer, pos)
            try:
                message_type = reader.read_varint()
                if message_type not in MESSAGE_TYPES:
                    raise MoqtProtocolError(f"unknown control message type {message_type:#x}")
                length = reader.read_uint16()
                payload = reader.read_bytes(length)
            except NeedMoreData:
                break
            messages.append(decode_message(message_type, payload))
            pos = reader.pos
        del buffer[:pos]
        return messages

    @property
    def buffered(self) -> int:
        """Bytes held for an incomplete message."""
        return len(self._buffer)


def message_fields(message: Message) -> dict[str, Any]:
    """The fields of ``message`` as a dict, for logging and tests."""
    return {f.name: getattr(message, f.name) for f in fields(message)}


__all__ = [
    "MAX_MESSAGE_PAYLOAD",
    "MESSAGE_TYPES",
    "ClientSetup",
    "ControlMessage",
    "ControlStreamParser",
    "Fetch",
    "FetchCancel",
    "FetchError",
    "FetchOk",
    "FetchType",
    "FilterType",
    "Goaway",
    "GroupOrder",
    "MaxRequestId",
    "Message",
    "MessageParameter",
    "Publish",
    "PublishDone",
    "PublishError",
    "PublishNamespace",
    "PublishNamespaceCancel",
    "PublishNamespaceDone",
    "PublishNamespaceError",
    "PublishNamespaceOk",
    "PublishOk",
    "RequestsBlocked",
    "ServerSetup",
    "SetupParameter",
    "Subscribe",
    "SubscribeError",
    "SubscribeNamespace",
    "SubscribeNamespaceError",
    "SubscribeNamespaceOk",
    "SubscribeOk",
    "SubscribeUpdate",
    "TrackStatus",
    "TrackStatusError",
    "TrackStatusOk",
    "Unsubscribe",
    "UnsubscribeNamespace",
    "decode_message",
    "encode_message",
    "message_fields",
]
