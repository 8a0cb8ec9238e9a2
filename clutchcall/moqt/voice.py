"""The voice tracks on top of a :class:`Session`: publish_audio and subscribe_audio.

A call's audio lives in namespace ``("voice", <call sid>)`` with two tracks,
``uplink`` (caller to cloud) and ``downlink`` (cloud to caller). Each encoded frame
is one object, alone in its group (Object ID 0, Group ID counting up from
``first_group_id``), sent on its own subgroup stream (type 0x19: subgroup 0,
extensions, end of group) with the LOC timestamp extension. That is the shape
moq-rs itself sends on draft-14, and the only one it reads: subgroup 0, objects
numbered from 0 without gaps. Object datagrams (``use_datagrams=True``) are also
forwarded by the moq-rs 0.5.1 relay.

publish_audio, as messages: PUBLISH_NAMESPACE(voice/<sid>) -> PUBLISH_NAMESPACE_OK;
then for each SUBSCRIBE(voice/<sid>, <track>) -> SUBSCRIBE_OK(alias), and per frame
one uni stream ``SUBGROUP_HEADER(0x19) | object 0 | FIN``; UNSUBSCRIBE resets open
streams; at the end PUBLISH_DONE and PUBLISH_NAMESPACE_DONE.

subscribe_audio, as messages: SUBSCRIBE(voice/<sid>, <track>, LargestObject) ->
SUBSCRIBE_OK(alias); then every incoming stream or datagram with that alias yields
an :class:`AudioFrame`; UNSUBSCRIBE ends it, PUBLISH_DONE reports the publisher's end.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import PublishDoneCode, SubscribeErrorCode
from .events import (
    Event,
    ObjectReceived,
    PublishDoneReceived,
    PublishNamespaceReceived,
    SubscribeAccepted,
    SubscribeNamespaceReceived,
    SubscribeReceived,
    SubscribeRejected,
    UnsubscribeReceived,
)
from .session import Session
from .wire import Namespace, Parameters

VOICE = b"voice"
UPLINK = b"uplink"
DOWNLINK = b"downlink"
TRACKS = (UPLINK, DOWNLINK)


def voice_namespace(call_sid: str) -> Namespace:
    """The namespace of a call's audio tracks: ``("voice", call_sid)``."""
    return (VOICE, call_sid.encode("utf-8"))


def _track(track: bytes | str) -> bytes:
    name = track.encode("utf-8") if isinstance(track, str) else track
    if name not in TRACKS:
        raise ValueError(f"voice track must be uplink or downlink, not {track!r}")
    return name


@dataclass(frozen=True)
class AudioFrame:
    """One received encoded audio frame."""

    data: bytes
    timestamp_us: int | None
    group_id: int


class AudioPublisher:
    """Serves one voice track to every subscriber of a session.

    Feed it every event; :meth:`handle` returns True for the events it consumed.
    """

    def __init__(
        self,
        session: Session,
        call_sid: str,
        track: bytes | str,
        *,
        announce: bool = True,
        first_group_id: int = 0,
        publisher_priority: int = 0,
        use_datagrams: bool = False,
    ) -> None:
        self.session = session
        self.namespace = voice_namespace(call_sid)
        self.track_name = _track(track)
        self._announce = announce
        self._next_group_id = first_group_id
        self._priority = publisher_priority
        self._use_datagrams = use_datagrams
        self.subscriptions: set[int] = set()
        self.announce_request_id: int | None = None

    def start(self) -> int | None:
        """Announce the call namespace (if asked to); returns the request ID."""
        if self._announce:
            self.announce_request_id = self.session.publish_namespace(self.namespace)
        return self.announce_request_id

    def handle(self, event: Event) -> bool:
        if isinstance(event, SubscribeReceived):
            if event.namespace == self.namespace and event.track_name == self.track_name:
                self.session.accept_subscribe(event.request_id)
                self.subscriptions.add(event.request_id)
                return True
            return False
        if isinstance(event, UnsubscribeReceived) and event.request_id in self.subscriptions:
            self.subscriptions.discard(event.request_id)
            return True
        return False

    def send_frame(self, frame: bytes, timestamp_us: int) -> int:
        """Send one frame as a new group to every subscriber; returns how many got it."""
        group_id = self._next_group_id
        self._next_group_id += 1
        sent = 0
        for request_id in sorted(self.subscriptions):
            if self._use_datagrams:
                ok = self.session.send_datagram(
                    request_id,
                    group_id,
                    frame,
                    timestamp_us=timestamp_us,
                    publisher_priority=self._priority,
                    end_of_group=True,
                )
            else:
                ok = (
                    self.session.send_object(
                        request_id,
                        group_id,
                        frame,
                        timestamp_us=timestamp_us,
                        publisher_priority=self._priority,
                    )
                    is not None
                )
            sent += ok
        return sent

    def finish(self) -> None:
        """End every subscription (PUBLISH_DONE) and withdraw the namespace."""
        for request_id in sorted(self.subscriptions):
            self.session.publish_done(request_id, PublishDoneCode.TRACK_ENDED, "track ended")
        self.subscriptions.clear()
        if self.announce_request_id is not None:
            self.session.publish_namespace_done(self.namespace)
            self.announce_request_id = None


class AudioSubscriber:
    """Receives one voice track; :meth:`handle` turns its objects into frames."""

    def __init__(self, session: Session, call_sid: str, track: bytes | str) -> None:
        self.session = session
        self.namespace = voice_namespace(call_sid)
        self.track_name = _track(track)
        self.request_id: int | None = None
        #: "idle", "pending", "active", "rejected" or "done".
        self.state = "idle"

    def start(self, parameters: Parameters = ()) -> int:
        """SUBSCRIBE (``parameters``: e.g. an AUTHORIZATION_TOKEN); returns the request id."""
        self.request_id = self.session.subscribe(
            self.namespace, self.track_name, parameters=parameters
        )
        self.state = "pending"
        return self.request_id

    def handle(self, event: Event) -> AudioFrame | None:
        """Return the frame carried by ``event``, if it is one of this track's objects."""
        if getattr(event, "request_id", None) != self.request_id or self.request_id is None:
            return None
        if isinstance(event, ObjectReceived):
            if event.payload:
                return AudioFrame(event.payload, event.timestamp_us, event.group_id)
        elif isinstance(event, SubscribeAccepted):
            self.state = "active"
        elif isinstance(event, SubscribeRejected):
            self.state = "rejected"
        elif isinstance(event, PublishDoneReceived):
            self.state = "done"
        return None

    def stop(self) -> None:
        if self.state in ("pending", "active"):
            assert self.request_id is not None
            self.session.unsubscribe(self.request_id)
        self.state = "done"


def answer_unclaimed(session: Session, event: Event) -> bool:
    """Answer requests no publisher claimed, the way a voice endpoint should.

    Peers such as moq-rs send SUBSCRIBE_NAMESPACE and PUBLISH_NAMESPACE unprompted:
    both are accepted. A SUBSCRIBE for a track nobody serves is refused with
    TRACK_DOES_NOT_EXIST. Returns True if the event was answered.
    """
    if isinstance(event, PublishNamespaceReceived):
        session.accept_publish_namespace(event.request_id)
        return True
    if isinstance(event, SubscribeNamespaceReceived):
        session.accept_subscribe_namespace(event.request_id)
        return True
    if isinstance(event, SubscribeReceived):
        session.reject_subscribe(
            event.request_id, SubscribeErrorCode.TRACK_DOES_NOT_EXIST, "no such track"
        )
        return True
    return False
