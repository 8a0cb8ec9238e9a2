"""The MoQT session state machine, for the client and the server role.

Sans-IO: the transport feeds bytes in (:meth:`Session.receive_control`,
:meth:`Session.receive_stream`, :meth:`Session.receive_datagram`) and gets events
back; it drains what to send with :meth:`Session.control_data_to_send`,
:meth:`Session.stream_commands_to_send` and :meth:`Session.datagrams_to_send`.
Stream keys are opaque: incoming streams use whatever key the transport passes,
outgoing uni streams get small integers chosen here.

A peer that breaks the protocol makes a ``receive_*`` call raise
:class:`MoqtProtocolError`; the session is then closed and the transport should
close the connection with ``error.error_code``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, NoReturn, TypeVar

from . import messages as m
from .data import (
    DEFAULT_MAX_OBJECT_SIZE,
    DataStreamItem,
    DataStreamParser,
    FetchHeader,
    ObjectDatagram,
    ObjectStatus,
    SubgroupHeader,
    SubgroupIdMode,
    SubgroupObject,
    encode_audio_stream,
    encode_subgroup_object,
    parse_audio_stream,
    parse_whole_subgroup_stream,
    subgroup_id_of,
    timestamp_extension,
    timestamp_from_extensions,
)
from .errors import (
    FetchErrorCode,
    MoqtProtocolError,
    MoqtUsageError,
    PublishDoneCode,
    PublishErrorCode,
    RequestsBlockedError,
    SessionErrorCode,
    StreamResetCode,
    SubscribeErrorCode,
    SubscribeNamespaceErrorCode,
)
from .events import (
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
    StreamCommand,
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
from .version import SUPPORTED_VERSIONS
from .wire import (
    MAX_VARINT,
    KeyValuePair,
    Location,
    Namespace,
    Parameters,
    check_namespace,
    encode_varint,
    is_prefix,
)

#: Requests the peer may have in flight before we raise its limit again.
DEFAULT_REQUEST_WINDOW = 100
#: Bytes held per session for streams whose track alias is not known yet.
DEFAULT_MAX_PENDING_STREAM_BYTES = 1 << 20
DEFAULT_IMPLEMENTATION = "clutchcall"
_RETIRED_ALIAS_MEMORY = 4096

NameLike = bytes | str


class Role(Enum):
    CLIENT = "client"
    SERVER = "server"


class SessionState(Enum):
    SETUP = "setup"
    ESTABLISHED = "established"
    CLOSED = "closed"


@dataclass(frozen=True)
class Termination:
    """Why the session ended; ``by_peer`` is True when the peer caused it."""

    error_code: int
    reason: str
    by_peer: bool


def authorization_token(value: bytes, token_type: int = 0) -> KeyValuePair:
    """An AUTHORIZATION_TOKEN parameter carrying ``value`` directly (Alias Type USE_VALUE)."""
    return (
        m.SetupParameter.AUTHORIZATION_TOKEN,
        encode_varint(0x3) + encode_varint(token_type) + value,
    )


def to_namespace(namespace: Sequence[NameLike]) -> Namespace:
    """Turn a sequence of str/bytes fields into a wire namespace (str is UTF-8)."""
    result = tuple(_to_bytes(f) for f in namespace)
    check_namespace(result)
    return result


def _to_bytes(value: NameLike) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, bytes):
        return value
    raise MoqtUsageError(f"expected str or bytes, not {type(value).__name__}")


T = TypeVar("T")


def _awaiting_answer(pending: dict[int, T], request_id: int, what: str) -> T:
    """Take the peer's request ``request_id`` (a ``what``) out of ``pending``, the
    requests that await our answer."""
    found = pending.pop(request_id, None)
    if found is None:
        raise MoqtUsageError(f"no {what} {request_id} awaits an answer")
    return found


@dataclass
class _OutgoingSubscription:
    """A SUBSCRIBE we sent."""

    request_id: int
    namespace: Namespace
    track_name: bytes
    track_alias: int | None = None
    #: PUBLISH_DONE arrived; the alias stays mapped for late streams.
    done: bool = False
    expected_streams: int = 0
    finished_streams: int = 0


@dataclass
class _IncomingSubscription:
    """A SUBSCRIBE we received (we are the publisher)."""

    request_id: int
    namespace: Namespace
    track_name: bytes
    forward: bool
    start: Location | None
    end_group: int | None
    track_alias: int | None = None
    open_streams: set[int] = field(default_factory=set)
    stream_count: int = 0


@dataclass
class _OutgoingStream:
    request_id: int
    header: SubgroupHeader
    last_object_id: int | None = None


@dataclass
class _IncomingStream:
    parser: DataStreamParser
    header: SubgroupHeader | None = None
    request_id: int | None = None
    first_object_id: int | None = None
    #: Objects held while the track alias is unknown (SUBSCRIBE_OK not yet seen).
    pending: list[SubgroupObject] | None = None
    pending_bytes: int = 0
    discarded: bool = False
    ended: bool = False


_NO_PARSER = DataStreamParser()
"""The parser slot of a stream handled whole (never fed)."""

_SINGLE_SETUP_PARAMETERS = frozenset(
    {
        m.SetupParameter.PATH,
        m.SetupParameter.MAX_REQUEST_ID,
        m.SetupParameter.MAX_AUTH_TOKEN_CACHE_SIZE,
        m.SetupParameter.AUTHORITY,
        m.SetupParameter.MOQT_IMPLEMENTATION,
    }
)


class Session:
    """One MoQT session over one QUIC connection or WebTransport session."""

    def __init__(
        self,
        role: Role,
        *,
        path: NameLike | None = None,
        authority: NameLike | None = None,
        webtransport: bool = False,
        versions: Sequence[int] = SUPPORTED_VERSIONS,
        implementation: str | None = DEFAULT_IMPLEMENTATION,
        setup_parameters: Parameters = (),
        request_window: int = DEFAULT_REQUEST_WINDOW,
        send_requests_blocked: bool = True,
        max_object_size: int = DEFAULT_MAX_OBJECT_SIZE,
        max_pending_stream_bytes: int = DEFAULT_MAX_PENDING_STREAM_BYTES,
    ) -> None:
        if role == Role.SERVER and (path is not None or authority is not None):
            raise MoqtUsageError("PATH and AUTHORITY are sent by the client only")
        if webtransport and (path is not None or authority is not None):
            raise MoqtUsageError("PATH and AUTHORITY are not used over WebTransport")
        if not versions or any(v not in SUPPORTED_VERSIONS for v in versions):
            raise MoqtUsageError(f"versions must be a non-empty subset of {SUPPORTED_VERSIONS}")
        if request_window < 0:
            raise MoqtUsageError("request_window must not be negative")
        self.role = role
        self.state = SessionState.SETUP
        self.version: int | None = None
        self.termination: Termination | None = None
        self._webtransport = webtransport
        self._extra_setup_parameters = setup_parameters
        self._versions = tuple(versions)
        self._implementation = implementation
        self._request_window = request_window
        self._send_requests_blocked = send_requests_blocked
        self._max_object_size = max_object_size
        self._max_pending_stream_bytes = max_pending_stream_bytes

        self._control_parser = m.ControlStreamParser()
        self._control_out = bytearray()
        self._commands: list[StreamCommand] = []
        self._datagrams: list[bytes] = []
        self._events: list[Event] = []

        is_client = role == Role.CLIENT
        # Our Request IDs: client even from 0, server odd from 1.
        self._next_request_id = 0 if is_client else 1
        self._peer_max_request_id = 0
        self._blocked_sent_at: int | None = None
        # The peer's Request IDs and the limit we granted (exclusive).
        self._peer_next_request_id = 1 if is_client else 0
        self._granted_limit = self._peer_next_request_id + 2 * request_window
        self._peer_ids_ahead: set[int] = set()

        self._goaway_received = False
        self._goaway_sent = False

        self._my_requests: dict[int, str] = {}
        self._subscriptions: dict[int, _OutgoingSubscription] = {}
        self._alias_to_subscription: dict[int, int] = {}
        self._retired_aliases: OrderedDict[int, None] = OrderedDict()
        self._published_namespaces: dict[int, Namespace] = {}
        self._namespace_subscriptions: dict[int, Namespace] = {}

        self._peer_subscriptions: dict[int, _IncomingSubscription] = {}
        self._aliases_in_use: set[int] = set()
        self._next_track_alias = 0
        self._peer_namespaces_pending: dict[int, Namespace] = {}
        self._peer_namespaces: set[Namespace] = set()
        self._peer_namespace_subscriptions_pending: dict[int, Namespace] = {}
        self._peer_namespace_subscriptions: dict[Namespace, int] = {}

        self._in_streams: dict[Hashable, _IncomingStream] = {}
        self._out_streams: dict[int, _OutgoingStream] = {}
        self._next_stream_key = 0

        self._handlers: dict[type[m.Message], Callable[[Any], None]] = {
            m.ClientSetup: self._on_client_setup,
            m.ServerSetup: self._on_server_setup,
            m.Goaway: self._on_goaway,
            m.MaxRequestId: self._on_max_request_id,
            m.RequestsBlocked: self._on_requests_blocked,
            m.Subscribe: self._on_subscribe,
            m.SubscribeOk: self._on_subscribe_ok,
            m.SubscribeError: self._on_subscribe_error,
            m.SubscribeUpdate: self._on_subscribe_update,
            m.Unsubscribe: self._on_unsubscribe,
            m.PublishDone: self._on_publish_done,
            m.Publish: self._on_unsupported_request,
            m.Fetch: self._on_unsupported_request,
            m.TrackStatus: self._on_unsupported_request,
            m.PublishOk: self._on_unexpected_response,
            m.PublishError: self._on_unexpected_response,
            m.FetchOk: self._on_unexpected_response,
            m.FetchError: self._on_unexpected_response,
            m.TrackStatusOk: self._on_unexpected_response,
            m.TrackStatusError: self._on_unexpected_response,
            m.FetchCancel: self._on_fetch_cancel,
            m.PublishNamespace: self._on_publish_namespace,
            m.PublishNamespaceOk: self._on_namespace_ok,
            m.PublishNamespaceError: self._on_namespace_error,
            m.PublishNamespaceDone: self._on_publish_namespace_done,
            m.PublishNamespaceCancel: self._on_publish_namespace_cancel,
            m.SubscribeNamespace: self._on_subscribe_namespace,
            m.SubscribeNamespaceOk: self._on_namespace_ok,
            m.SubscribeNamespaceError: self._on_namespace_error,
            m.UnsubscribeNamespace: self._on_unsubscribe_namespace,
        }

        if is_client:
            params: list[KeyValuePair] = []
            if path is not None:
                params.append((m.SetupParameter.PATH, _to_bytes(path)))
            if authority is not None:
                params.append((m.SetupParameter.AUTHORITY, _to_bytes(authority)))
            params.append((m.SetupParameter.MAX_REQUEST_ID, self._granted_limit))
            if implementation:
                params.append((m.SetupParameter.MOQT_IMPLEMENTATION, implementation.encode()))
            params.extend(setup_parameters)
            self._send(m.ClientSetup(self._versions, tuple(params)))

    # --- Output ----------------------------------------------------------------------

    def control_data_to_send(self) -> bytes:
        """Bytes for the control stream (the client opens it and writes first)."""
        data = bytes(self._control_out)
        self._control_out.clear()
        return data

    def stream_commands_to_send(self) -> list[StreamCommand]:
        """Writes, resets and stop-sendings for data streams, in order."""
        commands = self._commands
        self._commands = []
        return commands

    def datagrams_to_send(self) -> list[bytes]:
        datagrams = self._datagrams
        self._datagrams = []
        return datagrams

    # --- Input -----------------------------------------------------------------------

    def receive_control(self, data: bytes) -> list[Event]:
        """Feed bytes read from the control stream."""
        if self.state == SessionState.CLOSED:
            return []
        try:
            for message in self._control_parser.feed(data):
                self._handlers[type(message)](message)
        except MoqtProtocolError as exc:
            self._fail(exc)
        return self._take_events()

    def receive_control_end(self) -> list[Event]:
        """The peer closed the control stream, which ends the session as a violation."""
        if self.state != SessionState.CLOSED:
            self._fail(MoqtProtocolError("the control stream was closed"))
        return []

    def receive_stream(self, key: Hashable, data: bytes, end: bool = False) -> list[Event]:
        """Feed bytes read from an incoming unidirectional stream."""
        if self.state == SessionState.CLOSED:
            return []
        stream = self._in_streams.get(key)
        if stream is None:
            if not data and end:
                return []
            if end and self._receive_whole_stream(data):
                return self._take_events()
            stream = _IncomingStream(DataStreamParser(self._max_object_size))
            self._in_streams[key] = stream
        try:
            if stream.discarded:
                if end:
                    del self._in_streams[key]
                return []
            for item in stream.parser.feed(data, end):
                self._on_stream_item(key, stream, item)
                if stream.discarded:
                    break
        except MoqtProtocolError as exc:
            self._fail(exc)
        if end:
            stream.ended = True
            if stream.pending is None or stream.discarded:
                self._in_streams.pop(key, None)
                self._stream_finished(stream)
        return self._take_events()

    def _subscription_for_alias(self, alias: int) -> _OutgoingSubscription | None:
        """The subscription a track alias was given to, if it is still live."""
        request_id = self._alias_to_subscription.get(alias)
        return None if request_id is None else self._subscriptions.get(request_id)

    def _receive_whole_stream(self, data: bytes) -> bool:
        """A whole subgroup stream of a subscription we know (each audio frame is
        one): deliver its objects without the incremental parser. False, having
        done nothing, for anything else, which takes the general path."""
        audio = parse_audio_stream(data, self._max_object_size)
        if audio is not None:
            alias, group_id, priority, object_id, payload, extensions = audio
            sub = self._subscription_for_alias(alias)
            if sub is None:
                return False
            self._events.append(
                ObjectReceived(
                    request_id=sub.request_id,
                    namespace=sub.namespace,
                    track_name=sub.track_name,
                    group_id=group_id,
                    subgroup_id=0,
                    object_id=object_id,
                    publisher_priority=priority,
                    payload=payload,
                    status=ObjectStatus.NORMAL,
                    extensions=extensions,
                    timestamp_us=timestamp_from_extensions(extensions),
                    end_of_group=False,
                    via_datagram=False,
                )
            )
        else:
            parsed = parse_whole_subgroup_stream(data, self._max_object_size)
            if parsed is None:
                return False
            header, objects = parsed
            sub = self._subscription_for_alias(header.track_alias)
            if sub is None:
                return False
            stream = _IncomingStream(_NO_PARSER, header, sub.request_id, objects[0].object_id)
            for item in objects:
                self._deliver(sub, stream, item)
        self._count_finished_stream(sub)
        return True

    def receive_stream_reset(self, key: Hashable, error_code: int = 0) -> list[Event]:
        """The peer reset an incoming stream; forget it."""
        stream = self._in_streams.pop(key, None)
        if stream is not None:
            self._stream_finished(stream)
        return []

    def receive_stop_sending(self, key: int, error_code: int = 0) -> list[Event]:
        """The peer asked us to stop an outgoing stream; it is reset and forgotten."""
        stream = self._out_streams.get(key)
        if stream is not None:
            self._drop_out_stream(key, stream.request_id, StreamResetCode.CANCELLED)
        return []

    def receive_datagram(self, data: bytes) -> list[Event]:
        if self.state == SessionState.CLOSED:
            return []
        try:
            datagram = ObjectDatagram.decode(data)
        except MoqtProtocolError as exc:
            self._fail(exc)
        request_id = self._alias_to_subscription.get(datagram.track_alias)
        if request_id is not None:
            sub = self._subscriptions[request_id]
            status = 0 if datagram.status is None else datagram.status
            self._events.append(
                ObjectReceived(
                    request_id=request_id,
                    namespace=sub.namespace,
                    track_name=sub.track_name,
                    group_id=datagram.group_id,
                    subgroup_id=None,
                    object_id=datagram.object_id,
                    publisher_priority=datagram.publisher_priority,
                    payload=datagram.payload,
                    status=status,
                    extensions=datagram.extensions,
                    timestamp_us=datagram.timestamp_us,
                    end_of_group=datagram.end_of_group or status == ObjectStatus.END_OF_GROUP,
                    via_datagram=True,
                )
            )
        return self._take_events()

    def connection_lost(self, error_code: int = 0, reason: str = "") -> list[Event]:
        """The transport reports that the connection is gone."""
        if self.state == SessionState.CLOSED:
            return []
        self.state = SessionState.CLOSED
        self.termination = Termination(error_code, reason, by_peer=True)
        return [SessionClosed(error_code, reason)]

    # --- Session control -------------------------------------------------------------

    def close(self, error_code: int = SessionErrorCode.NO_ERROR, reason: str = "") -> None:
        """End the session; the transport closes the connection with ``error_code``."""
        if self.state != SessionState.CLOSED:
            self.state = SessionState.CLOSED
            self.termination = Termination(int(error_code), reason, by_peer=False)

    def goaway(self, new_session_uri: bytes = b"") -> None:
        """Tell the peer this session will close soon (servers may name a new URI)."""
        self._require_established()
        if self._goaway_sent:
            raise MoqtUsageError("GOAWAY was already sent")
        if new_session_uri and self.role == Role.CLIENT:
            raise MoqtUsageError("only a server may send a new session URI")
        self._goaway_sent = True
        self._send(m.Goaway(new_session_uri))

    def raise_request_limit(self, max_request_id: int) -> None:
        """Let the peer use Request IDs below ``max_request_id`` (MAX_REQUEST_ID)."""
        self._require_established()
        if max_request_id <= self._granted_limit:
            raise MoqtUsageError("the request limit can only increase")
        self._granted_limit = max_request_id
        self._send(m.MaxRequestId(max_request_id))

    @property
    def peer_max_request_id(self) -> int:
        """Exclusive bound on the Request IDs the peer lets us use."""
        return self._peer_max_request_id

    @property
    def next_request_id(self) -> int:
        return self._next_request_id

    # --- Publishing ------------------------------------------------------------------

    def publish_namespace(self, namespace: Sequence[NameLike], parameters: Parameters = ()) -> int:
        """Send PUBLISH_NAMESPACE; the answer is PublishNamespaceAccepted/Rejected."""
        ns = to_namespace(namespace)
        if ns in self._published_namespaces.values():
            raise MoqtUsageError(f"namespace {ns!r} is already published")
        message = m.PublishNamespace(self._next_request_id, ns, parameters)
        return self._start_request("publish_namespace", self._published_namespaces, ns, message)

    def publish_namespace_done(self, namespace: Sequence[NameLike]) -> None:
        """Withdraw a namespace we published (PUBLISH_NAMESPACE_DONE)."""
        ns = to_namespace(namespace)
        if not self._end_request(self._published_namespaces, ns, m.PublishNamespaceDone(ns)):
            raise MoqtUsageError(f"namespace {ns!r} is not published")

    def accept_subscribe(
        self,
        request_id: int,
        *,
        track_alias: int | None = None,
        expires: int = 0,
        group_order: int = m.GroupOrder.ASCENDING,
        largest: Location | None = None,
        parameters: Parameters = (),
    ) -> int:
        """Answer a SubscribeReceived with SUBSCRIBE_OK; returns the track alias."""
        sub = self._pending_peer_subscription(request_id)
        if track_alias is None:
            while self._next_track_alias in self._aliases_in_use:
                self._next_track_alias += 1
            track_alias = self._next_track_alias
            self._next_track_alias += 1
        elif track_alias in self._aliases_in_use:
            raise MoqtUsageError(f"track alias {track_alias} is in use")
        self._send(
            m.SubscribeOk(request_id, track_alias, expires, group_order, largest, parameters)
        )
        sub.track_alias = track_alias
        self._aliases_in_use.add(track_alias)
        return track_alias

    def reject_subscribe(
        self,
        request_id: int,
        error_code: int = SubscribeErrorCode.TRACK_DOES_NOT_EXIST,
        reason: str = "",
    ) -> None:
        self._pending_peer_subscription(request_id)
        self._send(m.SubscribeError(request_id, error_code, reason))
        del self._peer_subscriptions[request_id]

    def open_subgroup(
        self,
        request_id: int,
        group_id: int,
        *,
        subgroup_id: int = 0,
        publisher_priority: int = 128,
        end_of_group: bool = False,
        extensions: bool = True,
    ) -> int | None:
        """Open a subgroup stream for an accepted subscription; returns its key.

        Returns None (and opens nothing) when the subscription does not forward
        objects or has ended. ``extensions`` lets objects carry extension headers
        (needed for timestamps).
        """
        sub = self._sending_subscription(request_id)
        if sub is None:
            return None
        assert sub.track_alias is not None
        mode = SubgroupIdMode.EXPLICIT if subgroup_id else SubgroupIdMode.ZERO
        header = SubgroupHeader(
            sub.track_alias,
            group_id,
            publisher_priority,
            subgroup_id,
            mode,
            extensions,
            end_of_group,
        )
        data = header.encode()
        key = self._new_stream(sub, header)
        self._write(key, data, open_=True, end=False)
        return key

    def write_object(
        self,
        key: int,
        object_id: int,
        payload: bytes = b"",
        *,
        status: int = ObjectStatus.NORMAL,
        extensions: Parameters = (),
        timestamp_us: int | None = None,
    ) -> bool:
        """Write one object to a subgroup stream; False if it is no longer open (reset)."""
        stream = self._out_stream(key)
        if stream is None:
            return False
        data = self._encode_stream_object(
            stream, object_id, payload, status, extensions, timestamp_us
        )
        self._write(key, data, open_=False, end=False)
        return True

    def close_subgroup(self, key: int) -> None:
        """Finish a subgroup stream with FIN."""
        stream = self._out_stream(key)
        if stream is None:
            return
        self._write(key, b"", open_=False, end=True)
        self._forget_out_stream(key, stream.request_id)

    def reset_subgroup(self, key: int, error_code: int = StreamResetCode.CANCELLED) -> None:
        stream = self._out_stream(key)
        if stream is not None:
            self._drop_out_stream(key, stream.request_id, error_code)

    def send_object(
        self,
        request_id: int,
        group_id: int,
        payload: bytes,
        *,
        object_id: int = 0,
        timestamp_us: int | None = None,
        publisher_priority: int = 128,
        extensions: Parameters = (),
        end_of_group: bool = True,
        status: int = ObjectStatus.NORMAL,
    ) -> int | None:
        """Send one object on its own subgroup stream (header, object, FIN in one write).

        This is the audio path: one frame per object, one object per group, one
        stream per group. Returns the stream key, or None if nothing was sent
        because the subscription does not forward or has ended.
        """
        sub = self._sending_subscription(request_id)
        if sub is None:
            return None
        assert sub.track_alias is not None
        if not extensions and object_id == 0 and status == ObjectStatus.NORMAL and payload:
            # An audio frame: the same bytes as below, written directly.
            data = encode_audio_stream(
                sub.track_alias, group_id, publisher_priority, payload, timestamp_us, end_of_group
            )
        else:
            header = SubgroupHeader(
                sub.track_alias,
                group_id,
                publisher_priority,
                has_extensions=bool(extensions) or timestamp_us is not None,
                end_of_group=end_of_group,
            )
            stream = _OutgoingStream(request_id, header)
            data = header.encode() + self._encode_stream_object(
                stream, object_id, payload, status, extensions, timestamp_us
            )
        key = self._next_stream_key
        self._next_stream_key += 1
        sub.stream_count += 1
        self._write(key, data, open_=True, end=True)
        return key

    def send_datagram(
        self,
        request_id: int,
        group_id: int,
        payload: bytes = b"",
        *,
        object_id: int = 0,
        timestamp_us: int | None = None,
        publisher_priority: int = 128,
        extensions: Parameters = (),
        end_of_group: bool = False,
        status: int | None = None,
    ) -> bool:
        """Queue one object as an OBJECT_DATAGRAM; False if not sent (not forwarding)."""
        sub = self._sending_subscription(request_id)
        if sub is None:
            return False
        assert sub.track_alias is not None
        if timestamp_us is not None:
            extensions = timestamp_extension(timestamp_us) + tuple(extensions)
        datagram = ObjectDatagram(
            sub.track_alias,
            group_id,
            object_id,
            publisher_priority,
            payload,
            status,
            tuple(extensions),
            end_of_group,
        )
        self._datagrams.append(datagram.encode())
        return True

    def publish_done(
        self,
        request_id: int,
        status_code: int = PublishDoneCode.TRACK_ENDED,
        reason: str = "",
    ) -> None:
        """End an accepted subscription (PUBLISH_DONE); its streams must be closed."""
        sub = self._peer_subscriptions.get(request_id)
        if sub is None or sub.track_alias is None:
            raise MoqtUsageError(f"request {request_id} is not an accepted subscription")
        if sub.open_streams:
            raise MoqtUsageError("close or reset the subscription's streams before PUBLISH_DONE")
        self._send(m.PublishDone(request_id, status_code, sub.stream_count, reason))
        self._end_peer_subscription(sub)

    def accept_subscribe_namespace(self, request_id: int) -> None:
        pending = self._peer_namespace_subscriptions_pending
        prefix = _awaiting_answer(pending, request_id, "SUBSCRIBE_NAMESPACE")
        self._peer_namespace_subscriptions[prefix] = request_id
        self._send(m.SubscribeNamespaceOk(request_id))

    def reject_subscribe_namespace(
        self,
        request_id: int,
        error_code: int = SubscribeNamespaceErrorCode.NAMESPACE_PREFIX_UNKNOWN,
        reason: str = "",
    ) -> None:
        pending = self._peer_namespace_subscriptions_pending
        _awaiting_answer(pending, request_id, "SUBSCRIBE_NAMESPACE")
        self._send(m.SubscribeNamespaceError(request_id, error_code, reason))

    # --- Subscribing -----------------------------------------------------------------

    def subscribe(
        self,
        namespace: Sequence[NameLike],
        track_name: NameLike,
        *,
        subscriber_priority: int = 128,
        group_order: int = m.GroupOrder.ASCENDING,
        forward: bool = True,
        filter_type: int = m.FilterType.LARGEST_OBJECT,
        start: Location | None = None,
        end_group: int | None = None,
        parameters: Parameters = (),
    ) -> int:
        """Send SUBSCRIBE; returns its Request ID, which names the subscription."""
        ns = to_namespace(namespace)
        name = _to_bytes(track_name)
        for sub in self._subscriptions.values():
            if sub.namespace == ns and sub.track_name == name and not sub.done:
                raise MoqtUsageError("this track is already subscribed in this session")
        message = m.Subscribe(
            self._next_request_id,
            ns,
            name,
            subscriber_priority,
            group_order,
            int(forward),
            filter_type,
            start,
            end_group,
            parameters,
        )
        problem = message.problem()
        if problem is not None:
            raise MoqtUsageError(problem)
        sub = _OutgoingSubscription(self._next_request_id, ns, name)
        return self._start_request("subscribe", self._subscriptions, sub, message)

    def subscribe_update(
        self,
        request_id: int,
        *,
        start: Location,
        end_group: int = 0,
        subscriber_priority: int = 128,
        forward: bool = True,
        parameters: Parameters = (),
    ) -> int:
        """Narrow or pause a subscription (SUBSCRIBE_UPDATE); ``end_group`` is end + 1."""
        sub = self._subscriptions.get(request_id)
        if sub is None or sub.done:
            raise MoqtUsageError(f"request {request_id} is not an active subscription")
        message = m.SubscribeUpdate(
            self._next_request_id,
            request_id,
            start,
            end_group,
            subscriber_priority,
            int(forward),
            parameters,
        )
        problem = message.problem()
        if problem is not None:
            raise MoqtUsageError(problem)
        update_id = self._new_request_id()
        self._send(message)
        return update_id

    def unsubscribe(self, request_id: int) -> None:
        """Send UNSUBSCRIBE; objects still in flight are discarded.

        After PUBLISH_DONE nothing is sent: this only forgets the subscription, which
        the session otherwise keeps (for late streams) until the publisher's stream
        count is reached. Call it when your late-object timer expires.
        """
        sub = self._subscriptions.pop(request_id, None)
        if sub is None:
            raise MoqtUsageError(f"request {request_id} is not an active subscription")
        self._my_requests.pop(request_id, None)
        if not sub.done:
            self._send(m.Unsubscribe(request_id))
        self._retire_subscription(sub)

    def accept_publish_namespace(self, request_id: int) -> None:
        namespace = _awaiting_answer(self._peer_namespaces_pending, request_id, "PUBLISH_NAMESPACE")
        self._peer_namespaces.add(namespace)
        self._send(m.PublishNamespaceOk(request_id))

    def reject_publish_namespace(
        self,
        request_id: int,
        error_code: int = PublishErrorCode.UNINTERESTED,
        reason: str = "",
    ) -> None:
        _awaiting_answer(self._peer_namespaces_pending, request_id, "PUBLISH_NAMESPACE")
        self._send(m.PublishNamespaceError(request_id, error_code, reason))

    def cancel_publish_namespace(
        self, namespace: Sequence[NameLike], error_code: int = 0, reason: str = ""
    ) -> None:
        """Revoke our acceptance of a namespace the peer published."""
        ns = to_namespace(namespace)
        if ns not in self._peer_namespaces:
            raise MoqtUsageError(f"namespace {ns!r} was not accepted from the peer")
        self._peer_namespaces.discard(ns)
        self._send(m.PublishNamespaceCancel(ns, error_code, reason))

    def subscribe_namespace(
        self, namespace_prefix: Sequence[NameLike], parameters: Parameters = ()
    ) -> int:
        prefix = tuple(_to_bytes(f) for f in namespace_prefix)
        check_namespace(prefix, allow_empty=True)
        for active in self._namespace_subscriptions.values():
            if is_prefix(active, prefix) or is_prefix(prefix, active):
                raise MoqtUsageError("namespace subscriptions must not overlap")
        message = m.SubscribeNamespace(self._next_request_id, prefix, parameters)
        return self._start_request(
            "subscribe_namespace", self._namespace_subscriptions, prefix, message
        )

    def unsubscribe_namespace(self, namespace_prefix: Sequence[NameLike]) -> None:
        prefix = tuple(_to_bytes(f) for f in namespace_prefix)
        message = m.UnsubscribeNamespace(prefix)
        if not self._end_request(self._namespace_subscriptions, prefix, message):
            raise MoqtUsageError(f"namespace prefix {prefix!r} is not subscribed")

    # --- Internals: output -----------------------------------------------------------

    def _send(self, message: m.Message) -> None:
        self._require_open()
        self._control_out += m.encode_message(message)

    def _write(self, key: int, data: bytes, *, open_: bool, end: bool) -> None:
        commands = self._commands
        if commands:
            last = commands[-1]
            if isinstance(last, StreamWrite) and last.key == key and not last.end:
                commands[-1] = StreamWrite(key, last.data + data, last.open, end)
                return
        commands.append(StreamWrite(key, data, open_, end))

    def _take_events(self) -> list[Event]:
        events = self._events
        self._events = []
        return events

    def _fail(self, exc: MoqtProtocolError) -> NoReturn:
        self.state = SessionState.CLOSED
        self.termination = Termination(exc.error_code, exc.reason, by_peer=True)
        self._events.clear()
        raise exc

    # --- Internals: request IDs ------------------------------------------------------

    def _require_established(self) -> None:
        if self.state == SessionState.SETUP:
            raise MoqtUsageError("the session is not set up yet")
        self._require_open()

    def _require_open(self) -> None:
        if self.state == SessionState.CLOSED:
            raise MoqtUsageError("the session is closed")

    def _new_request_id(self) -> int:
        self._require_established()
        if self._goaway_received:
            raise MoqtUsageError("the peer sent GOAWAY; open a new session for new requests")
        request_id = self._next_request_id
        if request_id >= self._peer_max_request_id:
            limit = self._peer_max_request_id
            if self._send_requests_blocked and self._blocked_sent_at != limit:
                self._blocked_sent_at = limit
                self._send(m.RequestsBlocked(limit))
            raise RequestsBlockedError(f"the peer allows Request IDs below {limit} only")
        self._next_request_id += 2
        return request_id

    def _start_request(
        self, kind: str, requests: dict[int, T], value: T, message: m.Message
    ) -> int:
        """Send ``message``, a new request of ``kind`` built with :attr:`next_request_id`,
        and file ``value`` under its Request ID in ``requests``; returns that ID."""
        request_id = self._new_request_id()
        self._my_requests[request_id] = kind
        requests[request_id] = value
        self._send(message)
        return request_id

    def _end_request(self, requests: dict[int, T], value: T, message: m.Message) -> bool:
        """End the request filed with ``value`` in ``requests`` by sending ``message``;
        False if there is none."""
        for request_id, filed in list(requests.items()):
            if filed == value:
                del requests[request_id]
                self._my_requests.pop(request_id, None)
                self._send(message)
                return True
        return False

    def _accept_peer_request_id(self, request_id: int) -> None:
        """Check a new request's ID: right parity, never used, below the granted limit.

        IDs are accepted out of order (a gap is filled later): moq-rs allocates IDs
        in concurrent tasks, so two requests can reach the control stream swapped.
        """
        low = self._peer_next_request_id
        if request_id % 2 != low % 2:
            raise MoqtProtocolError(
                f"Request ID {request_id} has the wrong parity",
                SessionErrorCode.INVALID_REQUEST_ID,
            )
        if request_id < low or request_id in self._peer_ids_ahead:
            raise MoqtProtocolError(
                f"Request ID {request_id} was already used",
                SessionErrorCode.INVALID_REQUEST_ID,
            )
        if request_id >= self._granted_limit:
            raise MoqtProtocolError(
                f"Request ID {request_id} is not below {self._granted_limit}",
                SessionErrorCode.TOO_MANY_REQUESTS,
            )
        ahead = self._peer_ids_ahead
        ahead.add(request_id)
        while low in ahead:
            ahead.remove(low)
            low += 2
        self._peer_next_request_id = low
        window = self._request_window
        if window and (self._granted_limit - self._peer_next_request_id) // 2 < window // 2 + 1:
            self._grant_window()

    def _grant_window(self) -> None:
        new_limit = self._peer_next_request_id + 2 * self._request_window
        if new_limit > self._granted_limit:
            self._granted_limit = new_limit
            self._send(m.MaxRequestId(new_limit))

    def _is_past_peer_request(self, request_id: int) -> bool:
        return request_id % 2 == self._peer_next_request_id % 2 and (
            request_id < self._peer_next_request_id or request_id in self._peer_ids_ahead
        )

    def _my_request(self, request_id: int, kind: str, message: m.Message) -> bool:
        """True if ``request_id`` is a live request of ours of ``kind``; False if it ended."""
        live = self._my_requests.get(request_id)
        if live == kind:
            return True
        if (
            live is None
            and request_id % 2 == self._next_request_id % 2
            and request_id < self._next_request_id
        ):
            return False
        raise MoqtProtocolError(
            f"{message.NAME} for Request ID {request_id}, which is not a {kind}"
        )

    # --- Internals: control messages -------------------------------------------------

    def _check_setup_parameters(self, params: Parameters) -> dict[int, int | bytes]:
        seen: dict[int, int | bytes] = {}
        for kind, value in params:
            if kind in _SINGLE_SETUP_PARAMETERS and kind in seen:
                raise MoqtProtocolError(f"setup parameter {kind:#x} is repeated")
            seen.setdefault(kind, value)
        return seen

    def _on_client_setup(self, message: m.ClientSetup) -> None:
        if self.role != Role.SERVER or self.state != SessionState.SETUP:
            raise MoqtProtocolError("unexpected CLIENT_SETUP")
        params = self._check_setup_parameters(message.parameters)
        path = params.get(m.SetupParameter.PATH)
        authority = params.get(m.SetupParameter.AUTHORITY)
        if path is not None and self._webtransport:
            raise MoqtProtocolError("PATH over WebTransport", SessionErrorCode.INVALID_PATH)
        if authority is not None and self._webtransport:
            raise MoqtProtocolError(
                "AUTHORITY over WebTransport", SessionErrorCode.INVALID_AUTHORITY
            )
        version = next((v for v in message.versions if v in self._versions), None)
        if version is None:
            offered = ", ".join(f"{v:#x}" for v in message.versions)
            raise MoqtProtocolError(
                f"no common version (offered: {offered})",
                SessionErrorCode.VERSION_NEGOTIATION_FAILED,
            )
        reply: list[KeyValuePair] = [(m.SetupParameter.MAX_REQUEST_ID, self._granted_limit)]
        if self._implementation:
            reply.append((m.SetupParameter.MOQT_IMPLEMENTATION, self._implementation.encode()))
        reply.extend(self._extra_setup_parameters)
        self.state = SessionState.ESTABLISHED
        self._send(m.ServerSetup(version, tuple(reply)))
        self._setup_done(version, params, message.parameters)

    def _on_server_setup(self, message: m.ServerSetup) -> None:
        if self.role != Role.CLIENT or self.state != SessionState.SETUP:
            raise MoqtProtocolError("unexpected SERVER_SETUP")
        params = self._check_setup_parameters(message.parameters)
        if message.version not in self._versions:
            raise MoqtProtocolError(
                f"server chose version {message.version:#x}, which was not offered",
                SessionErrorCode.VERSION_NEGOTIATION_FAILED,
            )
        if m.SetupParameter.PATH in params:
            raise MoqtProtocolError("PATH from a server", SessionErrorCode.INVALID_PATH)
        if m.SetupParameter.AUTHORITY in params:
            raise MoqtProtocolError("AUTHORITY from a server", SessionErrorCode.INVALID_AUTHORITY)
        self.state = SessionState.ESTABLISHED
        self._setup_done(message.version, params, message.parameters)

    def _setup_done(self, version: int, params: dict[int, int | bytes], raw: Parameters) -> None:
        self.version = version
        max_request_id = params.get(m.SetupParameter.MAX_REQUEST_ID, 0)
        assert isinstance(max_request_id, int)
        self._peer_max_request_id = max_request_id
        implementation = params.get(m.SetupParameter.MOQT_IMPLEMENTATION)
        path = params.get(m.SetupParameter.PATH)
        authority = params.get(m.SetupParameter.AUTHORITY)
        self._events.append(
            SetupCompleted(
                version=version,
                path=path if isinstance(path, bytes) else None,
                authority=authority if isinstance(authority, bytes) else None,
                peer_implementation=(
                    implementation.decode("utf-8", errors="replace")
                    if isinstance(implementation, bytes)
                    else None
                ),
                peer_max_request_id=max_request_id,
                parameters=raw,
            )
        )

    def _require_peer_established(self, message: m.Message) -> None:
        if self.state != SessionState.ESTABLISHED:
            raise MoqtProtocolError(f"{message.NAME} before SETUP completed")

    def _on_goaway(self, message: m.Goaway) -> None:
        self._require_peer_established(message)
        if self._goaway_received:
            raise MoqtProtocolError("a second GOAWAY")
        if self.role == Role.SERVER and message.new_session_uri:
            raise MoqtProtocolError("a client sent GOAWAY with a new session URI")
        self._goaway_received = True
        self._events.append(GoawayReceived(message.new_session_uri))

    def _on_max_request_id(self, message: m.MaxRequestId) -> None:
        self._require_peer_established(message)
        if message.request_id <= self._peer_max_request_id:
            raise MoqtProtocolError("MAX_REQUEST_ID did not increase")
        self._peer_max_request_id = message.request_id
        self._events.append(RequestLimitRaised(message.request_id))

    def _on_requests_blocked(self, message: m.RequestsBlocked) -> None:
        self._require_peer_established(message)
        self._events.append(RequestsBlockedReceived(message.maximum_request_id))
        if self._request_window:
            self._grant_window()

    # We publish: requests from the peer.

    def _on_subscribe(self, message: m.Subscribe) -> None:
        self._require_peer_established(message)
        self._accept_peer_request_id(message.request_id)
        for other in self._peer_subscriptions.values():
            if other.namespace == message.namespace and other.track_name == message.track_name:
                raise MoqtProtocolError("a second subscription to the same track")
        self._peer_subscriptions[message.request_id] = _IncomingSubscription(
            message.request_id,
            message.namespace,
            message.track_name,
            bool(message.forward),
            message.start,
            message.end_group,
        )
        self._events.append(
            SubscribeReceived(
                request_id=message.request_id,
                namespace=message.namespace,
                track_name=message.track_name,
                subscriber_priority=message.subscriber_priority,
                group_order=message.group_order,
                forward=bool(message.forward),
                filter_type=message.filter_type,
                start=message.start,
                end_group=message.end_group,
                parameters=message.parameters,
            )
        )

    def _on_subscribe_update(self, message: m.SubscribeUpdate) -> None:
        self._require_peer_established(message)
        self._accept_peer_request_id(message.request_id)
        sub = self._peer_subscriptions.get(message.subscription_request_id)
        if sub is None:
            if self._is_past_peer_request(message.subscription_request_id):
                return
            raise MoqtProtocolError("SUBSCRIBE_UPDATE for an unknown subscription")
        if sub.start is not None and message.start < sub.start:
            raise MoqtProtocolError("SUBSCRIBE_UPDATE moved the start backwards")
        new_end = message.end_group - 1 if message.end_group else None
        if sub.end_group is not None and (new_end is None or new_end > sub.end_group):
            raise MoqtProtocolError("SUBSCRIBE_UPDATE widened the end group")
        sub.start = message.start
        sub.end_group = new_end
        sub.forward = bool(message.forward)
        self._events.append(
            SubscribeUpdateReceived(
                request_id=sub.request_id,
                start=message.start,
                end_group=message.end_group,
                subscriber_priority=message.subscriber_priority,
                forward=bool(message.forward),
                parameters=message.parameters,
            )
        )

    def _on_unsubscribe(self, message: m.Unsubscribe) -> None:
        self._require_peer_established(message)
        sub = self._peer_subscriptions.get(message.request_id)
        if sub is None:
            if self._is_past_peer_request(message.request_id):
                return
            raise MoqtProtocolError("UNSUBSCRIBE for an unknown subscription")
        for key in list(sub.open_streams):
            self._drop_out_stream(key, sub.request_id, StreamResetCode.CANCELLED)
        self._end_peer_subscription(sub)
        self._events.append(UnsubscribeReceived(message.request_id))

    def _on_unsupported_request(self, message: m.Publish | m.Fetch | m.TrackStatus) -> None:
        self._require_peer_established(message)
        self._accept_peer_request_id(message.request_id)
        reply: m.Message
        if isinstance(message, m.Publish):
            # Objects the peer starts sending before our answer must be dropped.
            self._retire_alias(message.track_alias)
            reply = m.PublishError(message.request_id, PublishErrorCode.NOT_SUPPORTED, "")
        elif isinstance(message, m.Fetch):
            reply = m.FetchError(message.request_id, FetchErrorCode.NOT_SUPPORTED, "")
        else:
            reply = m.TrackStatusError(message.request_id, SubscribeErrorCode.NOT_SUPPORTED, "")
        self._send(reply)
        self._events.append(RequestRefused(message.request_id, message))

    def _on_unexpected_response(self, message: m.Message) -> None:
        raise MoqtProtocolError(f"{message.NAME} answers a request this endpoint never sends")

    def _on_fetch_cancel(self, message: m.FetchCancel) -> None:
        self._require_peer_established(message)
        if not self._is_past_peer_request(message.request_id):
            raise MoqtProtocolError("FETCH_CANCEL for an unknown fetch")

    def _on_subscribe_namespace(self, message: m.SubscribeNamespace) -> None:
        self._require_peer_established(message)
        self._accept_peer_request_id(message.request_id)
        prefix = message.namespace_prefix
        active = list(self._peer_namespace_subscriptions)
        active += self._peer_namespace_subscriptions_pending.values()
        if any(is_prefix(prefix, other) or is_prefix(other, prefix) for other in active):
            self._send(
                m.SubscribeNamespaceError(
                    message.request_id,
                    SubscribeNamespaceErrorCode.NAMESPACE_PREFIX_OVERLAP,
                    "overlaps an existing namespace subscription",
                )
            )
            return
        self._peer_namespace_subscriptions_pending[message.request_id] = prefix
        self._events.append(
            SubscribeNamespaceReceived(message.request_id, prefix, message.parameters)
        )

    def _on_unsubscribe_namespace(self, message: m.UnsubscribeNamespace) -> None:
        self._require_peer_established(message)
        if self._peer_namespace_subscriptions.pop(message.namespace_prefix, None) is not None:
            self._events.append(UnsubscribeNamespaceReceived(message.namespace_prefix))

    def _on_namespace_ok(self, message: m.PublishNamespaceOk | m.SubscribeNamespaceOk) -> None:
        namespace = self._namespace_answered(message, accepted=True)
        if namespace is None:
            return
        if isinstance(message, m.PublishNamespaceOk):
            self._events.append(PublishNamespaceAccepted(message.request_id, namespace))
        else:
            self._events.append(SubscribeNamespaceAccepted(message.request_id, namespace))

    def _on_namespace_error(
        self, message: m.PublishNamespaceError | m.SubscribeNamespaceError
    ) -> None:
        namespace = self._namespace_answered(message, accepted=False)
        if namespace is None:
            return
        rejected = (
            PublishNamespaceRejected
            if isinstance(message, m.PublishNamespaceError)
            else SubscribeNamespaceRejected
        )
        self._events.append(
            rejected(message.request_id, namespace, message.error_code, message.reason)
        )

    def _namespace_answered(
        self,
        message: m.PublishNamespaceOk
        | m.PublishNamespaceError
        | m.SubscribeNamespaceOk
        | m.SubscribeNamespaceError,
        *,
        accepted: bool,
    ) -> Namespace | None:
        """The namespace (PUBLISH_NAMESPACE) or prefix (SUBSCRIBE_NAMESPACE) of our
        request that ``message`` answers; None if that request has ended (the answer
        is then ignored). An accepted request stays on record, a refused one goes."""
        self._require_peer_established(message)
        if isinstance(message, m.PublishNamespaceOk | m.PublishNamespaceError):
            kind, requests = "publish_namespace", self._published_namespaces
        else:
            kind, requests = "subscribe_namespace", self._namespace_subscriptions
        request_id = message.request_id
        if not self._my_request(request_id, kind, message):
            return None
        if accepted:
            self._my_requests[request_id] = f"{kind}_accepted"
            return requests[request_id]
        del self._my_requests[request_id]
        return requests.pop(request_id)

    def _on_publish_namespace_cancel(self, message: m.PublishNamespaceCancel) -> None:
        self._require_peer_established(message)
        for request_id, namespace in list(self._published_namespaces.items()):
            if namespace == message.namespace:
                del self._published_namespaces[request_id]
                self._my_requests.pop(request_id, None)
                self._events.append(
                    PublishNamespaceCancelled(namespace, message.error_code, message.reason)
                )
                return

    # We subscribe: answers and notices from the peer.

    def _answered_subscription(
        self, message: m.SubscribeOk | m.SubscribeError | m.PublishDone
    ) -> _OutgoingSubscription | None:
        """Our subscription that ``message`` answers (or ends); None if it has ended
        (``message`` is then ignored)."""
        self._require_peer_established(message)
        if not self._my_request(message.request_id, "subscribe", message):
            return None
        return self._subscriptions[message.request_id]

    def _on_subscribe_ok(self, message: m.SubscribeOk) -> None:
        sub = self._answered_subscription(message)
        if sub is None:
            return
        if sub.track_alias is not None:
            raise MoqtProtocolError("a second SUBSCRIBE_OK for one SUBSCRIBE")
        alias = message.track_alias
        if alias in self._alias_to_subscription:
            raise MoqtProtocolError(
                f"track alias {alias} is already in use", SessionErrorCode.DUPLICATE_TRACK_ALIAS
            )
        sub.track_alias = alias
        self._alias_to_subscription[alias] = sub.request_id
        self._retired_aliases.pop(alias, None)
        self._events.append(
            SubscribeAccepted(
                request_id=message.request_id,
                track_alias=alias,
                expires=message.expires,
                group_order=message.group_order,
                largest=message.largest,
                parameters=message.parameters,
            )
        )
        self._resolve_pending_streams()

    def _on_subscribe_error(self, message: m.SubscribeError) -> None:
        sub = self._answered_subscription(message)
        if sub is None:
            return
        if sub.track_alias is not None:
            raise MoqtProtocolError("SUBSCRIBE_ERROR after SUBSCRIBE_OK")
        del self._subscriptions[message.request_id]
        del self._my_requests[message.request_id]
        self._events.append(
            SubscribeRejected(message.request_id, message.error_code, message.reason)
        )
        self._resolve_pending_streams()

    def _on_publish_done(self, message: m.PublishDone) -> None:
        sub = self._answered_subscription(message)
        if sub is None:
            return
        del self._my_requests[message.request_id]
        self._events.append(
            PublishDoneReceived(
                message.request_id, message.status_code, message.stream_count, message.reason
            )
        )
        if sub.track_alias is None:
            del self._subscriptions[message.request_id]
            self._resolve_pending_streams()
            return
        # PUBLISH_DONE tends to overtake the last streams: keep the alias until the
        # publisher's stream count is reached (or the application calls unsubscribe).
        sub.done = True
        sub.expected_streams = message.stream_count
        self._maybe_forget(sub)

    def _on_publish_namespace(self, message: m.PublishNamespace) -> None:
        self._require_peer_established(message)
        self._accept_peer_request_id(message.request_id)
        self._peer_namespaces_pending[message.request_id] = message.namespace
        self._events.append(
            PublishNamespaceReceived(message.request_id, message.namespace, message.parameters)
        )

    def _on_publish_namespace_done(self, message: m.PublishNamespaceDone) -> None:
        self._require_peer_established(message)
        namespace = message.namespace
        known = namespace in self._peer_namespaces
        self._peer_namespaces.discard(namespace)
        for request_id, pending in list(self._peer_namespaces_pending.items()):
            if pending == namespace:
                del self._peer_namespaces_pending[request_id]
                known = True
        if known:
            self._events.append(PublishNamespaceDoneReceived(namespace))

    # --- Internals: subscriptions we serve -------------------------------------------

    def _pending_peer_subscription(self, request_id: int) -> _IncomingSubscription:
        self._require_established()
        sub = self._peer_subscriptions.get(request_id)
        if sub is None or sub.track_alias is not None:
            raise MoqtUsageError(f"no SUBSCRIBE {request_id} awaits an answer")
        return sub

    def _sending_subscription(self, request_id: int) -> _IncomingSubscription | None:
        self._require_open()
        sub = self._peer_subscriptions.get(request_id)
        if sub is None:
            if self._is_past_peer_request(request_id):
                return None
            raise MoqtUsageError(f"request {request_id} is not a subscription from the peer")
        if sub.track_alias is None:
            raise MoqtUsageError(f"subscription {request_id} has not been accepted")
        return sub if sub.forward else None

    def _end_peer_subscription(self, sub: _IncomingSubscription) -> None:
        del self._peer_subscriptions[sub.request_id]
        if sub.track_alias is not None:
            self._aliases_in_use.discard(sub.track_alias)

    def _new_stream(self, sub: _IncomingSubscription, header: SubgroupHeader) -> int:
        key = self._next_stream_key
        self._next_stream_key += 1
        self._out_streams[key] = _OutgoingStream(sub.request_id, header)
        sub.open_streams.add(key)
        sub.stream_count += 1
        return key

    def _out_stream(self, key: int) -> _OutgoingStream | None:
        self._require_open()
        stream = self._out_streams.get(key)
        if stream is None:
            if 0 <= key < self._next_stream_key:
                return None  # finished, or reset after UNSUBSCRIBE / STOP_SENDING
            raise MoqtUsageError(f"stream {key} is not an open subgroup stream")
        return stream

    def _forget_out_stream(self, key: int, request_id: int) -> None:
        del self._out_streams[key]
        sub = self._peer_subscriptions.get(request_id)
        if sub is not None:
            sub.open_streams.discard(key)

    def _drop_out_stream(self, key: int, request_id: int, error_code: int) -> None:
        self._forget_out_stream(key, request_id)
        self._commands.append(StreamReset(key, int(error_code)))

    def _encode_stream_object(
        self,
        stream: _OutgoingStream,
        object_id: int,
        payload: bytes,
        status: int,
        extensions: Parameters,
        timestamp_us: int | None,
    ) -> bytes:
        last = stream.last_object_id
        if last is not None and object_id <= last:
            raise MoqtUsageError(f"object {object_id} does not follow object {last}")
        if timestamp_us is not None:
            extensions = timestamp_extension(timestamp_us) + tuple(extensions)
        delta = object_id if last is None else object_id - last - 1
        data = encode_subgroup_object(
            delta,
            payload,
            status=status,
            extensions=tuple(extensions),
            has_extensions=stream.header.has_extensions,
        )
        stream.last_object_id = object_id
        return data

    # --- Internals: subscriptions we hold --------------------------------------------

    def _retire_alias(self, alias: int) -> None:
        retired = self._retired_aliases
        retired[alias] = None
        retired.move_to_end(alias)
        while len(retired) > _RETIRED_ALIAS_MEMORY:
            retired.popitem(last=False)

    def _retire_subscription(self, sub: _OutgoingSubscription) -> None:
        if sub.track_alias is not None:
            self._alias_to_subscription.pop(sub.track_alias, None)
            self._retire_alias(sub.track_alias)
        for key, stream in list(self._in_streams.items()):
            if stream.request_id == sub.request_id and not stream.discarded:
                self._discard_in_stream(key, stream)
        self._resolve_pending_streams()

    def _maybe_forget(self, sub: _OutgoingSubscription) -> None:
        expected = sub.expected_streams
        # 0 is what some publishers send regardless (moq-rs), 2^62-1 means "unknown".
        if sub.done and 0 < expected < MAX_VARINT and sub.finished_streams >= expected:
            del self._subscriptions[sub.request_id]
            self._retire_subscription(sub)

    def _stream_finished(self, stream: _IncomingStream) -> None:
        if stream.request_id is None or stream.discarded:
            return
        sub = self._subscriptions.get(stream.request_id)
        if sub is not None:
            self._count_finished_stream(sub)

    def _count_finished_stream(self, sub: _OutgoingSubscription) -> None:
        sub.finished_streams += 1
        self._maybe_forget(sub)

    def _has_pending_subscriptions(self) -> bool:
        return any(s.track_alias is None for s in self._subscriptions.values())

    def _discard_in_stream(self, key: Hashable, stream: _IncomingStream) -> None:
        stream.discarded = True
        stream.pending = None
        if stream.ended:
            self._in_streams.pop(key, None)
        else:
            self._commands.append(StopSending(key, StreamResetCode.CANCELLED))

    def _on_stream_item(self, key: Hashable, stream: _IncomingStream, item: DataStreamItem) -> None:
        if isinstance(item, SubgroupObject):
            if stream.first_object_id is None:
                stream.first_object_id = item.object_id
            if stream.request_id is not None:
                sub = self._subscriptions.get(stream.request_id)
                if sub is None:  # pragma: no cover - retiring a subscription discards its streams
                    self._discard_in_stream(key, stream)
                else:
                    self._deliver(sub, stream, item)
            elif stream.pending is not None:
                stream.pending.append(item)
                stream.pending_bytes += len(item.payload) + 16
                if self._pending_bytes() > self._max_pending_stream_bytes:
                    self._discard_in_stream(key, stream)
            return
        if isinstance(item, FetchHeader):
            # This endpoint never sends FETCH, so no fetch stream can be for us.
            self._discard_in_stream(key, stream)
            return
        if isinstance(item, SubgroupHeader):
            stream.header = item
            request_id = self._alias_to_subscription.get(item.track_alias)
            if request_id is not None:
                stream.request_id = request_id
            elif item.track_alias in self._retired_aliases or not self._has_pending_subscriptions():
                self._discard_in_stream(key, stream)
            else:
                stream.pending = []
            return
        raise MoqtProtocolError("object on a fetch stream")  # pragma: no cover

    def _pending_bytes(self) -> int:
        return sum(s.pending_bytes for s in self._in_streams.values() if s.pending is not None)

    def _resolve_pending_streams(self) -> None:
        """Deliver streams held for an unknown alias, or drop them once hope is gone."""
        still_pending = self._has_pending_subscriptions()
        for key, stream in list(self._in_streams.items()):
            if stream.pending is None or stream.header is None:
                continue
            request_id = self._alias_to_subscription.get(stream.header.track_alias)
            if request_id is not None:
                held, stream.pending, stream.pending_bytes = stream.pending, None, 0
                stream.request_id = request_id
                sub = self._subscriptions[request_id]
                for item in held:
                    self._deliver(sub, stream, item)
                if stream.ended:
                    self._in_streams.pop(key, None)
                    self._stream_finished(stream)
            elif not still_pending:
                self._discard_in_stream(key, stream)

    def _deliver(
        self, sub: _OutgoingSubscription, stream: _IncomingStream, item: SubgroupObject
    ) -> None:
        header = stream.header
        assert header is not None and stream.first_object_id is not None
        self._events.append(
            ObjectReceived(
                request_id=sub.request_id,
                namespace=sub.namespace,
                track_name=sub.track_name,
                group_id=header.group_id,
                subgroup_id=subgroup_id_of(header, stream.first_object_id),
                object_id=item.object_id,
                publisher_priority=header.publisher_priority,
                payload=item.payload,
                status=item.status,
                extensions=item.extensions,
                timestamp_us=timestamp_from_extensions(item.extensions),
                end_of_group=item.status == ObjectStatus.END_OF_GROUP,
                via_datagram=False,
            )
        )
