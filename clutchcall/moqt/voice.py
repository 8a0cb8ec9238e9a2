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
SUBSCRIBE_OK(alias); then every incoming stream or datagram with that alias is one
frame (an :class:`~clutchcall.moqt.ObjectReceived` with a payload); UNSUBSCRIBE ends
it, PUBLISH_DONE reports the publisher's end.

The vocabulary shared by every layer above (the networked client, the audio
bridges, the dev engine's relay and its bridge tokens, the audio codecs) lives here
too: :class:`VoiceTrack`, :class:`VoiceRole` and :class:`AudioFrame`.
"""

from __future__ import annotations

import enum
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


class VoiceTrack(enum.StrEnum):
    """A call's two audio tracks (their names on the wire, UTF-8)."""

    #: The caller's audio, to the cloud.
    UPLINK = "uplink"
    #: The cloud's audio, to the caller.
    DOWNLINK = "downlink"

    @property
    def wire_name(self) -> bytes:
        """The track name in MoQT messages."""
        return self.value.encode()


#: Shorthands for the two tracks.
UPLINK = VoiceTrack.UPLINK
DOWNLINK = VoiceTrack.DOWNLINK


class VoiceRole(enum.StrEnum):
    """Which side of a call a member takes, and so which track it may publish.

    A bridge token grants one role for one call; the relay holds each session to it.
    """

    #: The cloud side (``attach``): receives uplink, publishes downlink.
    SERVER = "server"
    #: The caller side, a softphone (``attach_caller``): receives downlink, publishes uplink.
    CALLER = "caller"

    @property
    def publishes(self) -> VoiceTrack:
        return VoiceTrack.DOWNLINK if self is VoiceRole.SERVER else VoiceTrack.UPLINK

    @property
    def subscribes(self) -> VoiceTrack:
        return VoiceTrack.UPLINK if self is VoiceRole.SERVER else VoiceTrack.DOWNLINK


class SubscriberState(enum.StrEnum):
    """Where a :class:`TrackSubscriber` (an :class:`AudioSubscriber`, say) stands."""

    IDLE = "idle"
    #: SUBSCRIBE sent, no answer yet.
    PENDING = "pending"
    #: SUBSCRIBE_OK received: objects flow.
    ACTIVE = "active"
    #: SUBSCRIBE_ERROR received.
    REJECTED = "rejected"
    #: Ended: PUBLISH_DONE received, or unsubscribed.
    DONE = "done"


@dataclass(frozen=True, slots=True)
class AudioFrame:
    """One encoded audio frame and its media timestamp (microseconds).

    The one frame type of the SDK: what bridges and the networked client deliver,
    and what :class:`~clutchcall.audio.AudioSource` produces.
    """

    data: bytes
    timestamp_us: int


def voice_namespace(call_sid: str) -> Namespace:
    """The namespace of a call's audio tracks: ``("voice", call_sid)``."""
    return (VOICE, call_sid.encode("utf-8"))


def voice_track(track: VoiceTrack | str | bytes) -> VoiceTrack:
    """``track`` as a :class:`VoiceTrack` (its name as text or as wire bytes);
    ValueError if it is neither uplink nor downlink."""
    try:
        return VoiceTrack(track.decode("utf-8") if isinstance(track, bytes) else track)
    except (ValueError, UnicodeDecodeError):
        raise ValueError(f"track must be 'uplink' or 'downlink', not {track!r}") from None


class TrackPublisher:
    """Serves one track to every subscriber of a session.

    Feed it every event; :meth:`handle` returns True for the events it consumed:
    a SUBSCRIBE to the track (accepted) and an UNSUBSCRIBE of one of its subscriptions.
    """

    def __init__(self, session: Session, namespace: Namespace, track_name: bytes) -> None:
        self.session = session
        self.namespace = namespace
        self.track_name = track_name
        self.subscriptions: set[int] = set()

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


class TrackSubscriber:
    """Receives one track (after :meth:`start`, which each kind of track defines);
    :meth:`handle` picks out its objects."""

    def __init__(self, session: Session, namespace: Namespace, track_name: bytes) -> None:
        self.session = session
        self.namespace = namespace
        self.track_name = track_name
        self.request_id: int | None = None
        self.state = SubscriberState.IDLE

    def handle(self, event: Event) -> ObjectReceived | None:
        """Return ``event`` if it is one of this track's objects with a payload
        (``payload``, ``group_id`` and the LOC ``timestamp_us``, None if it carries
        none). Other events of this subscription update :attr:`state`."""
        if self.request_id is None or getattr(event, "request_id", None) != self.request_id:
            return None
        if isinstance(event, ObjectReceived):
            if event.payload:
                return event
        elif isinstance(event, SubscribeAccepted):
            self.state = SubscriberState.ACTIVE
        elif isinstance(event, SubscribeRejected):
            self.state = SubscriberState.REJECTED
        elif isinstance(event, PublishDoneReceived):
            self.state = SubscriberState.DONE
        return None

    def stop(self) -> None:
        if self.state in (SubscriberState.PENDING, SubscriberState.ACTIVE):
            assert self.request_id is not None
            self.session.unsubscribe(self.request_id)
        self.state = SubscriberState.DONE


class AudioPublisher(TrackPublisher):
    """Serves one voice track to every subscriber of a session.

    Feed it every event; :meth:`handle` returns True for the events it consumed.
    """

    def __init__(
        self,
        session: Session,
        call_sid: str,
        track: VoiceTrack | str | bytes,
        *,
        announce: bool = True,
        first_group_id: int = 0,
        publisher_priority: int = 0,
        use_datagrams: bool = False,
    ) -> None:
        super().__init__(session, voice_namespace(call_sid), voice_track(track).wire_name)
        self._announce = announce
        self._next_group_id = first_group_id
        self._priority = publisher_priority
        self._use_datagrams = use_datagrams
        self.announce_request_id: int | None = None

    def start(self) -> int | None:
        """Announce the call namespace (if asked to); returns the request ID."""
        if self._announce:
            self.announce_request_id = self.session.publish_namespace(self.namespace)
        return self.announce_request_id

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


class AudioSubscriber(TrackSubscriber):
    """Receives one voice track; :meth:`handle` picks out its frames."""

    def __init__(self, session: Session, call_sid: str, track: VoiceTrack | str | bytes) -> None:
        super().__init__(session, voice_namespace(call_sid), voice_track(track).wire_name)

    def start(self, parameters: Parameters = ()) -> int:
        """SUBSCRIBE (``parameters``: e.g. an AUTHORIZATION_TOKEN); returns the request id."""
        self.request_id = self.session.subscribe(
            self.namespace, self.track_name, parameters=parameters
        )
        self.state = SubscriberState.PENDING
        return self.request_id


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
