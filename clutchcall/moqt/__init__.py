"""Sans-IO MoQT (Media over QUIC Transport, draft-ietf-moq-transport-14).

Feed a :class:`Session` the bytes of the control stream, of incoming uni streams and
of datagrams; it returns events and queues what to send. It never touches a socket,
a thread or a clock. See :mod:`clutchcall.moqt.voice` for the call audio tracks.

``clutchcall.moqt.MoqtClient`` is the exception that proves the rule: the
networked voice client, defined in :mod:`clutchcall.bridge` and only imported
from there when first used.
"""

from typing import TYPE_CHECKING, Any

from .data import (
    LEGACY_TIMESTAMP_EXTENSION,
    TIMESTAMP_EXTENSION,
    DataStreamParser,
    FetchHeader,
    FetchObject,
    ObjectDatagram,
    ObjectStatus,
    SubgroupHeader,
    SubgroupIdMode,
    SubgroupObject,
    encode_subgroup_object,
)
from .errors import (
    FetchErrorCode,
    MoqtError,
    MoqtProtocolError,
    MoqtUsageError,
    PublishDoneCode,
    PublishErrorCode,
    PublishNamespaceErrorCode,
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
from .messages import FilterType, GroupOrder, MessageParameter, SetupParameter
from .session import Role, Session, SessionState, Termination, authorization_token
from .version import ALPN, DRAFT_14, SUPPORTED_VERSIONS
from .voice import (
    DOWNLINK,
    UPLINK,
    AudioFrame,
    AudioPublisher,
    AudioSubscriber,
    answer_unclaimed,
    voice_namespace,
)
from .wire import Location, Namespace, Parameters

if TYPE_CHECKING:
    from ..bridge._client import MoqtClient


def __getattr__(name: str) -> Any:
    # MoqtClient does I/O, so it lives in clutchcall.bridge; it is loaded only when
    # asked for, which keeps importing this package free of sockets and event loops.
    if name == "MoqtClient":
        from ..bridge._client import MoqtClient

        return MoqtClient
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ALPN",
    "DOWNLINK",
    "DRAFT_14",
    "LEGACY_TIMESTAMP_EXTENSION",
    "SUPPORTED_VERSIONS",
    "TIMESTAMP_EXTENSION",
    "UPLINK",
    "AudioFrame",
    "AudioPublisher",
    "AudioSubscriber",
    "DataStreamParser",
    "Event",
    "FetchErrorCode",
    "FetchHeader",
    "FetchObject",
    "FilterType",
    "GoawayReceived",
    "GroupOrder",
    "Location",
    "MessageParameter",
    "MoqtClient",
    "MoqtError",
    "MoqtProtocolError",
    "MoqtUsageError",
    "Namespace",
    "ObjectDatagram",
    "ObjectReceived",
    "ObjectStatus",
    "Parameters",
    "PublishDoneCode",
    "PublishDoneReceived",
    "PublishErrorCode",
    "PublishNamespaceAccepted",
    "PublishNamespaceCancelled",
    "PublishNamespaceDoneReceived",
    "PublishNamespaceErrorCode",
    "PublishNamespaceReceived",
    "PublishNamespaceRejected",
    "RequestLimitRaised",
    "RequestRefused",
    "RequestsBlockedError",
    "RequestsBlockedReceived",
    "Role",
    "Session",
    "SessionClosed",
    "SessionErrorCode",
    "SessionState",
    "SetupCompleted",
    "SetupParameter",
    "StopSending",
    "StreamCommand",
    "StreamReset",
    "StreamResetCode",
    "StreamWrite",
    "SubgroupHeader",
    "SubgroupIdMode",
    "SubgroupObject",
    "SubscribeAccepted",
    "SubscribeErrorCode",
    "SubscribeNamespaceAccepted",
    "SubscribeNamespaceErrorCode",
    "SubscribeNamespaceReceived",
    "SubscribeNamespaceRejected",
    "SubscribeReceived",
    "SubscribeRejected",
    "SubscribeUpdateReceived",
    "Termination",
    "UnsubscribeNamespaceReceived",
    "UnsubscribeReceived",
    "answer_unclaimed",
    "authorization_token",
    "encode_subgroup_object",
    "voice_namespace",
]
