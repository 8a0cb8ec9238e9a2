"""Events returned by :class:`clutchcall.moqt.Session`, and the commands it emits.

Events are what happened (past tense). Commands (:class:`StreamWrite`,
:class:`StreamReset`, :class:`StopSending`) are what the transport must do to
data streams; they are drained with :meth:`Session.stream_commands_to_send`.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

from .messages import Message
from .wire import Location, Namespace, Parameters


class Event:
    """Base class of session events."""

    __slots__ = ()


# --- Session -------------------------------------------------------------------------


@dataclass(frozen=True)
class SetupCompleted(Event):
    """SETUP finished; requests may now be sent (within the peer's request limit)."""

    version: int
    #: PATH the client sent (server side), or None.
    path: bytes | None
    #: AUTHORITY the client sent (server side), or None.
    authority: bytes | None
    #: The peer's MOQT_IMPLEMENTATION string, if it sent one.
    peer_implementation: str | None
    #: Exclusive bound on our Request IDs granted by the peer.
    peer_max_request_id: int
    #: Every setup parameter the peer sent, including ones this package ignores.
    parameters: Parameters


@dataclass(frozen=True)
class GoawayReceived(Event):
    """The peer intends to close; migrate to ``new_session_uri`` (empty: same URI)."""

    new_session_uri: bytes


@dataclass(frozen=True)
class RequestLimitRaised(Event):
    """The peer sent MAX_REQUEST_ID; requests refused as blocked may be retried."""

    max_request_id: int


@dataclass(frozen=True)
class RequestsBlockedReceived(Event):
    """The peer wants to send requests but reached the limit we granted."""

    maximum_request_id: int


@dataclass(frozen=True)
class SessionClosed(Event):
    """The connection under the session ended (reported by the transport)."""

    error_code: int
    reason: str


@dataclass(frozen=True)
class RequestRefused(Event):
    """The peer sent a request this package does not serve (PUBLISH, FETCH,
    TRACK_STATUS); it was answered with the matching error and NOT_SUPPORTED."""

    request_id: int
    message: Message


# --- We publish ----------------------------------------------------------------------


@dataclass(frozen=True)
class SubscribeReceived(Event):
    """The peer subscribes to one of our tracks; answer with
    :meth:`Session.accept_subscribe` or :meth:`Session.reject_subscribe`."""

    request_id: int
    namespace: Namespace
    track_name: bytes
    subscriber_priority: int
    group_order: int
    forward: bool
    filter_type: int
    start: Location | None
    end_group: int | None
    parameters: Parameters


@dataclass(frozen=True)
class SubscribeUpdateReceived(Event):
    request_id: int
    start: Location
    #: End group plus one; 0 means open-ended.
    end_group: int
    subscriber_priority: int
    forward: bool
    parameters: Parameters


@dataclass(frozen=True)
class UnsubscribeReceived(Event):
    """The subscriber left; its open streams were reset, sending more is refused."""

    request_id: int


@dataclass(frozen=True)
class PublishNamespaceAccepted(Event):
    request_id: int
    namespace: Namespace


@dataclass(frozen=True)
class PublishNamespaceRejected(Event):
    request_id: int
    namespace: Namespace
    error_code: int
    reason: str


@dataclass(frozen=True)
class PublishNamespaceCancelled(Event):
    """The peer revoked its acceptance of a namespace we published."""

    namespace: Namespace
    error_code: int
    reason: str


@dataclass(frozen=True)
class SubscribeNamespaceReceived(Event):
    """Answer with :meth:`Session.accept_subscribe_namespace` or reject it."""

    request_id: int
    namespace_prefix: Namespace
    parameters: Parameters


@dataclass(frozen=True)
class UnsubscribeNamespaceReceived(Event):
    namespace_prefix: Namespace


# --- We subscribe --------------------------------------------------------------------


@dataclass(frozen=True)
class SubscribeAccepted(Event):
    request_id: int
    track_alias: int
    expires: int
    group_order: int
    largest: Location | None
    parameters: Parameters


@dataclass(frozen=True)
class SubscribeRejected(Event):
    request_id: int
    error_code: int
    reason: str


@dataclass(frozen=True)
class PublishDoneReceived(Event):
    """The publisher ended the subscription; late streams may still arrive."""

    request_id: int
    status_code: int
    stream_count: int
    reason: str


@dataclass(frozen=True)
class ObjectReceived(Event):
    """One object of a subscribed track."""

    request_id: int
    namespace: Namespace
    track_name: bytes
    group_id: int
    #: None for objects that arrived in datagrams.
    subgroup_id: int | None
    object_id: int
    publisher_priority: int
    payload: bytes
    status: int
    extensions: Parameters
    #: LOC timestamp extension, microseconds, if the object carries one.
    timestamp_us: int | None
    #: Known to end its group (END_OF_GROUP status, or an end-of-group datagram).
    end_of_group: bool
    via_datagram: bool


@dataclass(frozen=True)
class PublishNamespaceReceived(Event):
    """Answer with :meth:`Session.accept_publish_namespace` or reject it."""

    request_id: int
    namespace: Namespace
    parameters: Parameters


@dataclass(frozen=True)
class PublishNamespaceDoneReceived(Event):
    namespace: Namespace


@dataclass(frozen=True)
class SubscribeNamespaceAccepted(Event):
    request_id: int
    namespace_prefix: Namespace


@dataclass(frozen=True)
class SubscribeNamespaceRejected(Event):
    request_id: int
    namespace_prefix: Namespace
    error_code: int
    reason: str


# --- Commands for the transport ------------------------------------------------------


@dataclass(frozen=True)
class StreamWrite:
    """Write ``data`` to outgoing uni stream ``key``; ``open``: open it first."""

    key: int
    data: bytes
    open: bool
    end: bool


@dataclass(frozen=True)
class StreamReset:
    """Reset outgoing uni stream ``key`` (RESET_STREAM) with ``error_code``."""

    key: int
    error_code: int


@dataclass(frozen=True)
class StopSending:
    """Ask the peer to stop incoming stream ``key`` (STOP_SENDING); drop its data."""

    key: Hashable
    error_code: int


StreamCommand = StreamWrite | StreamReset | StopSending
