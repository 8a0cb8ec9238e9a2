"""``MoqtClient``: the raw voice tracks on a relay, with reconnect.

One client holds one MoQT session at a time (raw QUIC for ``moqt://`` URLs,
WebTransport for ``https://``) and keeps it alive: when the link drops, the relay
restarts or sends GOAWAY, it redials with jittered exponential backoff, sets up
again (with a fresh token if the relay refused the old one) and replays every
PUBLISH_NAMESPACE and SUBSCRIBE. Frames written during an outage wait in a small
bounded queue; frames older than ``max_queue_age`` or beyond ``queue_frames`` are
dropped and counted in :attr:`MoqtClient.stats`.

Outages are logged (logger ``clutchcall.moqnet.client``) once per episode, not
per frame or per attempt: at WARNING when a set-up session is lost (with the
reason), when the first reconnect attempt fails, and when the session is back
(with the outage's duration, the attempts and the frames dropped meanwhile) or
the client gives up; in between, at most one INFO line every
``RECONNECT_LOG_INTERVAL`` seconds counts the attempts that failed. A GOAWAY the
relay sends, and a session that ends because its calls ended, are logged at
INFO. The records carry ``relay_url``, ``call_sids`` and, where they apply,
``outage_seconds``, ``reconnect_attempts`` and ``frames_dropped`` as attributes.

Every frame written is counted once: ``frames_out`` when the relay has
acknowledged it (its QUIC stream), or ``dropped``. A frame handed to a session
that ends before the relay acknowledged it (a relay restart, a link that died)
goes back to the front of the queue and is sent on the next session, or dropped
like any stale frame; a session the client ends itself (GOAWAY, closing) first
waits for the acknowledgements. So once nothing is :attr:`AudioPublication.queued`
or :attr:`AudioPublication.in_flight`, frames written = ``frames_out + dropped``
and ``frames_out`` = frames that reached the relay, none twice. A relay that
closes the connection without acknowledging what it received (ours acknowledge
it in the closing packet), or a path that dies between a frame's arrival and its
acknowledgement, can make such a frame arrive twice or count as dropped::

    async with MoqtClient("moqt://127.0.0.1:4443", token=token.token) as client:
        uplink = await client.publish_audio(call_sid, "uplink")
        downlink = await client.subscribe_audio(call_sid, "downlink")
        await uplink.write(opus_frame)              # timestamp: monotonic microseconds
        async for frame in downlink:
            play(frame.data, frame.timestamp_us)
"""

from __future__ import annotations

import enum
import logging
import random
import time
import urllib.parse
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field, replace
from types import TracebackType

import anyio
import anyio.abc
import anyio.lowlevel

from .. import moqt, transport
from ..errors import (
    APIConnectionError,
    APIStatusError,
    BridgeAuthError,
    BridgeClosedError,
    BridgeConnectError,
    BridgeError,
    BridgeFormatError,
    BridgeTrackError,
    ConflictError,
    InternalServerError,
    RateLimitError,
)
from ..moqt import AudioFormat, AudioFrame, Catalog, VoiceTrack, voice_track
from ..transport import ConnectionKind, Verify
from ..transport.backend import Signal, next_queued, spawn
from .link import MoqtLink, wait_any

logger = logging.getLogger(__name__)
# Backoff jitter from a private generator: the application's global `random` state is
# never drawn from (it may be seeded, or checked by property-based test tools).
_jitter = random.Random()

ESTABLISHED = moqt.SessionState.ESTABLISHED

#: Given ``fresh``, return the relay URL and the token to present (None: no token).
Credentials = Callable[[bool], Awaitable[tuple[str, str | None]]]

#: Session termination codes that mean "your credentials are not good enough".
AUTH_CLOSE_CODES = frozenset(
    {
        moqt.SessionErrorCode.UNAUTHORIZED,
        moqt.SessionErrorCode.MALFORMED_AUTH_TOKEN,
        moqt.SessionErrorCode.UNKNOWN_AUTH_TOKEN_ALIAS,
        moqt.SessionErrorCode.EXPIRED_AUTH_TOKEN,
    }
)
#: SUBSCRIBE_ERROR / PUBLISH_NAMESPACE_ERROR codes that mean "not allowed" (the two
#: code spaces give these the same values).
AUTH_REQUEST_CODES = frozenset(
    {
        moqt.SubscribeErrorCode.UNAUTHORIZED,
        moqt.SubscribeErrorCode.MALFORMED_AUTH_TOKEN,
        moqt.SubscribeErrorCode.EXPIRED_AUTH_TOKEN,
        moqt.PublishNamespaceErrorCode.UNAUTHORIZED,
        moqt.PublishNamespaceErrorCode.MALFORMED_AUTH_TOKEN,
        moqt.PublishNamespaceErrorCode.EXPIRED_AUTH_TOKEN,
    }
)
#: Data stream writes waiting in the link beyond which new frames are queued instead.
MAX_LINK_BACKLOG = 64
#: Frames of one publication handed to a session and not yet acknowledged by the
#: relay, beyond which new frames wait in the outage queue instead (where they age
#: out): 5 s of 20 ms frames, the default idle timeout, so that what is sent during
#: an outage the connection survives is retransmitted, while a path that died is
#: not fed without bound.
MAX_IN_FLIGHT = 256
#: How long closing a track waits for the relay to acknowledge its last frames
#: (those it has not acknowledged by then are counted as dropped), and how often
#: it looks.
CLOSE_LINGER = 1.0
ACK_POLL_INTERVAL = 0.005
#: The publisher priority of every audio object (that of ``moqt.AudioPublisher``).
PUBLISHER_PRIORITY = 0
#: Frames held back while waiting for an earlier group that was overtaken (a lost
#: packet is retransmitted after a round trip or two; 12 frames is 240 ms of audio).
REORDER_WINDOW = 12
#: Failed reconnect attempts of one outage are logged at most this often (seconds):
#: the first at once, then one line for those that failed meanwhile.
RECONNECT_LOG_INTERVAL = 5.0
#: Call sids named in a log line, at most (then "and N more").
LOGGED_CALLS = 3


def monotonic_us() -> int:
    """The SDK's default frame clock: monotonic microseconds."""
    return time.monotonic_ns() // 1000


@dataclass(frozen=True)
class AudioStats:
    """Counters of a client (or a bridge) since it was created."""

    frames_in: int = 0
    bytes_in: int = 0
    #: Frames the relay acknowledged (a frame is counted once it has arrived there).
    frames_out: int = 0
    bytes_out: int = 0
    #: Frames dropped: stale or overflowing in the outage queue (frames a session
    #: ended without the relay acknowledging go back to that queue), still queued
    #: when the track or the client closed, overflowing a receive buffer, or written
    #: after the call ended.
    dropped: int = 0
    #: Sessions set up again after the first one (link loss, relay restart, GOAWAY).
    reconnects: int = 0


@dataclass
class _Counters:
    frames_in: int = 0
    bytes_in: int = 0
    frames_out: int = 0
    bytes_out: int = 0
    dropped: int = 0
    reconnects: int = 0

    def snapshot(self) -> AudioStats:
        return AudioStats(
            self.frames_in,
            self.bytes_in,
            self.frames_out,
            self.bytes_out,
            self.dropped,
            self.reconnects,
        )


def _refusal(message: str, code: int, reason: str) -> BridgeError:
    if code in AUTH_REQUEST_CODES:
        return BridgeAuthError(message, code=code, reason=reason)
    return BridgeTrackError(message, code=code, reason=reason)


def _token_parameters(token: str | None) -> moqt.Parameters:
    return (moqt.authorization_token(token.encode()),) if token else ()


def _display_url(url: str) -> str:
    """``url`` fit for a log line: without its query (it may carry a token)."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<malformed relay URL>"
    netloc = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _loss_reason(conn: _Conn) -> str:
    """Why a set-up session ended, in words."""
    if conn.goaway:
        return "the relay sent GOAWAY"
    link = conn.link
    lost = link.conn.close_reason if link is not None else None
    if lost is not None:
        return str(lost)
    termination = conn.session.termination
    if termination is not None:
        who = "the relay" if termination.by_peer else "this client"
        return f"{who} closed the session (code {termination.error_code:#x}): {termination.reason}"
    return "the connection ended"


@dataclass
class _Outage:
    """One episode without a session: from the loss of a set-up session to the
    next setup (or the client's end)."""

    reason: str
    #: ``time.monotonic()`` at the loss.
    since: float
    #: The client's dropped-frames counter at the loss.
    dropped_before: int
    #: The relay asked for it (GOAWAY).
    planned: bool
    #: Dials since the loss.
    attempts: int = 0
    #: The loss was logged (at the first redial: a session ended because its calls
    #: ended is closed by its owner before that, and is no outage).
    announced: bool = False
    #: When a failed attempt was last logged (0: none yet), and the failures since.
    logged_at: float = 0.0
    unlogged_failures: int = 0


class NamespaceState(enum.Enum):
    """Where this client's PUBLISH_NAMESPACE of a call stands in one session."""

    #: Sent, not answered yet.
    PENDING = "pending"
    #: PUBLISH_NAMESPACE_OK received: the relay routes subscriptions to us.
    ACCEPTED = "accepted"


@dataclass
class _Conn:
    """What belongs to one MoQT session (one connection attempt)."""

    session: moqt.Session
    link: MoqtLink | None = None
    setup_done: bool = False
    goaway: bool = False
    #: The client is closing this session: no more frames are handed to it.
    closing: bool = False
    #: Publications that handed frames to this session; what the relay did not
    #: acknowledge is settled when it ends.
    senders: set[AudioPublication] = field(default_factory=set)
    #: Publications that stopped handing frames over because the link's backlog
    #: was full; flushed again once the link has drained it.
    held_back: set[AudioPublication] = field(default_factory=set)
    publishers: dict[tuple[moqt.Namespace, bytes], moqt.AudioPublisher | moqt.CatalogPublisher] = (
        field(default_factory=dict)
    )
    announced: dict[moqt.Namespace, NamespaceState] = field(default_factory=dict)
    subscribers: dict[
        int,
        tuple[AudioSubscription, moqt.AudioSubscriber]
        | tuple[CatalogSubscription, moqt.CatalogSubscriber],
    ] = field(default_factory=dict)

    def delivered(self, keys: tuple[int, ...]) -> bool:
        """Whether the relay acknowledged every stream of one frame (by stream key)."""
        link = self.link
        if link is None or link.stream_ids is None:
            return False
        stream_ids = link.stream_ids
        conn = link.conn
        for key in keys:
            stream_id = stream_ids.get(key)
            if stream_id is None or conn.send_pending(stream_id):
                return False
        return True


class AudioPublication:
    """One voice track this client publishes (``MoqtClient.publish_audio``)."""

    def __init__(
        self,
        client: MoqtClient,
        call_sid: str,
        track: VoiceTrack,
        use_datagrams: bool,
        token: str | None = None,
    ) -> None:
        self._client = client
        self.call_sid = call_sid
        self.track = track
        self.namespace = moqt.voice_namespace(call_sid)
        self.track_name = track.wire_name
        self.use_datagrams = use_datagrams
        #: Bridge token sent with this track's PUBLISH_NAMESPACE (None: the session's).
        #: Read each time the track is (re)started, so it may be replaced.
        self.token = token
        self._counters = _Counters()
        #: Frames waiting for a session: (queued at, frame, timestamp).
        self._queue: deque[tuple[float, bytes, int]] = deque()
        #: Frames handed to the session ``_in_flight_conn``, oldest first, until the
        #: relay acknowledges them: (stream keys, queued at, frame, timestamp).
        self._in_flight: deque[tuple[tuple[int, ...], float, bytes, int]] = deque()
        self._in_flight_conn: _Conn | None = None
        self._next_group = 0
        self._closed = False
        #: Why the relay refused this track on the current session, if it did.
        self.error: BridgeError | None = None
        #: The catalog declaring this track's format (``publish_audio(format=...)``).
        self.catalog: CatalogPublication | None = None

    @property
    def format(self) -> AudioFormat | None:
        """The format this track declares in its catalog (None: it declares none)."""
        return self.catalog.format if self.catalog is not None else None

    def set_format(self, fmt: AudioFormat) -> None:
        """Declare another format (a new catalog version); frames written from now
        on should be in it. Only for a track published with a format."""
        if self.catalog is None:
            raise BridgeError("this track was published without a format")
        self.catalog.set_format(fmt)

    @property
    def stats(self) -> AudioStats:
        """This track's frames and bytes out (acknowledged by the relay) and frames
        dropped. Every frame written is counted once, as out or dropped, once it is
        no longer :attr:`queued` or :attr:`in_flight`."""
        # Counters first: a frame retired meanwhile is then missed, never counted twice.
        snapshot = self._counters.snapshot()
        frames, size = self._acknowledged()
        if not frames:
            return snapshot
        return replace(
            snapshot, frames_out=snapshot.frames_out + frames, bytes_out=snapshot.bytes_out + size
        )

    @property
    def subscribers(self) -> int:
        """Subscriptions the relay holds on this track in the current session."""
        publisher = self._publisher()
        return len(publisher.subscriptions) if publisher is not None else 0

    @property
    def queued(self) -> int:
        """Frames waiting for the session to come back."""
        return len(self._queue)

    @property
    def in_flight(self) -> int:
        """Frames handed to the session that the relay has not acknowledged yet."""
        return len(self._in_flight) - self._acknowledged()[0]

    def _acknowledged(self) -> tuple[int, int]:
        """Frames (and bytes) in flight that the relay has acknowledged already.

        Reads only, so that stats can be taken from another thread (a sync bridge).
        """
        conn = self._in_flight_conn
        if conn is None:
            return 0, 0
        frames = size = 0
        for keys, _, data, _ in list(self._in_flight):
            if conn.delivered(keys):
                frames += 1
                size += len(data)
        return frames, size

    def _publisher(self) -> moqt.AudioPublisher | None:
        conn = self._client._conn
        if conn is None or not conn.setup_done:
            return None
        publisher = conn.publishers.get((self.namespace, self.track_name))
        return publisher if isinstance(publisher, moqt.AudioPublisher) else None

    def _accepted(self) -> bool:
        conn = self._client._conn
        return (
            self._publisher() is not None
            and conn is not None
            and conn.announced.get(self.namespace) is NamespaceState.ACCEPTED
        )

    # -- what the client tells this track ----------------------------------------------

    def _start(self, session: moqt.Session) -> moqt.AudioPublisher:
        """A new session: serve this track on it, continuing the group numbers."""
        self.error = None
        return moqt.AudioPublisher(
            session,
            self.call_sid,
            self.track,
            announce=False,
            first_group_id=self._next_group,
            use_datagrams=self.use_datagrams,
        )

    def _refused(self, error: BridgeError) -> None:
        """The relay refused this track's namespace on the current session."""
        self.error = error

    def _client_ended(self) -> None:
        """The client stopped for good: what still waits is dropped."""
        self._drop(len(self._queue))
        self._queue.clear()

    async def write(self, frame: bytes, timestamp_us: int | None = None) -> None:
        """Send one encoded frame (``timestamp_us`` None: monotonic microseconds).

        Never blocks on the network: while the session is down (or nobody
        subscribed yet) the frame waits in the bounded outage queue.
        """
        await anyio.lowlevel.checkpoint()
        self.write_nowait(frame, timestamp_us)

    def write_nowait(self, frame: bytes, timestamp_us: int | None = None) -> None:
        """:meth:`write` without the checkpoint (usable from synchronous callbacks)."""
        if self._closed:
            raise BridgeClosedError(f"the {self.track} publication was closed")
        if not isinstance(frame, bytes | bytearray | memoryview):
            raise TypeError(f"a frame must be bytes, not {type(frame).__name__}")
        timestamp = monotonic_us() if timestamp_us is None else int(timestamp_us)
        if timestamp < 0:
            raise ValueError("timestamp_us must not be negative")
        client = self._client
        if client._ended:
            client._counters.dropped += 1
            self._counters.dropped += 1
            return
        self._queue.append((time.monotonic(), bytes(frame), timestamp))
        self._flush()

    def _drop(self, frames: int) -> None:
        self._client._counters.dropped += frames
        self._counters.dropped += frames

    def _drop_stale(self) -> None:
        """Drop the queued frames older than ``max_queue_age`` (the oldest are first)."""
        oldest = time.monotonic() - self._client._max_queue_age
        queue = self._queue
        stale = 0
        while queue and queue[0][0] < oldest:
            queue.popleft()
            stale += 1
        if stale:
            self._drop(stale)

    def _count_out(self, data: bytes) -> None:
        counters = self._client._counters
        mine = self._counters
        counters.frames_out += 1
        counters.bytes_out += len(data)
        mine.frames_out += 1
        mine.bytes_out += len(data)

    def _flush(self) -> None:
        client = self._client
        queue = self._queue
        overflow = len(queue) - client._queue_frames
        if overflow > 0:
            for _ in range(overflow):
                queue.popleft()
            self._drop(overflow)
        publisher = self._publisher()
        conn = client._conn
        if (
            publisher is None
            or conn is None
            or conn.link is None
            or not publisher.subscriptions
            or conn.goaway
            or conn.closing
        ):
            return
        link = conn.link
        in_flight = self._in_flight
        if in_flight:
            if self._in_flight_conn is not conn:
                return  # the previous session is not settled yet
            self._retire(conn)
        oldest = time.monotonic() - client._max_queue_age
        session = conn.session
        sent = False
        while queue and link.backlog < MAX_LINK_BACKLOG and len(in_flight) < MAX_IN_FLIGHT:
            queued_at, data, timestamp = queue.popleft()
            if queued_at < oldest:
                self._drop(1)
                continue
            try:
                keys = self._send(session, link, publisher, data, timestamp)
            except moqt.MoqtUsageError:  # the session closed under us: keep it for later
                keys = None
            if keys is None:
                queue.appendleft((queued_at, data, timestamp))
                break
            self._next_group += 1
            sent = True
            if keys:
                in_flight.append((keys, queued_at, data, timestamp))
                self._in_flight_conn = conn
                conn.senders.add(self)
            else:  # datagrams: nothing is acknowledged, handing them over is all
                self._count_out(data)
        if queue and link.backlog >= MAX_LINK_BACKLOG:
            conn.held_back.add(self)
        if sent:
            link.kick()

    def _send(
        self,
        session: moqt.Session,
        link: MoqtLink,
        publisher: moqt.AudioPublisher,
        data: bytes,
        timestamp: int,
    ) -> tuple[int, ...] | None:
        """Hand one frame to the session, as the next group, for every subscription.

        Returns the keys of the streams that carry it (empty for datagrams), or None
        if no subscription forwards objects (nothing was sent).
        """
        group = self._next_group
        if self.use_datagrams:
            forwarded = False
            for request_id in publisher.subscriptions:
                forwarded |= session.send_datagram(
                    request_id,
                    group,
                    data,
                    timestamp_us=timestamp,
                    publisher_priority=PUBLISHER_PRIORITY,
                    end_of_group=True,
                )
            return () if forwarded else None
        keys = []
        for request_id in publisher.subscriptions:
            key = session.send_object(
                request_id,
                group,
                data,
                timestamp_us=timestamp,
                publisher_priority=PUBLISHER_PRIORITY,
            )
            if key is not None:
                keys.append(key)
        if not keys:
            return None
        stream_ids = link.stream_ids
        if stream_ids is not None:
            for key in keys:
                stream_ids[key] = None  # the link fills in its QUIC stream ID
        return tuple(keys)

    def _retire(self, conn: _Conn) -> None:
        """Count the oldest frames in flight that the relay acknowledged as out."""
        in_flight = self._in_flight
        link = conn.link
        assert link is not None and link.stream_ids is not None
        stream_ids = link.stream_ids
        while in_flight and conn.delivered(in_flight[0][0]):
            keys, _, data, _ = in_flight.popleft()
            for key in keys:
                del stream_ids[key]
            self._count_out(data)
        if not in_flight:
            self._in_flight_conn = None
            conn.senders.discard(self)

    def _session_ended(self, conn: _Conn, requeue: bool) -> None:
        """Settle the frames handed to ``conn``, which has ended: those the relay
        acknowledged are out, the others go back to the front of the queue (in
        order, with their age) or, with ``requeue`` False, are dropped."""
        if self._in_flight_conn is not conn:
            return
        stream_ids = conn.link.stream_ids if conn.link is not None else None
        lost: list[tuple[float, bytes, int]] = []
        for keys, queued_at, data, timestamp in self._in_flight:
            if conn.delivered(keys):
                self._count_out(data)
            else:
                lost.append((queued_at, data, timestamp))
            if stream_ids is not None:
                for key in keys:
                    stream_ids.pop(key, None)
        self._in_flight.clear()
        self._in_flight_conn = None
        conn.senders.discard(self)
        if not lost:
            return
        if requeue:
            self._queue.extendleft(reversed(lost))
        else:
            self._drop(len(lost))

    async def wait_subscribed(self) -> None:
        """Wait until the relay subscribes to this track (or the client ends)."""
        client = self._client
        while not self.subscribers and not client._ended and not self._closed:
            await client._changed.wait()

    async def aclose(self) -> None:
        """Stop publishing: PUBLISH_DONE to subscribers, withdraw the namespace if unused."""
        await anyio.lowlevel.checkpoint()
        if self._closed:
            return
        self._closed = True
        self._client._unpublish(self)
        self._drop(len(self._queue))
        self._queue.clear()
        if self.catalog is not None:
            await self.catalog.aclose()
        await self._linger()

    async def _linger(self) -> None:
        """Closing: wait (at most ``CLOSE_LINGER``) for the relay to acknowledge the
        frames in flight; those it has not by then are counted as dropped."""
        with anyio.move_on_after(CLOSE_LINGER):
            while (conn := self._in_flight_conn) is not None:
                self._retire(conn)
                if self._in_flight_conn is not None:
                    await anyio.sleep(ACK_POLL_INTERVAL)
        conn = self._in_flight_conn
        if conn is not None:
            self._session_ended(conn, requeue=False)


class _Subscription:
    """How a subscription (audio or catalog) ends and closes."""

    _client: MoqtClient
    namespace: moqt.Namespace
    track_name: bytes
    track_ended: bool
    error: BridgeError | None
    on_end: Callable[[], None] | None
    _arrived: Signal
    _closed: bool

    def _refused(self, error: BridgeError) -> None:
        """SUBSCRIBE_ERROR on the current session."""
        self.error = error

    def _track_finished(self) -> None:
        """PUBLISH_DONE (TRACK_ENDED): the call ended, nothing will come again."""
        self.track_ended = True
        self._ending()

    def _client_ended(self) -> None:
        self._ending()

    def _ending(self) -> None:
        self._arrived.notify()
        if self.on_end is not None:
            self.on_end()

    @property
    def ended(self) -> bool:
        """Nothing will arrive any more (closed, the track ended, or the client ended)."""
        return self._closed or self.track_ended or self._client._ended

    def _is_ended(self) -> bool:
        return self.ended

    async def aclose(self) -> None:
        """UNSUBSCRIBE; iteration ends after what was already received."""
        await anyio.lowlevel.checkpoint()
        if self._closed:
            return
        self._closed = True
        client = self._client
        client._subscriptions.pop((self.namespace, self.track_name), None)
        conn = client._conn
        if conn is not None:
            for request_id, (sub, subscriber) in list(conn.subscribers.items()):
                if sub is self:
                    del conn.subscribers[request_id]
                    if conn.setup_done and conn.session.state is moqt.SessionState.ESTABLISHED:
                        subscriber.stop()
                        if conn.link is not None:
                            conn.link.kick()
        self._ending()


class AudioSubscription(_Subscription):
    """One voice track this client receives; iterate it for :class:`AudioFrame` s."""

    def __init__(
        self,
        client: MoqtClient,
        call_sid: str,
        track: VoiceTrack,
        buffer_frames: int,
        token: str | None = None,
    ) -> None:
        self._client = client
        self.call_sid = call_sid
        self.track = track
        self.namespace = moqt.voice_namespace(call_sid)
        self.track_name = track.wire_name
        #: Bridge token sent with this track's SUBSCRIBE (None: the session's); read
        #: each time the subscription is (re)started, so it may be replaced.
        self.token = token
        #: The relay ended the track for good (PUBLISH_DONE TRACK_ENDED: the call ended).
        self.track_ended = False
        self._counters = _Counters()
        self._frames: deque[AudioFrame] = deque()
        self._buffer_frames = buffer_frames
        self._arrived = Signal()
        self._closed = False
        self.answered = False
        #: Why the relay refused this subscription, if it did.
        self.error: BridgeError | None = None
        #: Called with each frame instead of buffering it (used by the audio bridge).
        self.on_frame: Callable[[AudioFrame], None] | None = None
        #: Called (in the client's event loop) when the subscription may have ended:
        #: the track ended, the client ended or the subscription was closed. It may be
        #: called more than once; :attr:`ended` tells.
        self.on_end: Callable[[], None] | None = None
        #: Frames that arrived after a later group had already been delivered.
        self.late = 0
        self._expected: int | None = None
        self._held: dict[int, AudioFrame] = {}

    # -- what the client tells this track ----------------------------------------------

    def _start(self, session: moqt.Session) -> tuple[int, moqt.AudioSubscriber]:
        """A new session: SUBSCRIBE on it. Group IDs start afresh there (what is held
        is delivered first). Returns the request ID and the subscriber."""
        self.error = None
        for group_id in sorted(self._held):
            self._deliver(self._held[group_id])
        self._held.clear()
        self._expected = None
        subscriber = moqt.AudioSubscriber(session, self.call_sid, self.track)
        return subscriber.start(_token_parameters(self.token)), subscriber

    def _accepted(self, largest: moqt.Location | None) -> None:
        """SUBSCRIBE_OK: frames from the group after ``largest`` on are in order."""
        self.answered = True
        if largest is not None and self._expected is None:
            self._expected = largest.group + 1

    def _object(self, obj: moqt.ObjectReceived) -> None:
        """One frame of this track arrived (stamped now if it carries no timestamp)."""
        stamp = obj.timestamp_us if obj.timestamp_us is not None else monotonic_us()
        self._receive(obj.group_id, AudioFrame(obj.payload, stamp))

    def _receive(self, group_id: int, frame: AudioFrame) -> None:
        """Put frames back in group order (each travels on its own QUIC stream, and
        streams overtake each other); a gap longer than ``REORDER_WINDOW`` frames is
        skipped. A frame older than one already delivered is still delivered."""
        expected = self._expected
        if expected is None or group_id < expected:
            if expected is not None:
                self.late += 1
            else:
                self._expected = group_id + 1
            self._deliver(frame)
            return
        held = self._held
        held[group_id] = frame
        while held:
            if expected not in held:
                if len(held) <= REORDER_WINDOW:
                    break
                expected = min(held)
            self._deliver(held.pop(expected))
            expected += 1
        self._expected = expected

    def _deliver(self, frame: AudioFrame) -> None:
        counters = self._client._counters
        counters.frames_in += 1
        counters.bytes_in += len(frame.data)
        mine = self._counters
        mine.frames_in += 1
        mine.bytes_in += len(frame.data)
        if self.on_frame is not None:
            self.on_frame(frame)
            return
        if len(self._frames) >= self._buffer_frames:
            self._frames.popleft()
            counters.dropped += 1
            mine.dropped += 1
        self._frames.append(frame)
        self._arrived.notify()

    @property
    def stats(self) -> AudioStats:
        """This track's frames and bytes in and frames dropped."""
        return self._counters.snapshot()

    def __aiter__(self) -> AudioSubscription:
        return self

    async def __anext__(self) -> AudioFrame:
        return await next_queued(self._frames, self._is_ended, self._arrived)

    async def receive(self) -> AudioFrame:
        """The next frame; raises ``anyio.EndOfStream`` once the subscription has ended."""
        try:
            return await self.__anext__()
        except StopAsyncIteration:
            raise anyio.EndOfStream from None


class CatalogPublication:
    """The MSF catalog of one voice track this client publishes: the track
    ``catalog`` of namespace ``voice/<sid>/<track>`` (see :mod:`clutchcall.moqt.catalog`).

    Each subscriber gets the current catalog as soon as it subscribes; a new
    version (:meth:`set_format`) goes to every subscriber as a new group.
    """

    def __init__(
        self,
        client: MoqtClient,
        call_sid: str,
        track: VoiceTrack,
        fmt: AudioFormat,
        token: str | None = None,
    ) -> None:
        self._client = client
        self.call_sid = call_sid
        self.track = track
        self.namespace = moqt.catalog_namespace(call_sid, track)
        self.track_name = moqt.CATALOG_TRACK
        self.token = token
        self.format = fmt
        self._payload = moqt.encode_catalog(moqt.side_catalog(call_sid, track, fmt))
        #: The group of the current version; a new session or version takes the next.
        self._group = 0
        #: Subscriptions (of the current session) that have the current version.
        self._sent: set[int] = set()
        self._closed = False
        self.error: BridgeError | None = None

    def _start(self, session: moqt.Session) -> moqt.CatalogPublisher:
        self.error = None
        self._group += 1
        self._sent.clear()
        return moqt.CatalogPublisher(session, self.namespace)

    def _refused(self, error: BridgeError) -> None:
        self.error = error
        logger.info("%s", error)

    def _client_ended(self) -> None:
        pass

    def _accepted(self) -> bool:
        conn = self._client._conn
        return conn is not None and conn.announced.get(self.namespace) is NamespaceState.ACCEPTED

    def _answered(self) -> bool:
        return self._accepted() or self.error is not None

    def _flush(self) -> None:
        conn = self._client._conn
        if conn is None or not conn.setup_done or conn.link is None or conn.closing:
            return
        publisher = conn.publishers.get((self.namespace, self.track_name))
        if not isinstance(publisher, moqt.CatalogPublisher):
            return
        waiting = publisher.subscriptions - self._sent
        if not waiting:
            return
        try:
            self._sent.update(publisher.send(self._payload, self._group, sorted(waiting)))
        except moqt.MoqtUsageError:  # the session closed under us; the next one sends it
            return
        conn.link.kick()

    def set_format(self, fmt: AudioFormat) -> None:
        """Publish a new catalog version declaring ``fmt``."""
        if fmt == self.format:
            return
        self.format = fmt
        self._payload = moqt.encode_catalog(moqt.side_catalog(self.call_sid, self.track, fmt))
        self._group += 1
        self._sent.clear()
        self._flush()

    async def aclose(self) -> None:
        await anyio.lowlevel.checkpoint()
        if self._closed:
            return
        self._closed = True
        self._client._unpublish(self)


class CatalogSubscription(_Subscription):
    """A catalog this client receives: a call's merged catalog (``voice/<sid>``)
    or one side's (``voice/<sid>/<track>``). :attr:`latest` is the newest valid
    version; iterating yields each version as it arrives, and raises
    :class:`~clutchcall.BridgeFormatError` for a malformed one (iteration may
    go on after it)."""

    def __init__(
        self,
        client: MoqtClient,
        call_sid: str,
        track: VoiceTrack | None,
        token: str | None = None,
    ) -> None:
        self._client = client
        self.call_sid = call_sid
        #: The side whose catalog this is (None: the call's merged catalog).
        self.side = track
        self.track = f"{track}/catalog" if track is not None else "catalog"
        self.namespace = moqt.catalog_namespace(call_sid, track)
        self.track_name = moqt.CATALOG_TRACK
        self.token = token
        self.track_ended = False
        self.answered = False
        self.error: BridgeError | None = None
        #: The newest valid catalog received (None: none yet).
        self.latest: Catalog | None = None
        #: Catalog objects that were malformed (each raised from the iterator once).
        self.malformed = 0
        self._pending: deque[Catalog | BridgeFormatError] = deque(maxlen=4)
        self._arrived = Signal()
        self._closed = False
        self.on_end: Callable[[], None] | None = None

    def _start(self, session: moqt.Session) -> tuple[int, moqt.CatalogSubscriber]:
        self.error = None
        subscriber = moqt.CatalogSubscriber(session, self.namespace)
        return subscriber.start(_token_parameters(self.token)), subscriber

    def _accepted(self, largest: moqt.Location | None) -> None:
        self.answered = True

    def _object(self, obj: moqt.ObjectReceived) -> None:
        try:
            catalog = moqt.decode_catalog(obj.payload)
        except moqt.CatalogError as exc:
            self.malformed += 1
            self._pending.append(
                BridgeFormatError(f"malformed catalog for {self.call_sid} ({self.track}): {exc}")
            )
        else:
            self.latest = catalog
            self._pending.append(catalog)
        self._arrived.notify()

    def __aiter__(self) -> CatalogSubscription:
        return self

    async def __anext__(self) -> Catalog:
        item = await next_queued(self._pending, self._is_ended, self._arrived)
        if isinstance(item, BridgeFormatError):
            raise item
        return item


class MoqtClient:
    """A MoQT client for a call's voice tracks, with automatic reconnect.

    ``url``: ``moqt://host:port`` (raw QUIC) or ``https://host:port/path``
    (WebTransport). ``token``: the bridge token shown to the relay in the
    AUTHORIZATION_TOKEN setup parameter (``voice.calls.create_bridge_token``).
    ``credentials`` replaces both with a coroutine function called before each
    dial (``fresh=True`` when the relay refused the previous token). ``verify`` /
    ``cert_sha256``: as for :func:`clutchcall.transport.connect`.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        token: str | None = None,
        credentials: Credentials | None = None,
        verify: Verify = True,
        cert_sha256: str | Iterable[str] | None = None,
        server_name: str | None = None,
        reconnect: bool = True,
        connect_timeout: float = 10.0,
        idle_timeout: float = 5.0,
        queue_frames: int = 25,
        max_queue_age: float = 0.5,
        receive_buffer_frames: int = 500,
        backoff: tuple[float, float] = (0.05, 2.0),
        implementation: str = "clutchcall",
    ) -> None:
        if credentials is None:
            if url is None:
                raise ValueError("pass url= (and token=) or credentials=")
            fixed = (url, token)

            async def static(fresh: bool) -> tuple[str, str | None]:
                return fixed

            credentials = static
        elif url is not None or token is not None:
            raise ValueError("pass either url=/token= or credentials=, not both")
        self._credentials = credentials
        self._verify = verify
        self._cert_sha256 = cert_sha256
        self._server_name = server_name
        self._reconnect = reconnect
        self._connect_timeout = connect_timeout
        self._idle_timeout = idle_timeout
        self._queue_frames = queue_frames
        self._max_queue_age = max_queue_age
        self._receive_buffer_frames = receive_buffer_frames
        self._backoff = backoff
        self._implementation = implementation
        self._counters = _Counters()
        self._publications: dict[
            tuple[moqt.Namespace, bytes], AudioPublication | CatalogPublication
        ] = {}
        self._subscriptions: dict[
            tuple[moqt.Namespace, bytes], AudioSubscription | CatalogSubscription
        ] = {}
        self._conn: _Conn | None = None
        self._started = False
        self._closing = False
        self._ended = False
        self._ready_once = False
        self._goaway_url: str | None = None
        self._first_error: BaseException | None = None
        #: The relay URL of the current (or last) dial, without its query.
        self._url = ""
        self._outage: _Outage | None = None
        self._failure: BaseException | None = None
        self._changed_signal: Signal | None = None
        self._wake: anyio.Event | None = None
        self._done: anyio.Event | None = None
        self._exit_stack: AsyncExitStack | None = None
        #: Called (in the loop) whenever the session is set up; ``True`` on reconnects.
        self.on_setup: Callable[[bool], None] | None = None

    # -- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> MoqtClient:
        """Connect; the client's task runs in a task group of its own, which
        ``__aexit__`` closes (so no task outlives the ``async with``)."""
        stack = AsyncExitStack()
        task_group = await stack.enter_async_context(anyio.create_task_group())
        try:
            await self.connect(task_group=task_group)
        except BaseException:
            await stack.aclose()  # the client has ended: this joins its task
            raise
        self._exit_stack = stack
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack, self._exit_stack = self._exit_stack, None
        try:
            await self.aclose()
        finally:
            if stack is not None:
                await stack.aclose()

    async def connect(self, *, task_group: anyio.abc.TaskGroup | None = None) -> None:
        """Dial and set up the first session; raise if that fails.

        The client's work runs in one task, started in ``task_group`` (it ends when
        the client closes; cancelling the group stops it at once), or, without one,
        as a background task of the event loop that :meth:`aclose` stops.

        Typed failures: :class:`BridgeAuthError` (the relay refused the token),
        :class:`BridgeConnectError` (unreachable, TLS, setup timeout), or what the
        ``credentials`` function raised (e.g. the control plane's ``NotFoundError``).
        """
        if self._started:
            raise BridgeError("the client is already connected")
        self._started = True
        self._changed_signal = Signal()
        self._wake = anyio.Event()
        self._done = anyio.Event()
        if task_group is not None:
            task_group.start_soon(self._run, name="clutchcall-moqt-client")
        else:
            spawn(self._run, "clutchcall-moqt-client")
        try:
            while not self._ready_once and not self._ended:
                await self._changed.wait()
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self.aclose()
            raise
        if self._first_error is not None:
            error = self._first_error
            self._first_error = None
            raise error

    async def aclose(self) -> None:
        """Finish the tracks (PUBLISH_DONE, UNSUBSCRIBE), close the session, stop tasks."""
        if not self._started or self._done is None:
            await anyio.lowlevel.checkpoint()
            self._ended = True
            return
        self._closing = True
        self._kick_runner()
        with anyio.CancelScope(shield=True):
            await self._done.wait()

    def request_close(self) -> None:
        """Ask the client to close; returns at once (call from the client's loop)."""
        self._closing = True
        self._kick_runner()

    @property
    def stats(self) -> AudioStats:
        """Counters of all tracks (frames out: acknowledged by the relay)."""
        snapshot = self._counters.snapshot()
        conn = self._conn
        if conn is None or not conn.senders:
            return snapshot
        frames = size = 0
        for publication in list(conn.senders):
            acknowledged, acknowledged_bytes = publication._acknowledged()
            frames += acknowledged
            size += acknowledged_bytes
        return replace(
            snapshot, frames_out=snapshot.frames_out + frames, bytes_out=snapshot.bytes_out + size
        )

    @property
    def connected(self) -> bool:
        """A session is set up right now."""
        return self._conn is not None and self._conn.setup_done

    @property
    def ended(self) -> bool:
        """The client stopped for good (closed, or the call/credentials are gone)."""
        return self._ended

    @property
    def failure(self) -> BaseException | None:
        """Why the client stopped on its own after its first session (what it could
        not get past while reconnecting: a refusal, the control plane's answer...);
        None while it runs or when it was closed."""
        return self._failure

    @property
    def _changed(self) -> Signal:
        """Notified on every state change (setup, answers, subscribers, the end)."""
        assert self._changed_signal is not None, "the client is not connected"
        return self._changed_signal

    def _kick_runner(self) -> None:
        if self._wake is not None:
            self._wake.set()
        if self._changed_signal is not None:
            self._changed_signal.notify()

    # -- tracks ------------------------------------------------------------------------

    async def publish_audio(
        self,
        call_sid: str,
        track: str,
        *,
        use_datagrams: bool = False,
        token: str | None = None,
        format: AudioFormat | None = None,
    ) -> AudioPublication:
        """Announce ``voice/<call_sid>`` and serve ``track`` to whoever subscribes.

        ``token``: a bridge token for this call, sent with the announcement, so
        that one client can carry several calls (the setup token covers one).
        ``format``: declare the track's audio format in an MSF catalog
        (``voice/<call_sid>/<track>/catalog``, see :mod:`clutchcall.moqt.catalog`),
        so that subscribers (and the platform's media gateway) know how to decode
        it. Returns once the relay accepted the namespace; raises
        :class:`BridgeAuthError` if it refused it. A relay that refuses the
        catalog's namespace only leaves the format undeclared (logged, and in
        ``publication.catalog.error``).
        """
        self._require_running()
        name = voice_track(track)
        if format is not None and not isinstance(format, AudioFormat):
            raise TypeError(f"format must be a clutchcall.moqt.AudioFormat, not {format!r}")
        key = (moqt.voice_namespace(call_sid), name.wire_name)
        if key in self._publications:
            raise BridgeError(f"{name} of {call_sid} is already published by this client")
        publication = AudioPublication(self, call_sid, name, use_datagrams, token)
        self._publications[key] = publication
        catalog = None
        if format is not None:
            catalog = CatalogPublication(self, call_sid, name, format, token)
            publication.catalog = catalog
            self._publications[(catalog.namespace, catalog.track_name)] = catalog
        conn = self._conn
        if conn is not None and conn.setup_done and conn.session.state is ESTABLISHED:
            self._start_publication(conn, publication)
            if catalog is not None:
                self._start_publication(conn, catalog)
        try:
            await self._wait_answer(publication._accepted, publication)
            if catalog is not None:
                await self._wait_answer(catalog._answered, catalog, raise_refusal=False)
        except BaseException:
            await publication.aclose()
            raise
        return publication

    async def subscribe_catalog(
        self, call_sid: str, track: str | None = None, *, token: str | None = None
    ) -> CatalogSubscription:
        """SUBSCRIBE to a catalog: ``track`` None for the call's merged catalog
        (``voice/<call_sid>/catalog``, served by the platform's relay), or
        ``"uplink"`` / ``"downlink"`` for the catalog that side publishes
        (``voice/<call_sid>/<track>/catalog``, through any relay). Returns once the
        relay accepted; :attr:`CatalogSubscription.latest` and iteration give the
        catalogs (:class:`~clutchcall.moqt.Catalog`) as they arrive."""
        self._require_running()
        side = voice_track(track) if track is not None else None
        subscription = CatalogSubscription(self, call_sid, side, token)
        key = (subscription.namespace, subscription.track_name)
        if key in self._subscriptions:
            raise BridgeError(f"{subscription.track} of {call_sid} is already subscribed")
        await self._add_subscription(subscription)
        return subscription

    async def read_catalog(
        self,
        call_sid: str,
        track: str | None = None,
        *,
        token: str | None = None,
        within: float = 5.0,
    ) -> Catalog:
        """The current catalog (as :meth:`subscribe_catalog`), then unsubscribe.

        Raises :class:`~clutchcall.BridgeFormatError` if the publisher sent a
        malformed catalog, ``TimeoutError`` if none came ``within`` seconds."""
        subscription = await self.subscribe_catalog(call_sid, track, token=token)
        try:
            with anyio.fail_after(within):
                async for catalog in subscription:
                    return catalog
            raise BridgeClosedError(f"the catalog of {call_sid} ended before it arrived")
        finally:
            await subscription.aclose()

    async def subscribe_audio(
        self, call_sid: str, track: str, *, token: str | None = None
    ) -> AudioSubscription:
        """SUBSCRIBE to ``voice/<call_sid>/<track>``; returns once the relay accepted.

        ``token``: a bridge token for this call, sent with the SUBSCRIBE.
        """
        self._require_running()
        name = voice_track(track)
        key = (moqt.voice_namespace(call_sid), name.wire_name)
        if key in self._subscriptions:
            raise BridgeError(f"{name} of {call_sid} is already subscribed by this client")
        subscription = AudioSubscription(self, call_sid, name, self._receive_buffer_frames, token)
        await self._add_subscription(subscription)
        return subscription

    async def _add_subscription(
        self, subscription: AudioSubscription | CatalogSubscription
    ) -> None:
        """Keep ``subscription``, SUBSCRIBE on the current session and wait for the
        relay's answer (closing the subscription again if that fails)."""
        self._subscriptions[(subscription.namespace, subscription.track_name)] = subscription
        conn = self._conn
        if conn is not None and conn.setup_done and conn.session.state is ESTABLISHED:
            self._start_subscription(conn, subscription)
        try:
            await self._wait_answer(lambda: subscription.answered, subscription)
        except BaseException:
            await subscription.aclose()
            raise

    def _require_running(self) -> None:
        if not self._started:
            raise BridgeError("connect the client first (async with MoqtClient(...))")
        if self._closing or self._ended:
            raise BridgeClosedError("the client is closed")

    async def _wait_answer(
        self,
        ready: Callable[[], bool],
        track: AudioPublication | AudioSubscription | CatalogPublication | CatalogSubscription,
        *,
        raise_refusal: bool = True,
    ) -> None:
        assert self._changed is not None
        with anyio.fail_after(self._connect_timeout):
            while not ready():
                if track.error is not None:
                    if not raise_refusal:
                        return
                    raise track.error
                if self._ended:
                    raise BridgeClosedError("the client ended before the relay answered")
                await self._changed.wait()
        if track.error is not None and raise_refusal:
            raise track.error

    # -- per-session track plumbing ----------------------------------------------------

    def _start_publication(
        self, conn: _Conn, publication: AudioPublication | CatalogPublication
    ) -> None:
        session = conn.session
        publisher = publication._start(session)
        namespace = publication.namespace
        if namespace not in conn.announced:
            session.publish_namespace(namespace, _token_parameters(publication.token))
            conn.announced[namespace] = NamespaceState.PENDING
        conn.publishers[(namespace, publication.track_name)] = publisher
        if conn.link is not None:
            conn.link.kick()

    def _start_subscription(
        self, conn: _Conn, subscription: AudioSubscription | CatalogSubscription
    ) -> None:
        if subscription.track_ended:
            return
        if isinstance(subscription, CatalogSubscription):
            catalog_id, catalog_subscriber = subscription._start(conn.session)
            conn.subscribers[catalog_id] = (subscription, catalog_subscriber)
        else:
            request_id, subscriber = subscription._start(conn.session)
            conn.subscribers[request_id] = (subscription, subscriber)
        if conn.link is not None:
            conn.link.kick()

    def _unpublish(self, publication: AudioPublication | CatalogPublication) -> None:
        """A publication closed: forget it, and end it on the session if there is one."""
        self._publications.pop((publication.namespace, publication.track_name), None)
        conn = self._conn
        if conn is not None and conn.setup_done:
            self._withdraw(conn, publication)

    def _withdraw(self, conn: _Conn, publication: AudioPublication | CatalogPublication) -> None:
        publisher = conn.publishers.pop((publication.namespace, publication.track_name), None)
        if publisher is None or conn.session.state is not moqt.SessionState.ESTABLISHED:
            return
        for request_id in sorted(publisher.subscriptions):
            conn.session.publish_done(request_id, moqt.PublishDoneCode.TRACK_ENDED, "track ended")
        publisher.subscriptions.clear()
        namespace = publication.namespace
        still_used = any(ns == namespace for ns, _ in conn.publishers)
        if not still_used and conn.announced.pop(namespace, None) is NamespaceState.ACCEPTED:
            conn.session.publish_namespace_done(namespace)
        if conn.link is not None:
            conn.link.kick()

    def _publication_in(
        self, conn: _Conn, namespace: moqt.Namespace
    ) -> list[
        tuple[AudioPublication | CatalogPublication, moqt.AudioPublisher | moqt.CatalogPublisher]
    ]:
        found = []
        for (ns, name), publisher in conn.publishers.items():
            publication = self._publications.get((ns, name))
            if ns == namespace and publication is not None:
                found.append((publication, publisher))
        return found

    def _on_events(self, conn: _Conn, events: list[moqt.Event]) -> None:
        session = conn.session
        for event in events:
            if type(event) is moqt.ObjectReceived:  # the frames: most events, first
                entry = conn.subscribers.get(event.request_id)
                if entry is not None:
                    obj = entry[1].handle(event)
                    if obj is not None:
                        entry[0]._object(obj)
                continue
            if isinstance(event, moqt.SetupCompleted):
                conn.setup_done = True
                for publication in list(self._publications.values()):
                    self._start_publication(conn, publication)
                for subscription in list(self._subscriptions.values()):
                    self._start_subscription(conn, subscription)
                reconnect = self._ready_once
                if reconnect:
                    self._counters.reconnects += 1
                    self._recovered()
                self._ready_once = True
                if self.on_setup is not None:
                    self.on_setup(reconnect)
            elif isinstance(event, moqt.SubscribeReceived):
                publisher = conn.publishers.get((event.namespace, event.track_name))
                if publisher is not None and publisher.handle(event):
                    served = self._publications.get((event.namespace, event.track_name))
                    if served is not None:
                        served._flush()
                else:
                    session.reject_subscribe(
                        event.request_id,
                        moqt.SubscribeErrorCode.TRACK_DOES_NOT_EXIST,
                        "not published here",
                    )
            elif isinstance(event, moqt.UnsubscribeReceived):
                for publisher in conn.publishers.values():
                    publisher.handle(event)
            elif isinstance(event, moqt.PublishNamespaceAccepted):
                conn.announced[event.namespace] = NamespaceState.ACCEPTED
                for publication, _ in self._publication_in(conn, event.namespace):
                    publication._flush()
            elif isinstance(event, moqt.PublishNamespaceRejected | moqt.PublishNamespaceCancelled):
                conn.announced.pop(event.namespace, None)
                for publication, _ in self._publication_in(conn, event.namespace):
                    conn.publishers.pop((publication.namespace, publication.track_name), None)
                    publication._refused(
                        _refusal(
                            f"the relay refused to let this client publish {publication.track} "
                            f"of {publication.call_sid}: {event.reason or 'no reason given'}",
                            event.error_code,
                            event.reason,
                        )
                    )
            elif isinstance(
                event,
                moqt.ObjectReceived
                | moqt.SubscribeAccepted
                | moqt.SubscribeRejected
                | moqt.PublishDoneReceived,
            ):
                entry = conn.subscribers.get(event.request_id)
                if entry is None:
                    continue
                subscription, subscriber = entry
                obj = subscriber.handle(event)
                if obj is not None:
                    subscription._object(obj)
                elif isinstance(event, moqt.SubscribeAccepted):
                    subscription._accepted(event.largest)
                elif (
                    isinstance(event, moqt.PublishDoneReceived)
                    and event.status_code == moqt.PublishDoneCode.TRACK_ENDED
                ):
                    del conn.subscribers[event.request_id]
                    subscription._track_finished()
                elif isinstance(event, moqt.SubscribeRejected):
                    del conn.subscribers[event.request_id]
                    subscription._refused(
                        _refusal(
                            f"the relay refused the subscription to {subscription.track} of "
                            f"{subscription.call_sid}: {event.reason or 'no reason given'}",
                            event.error_code,
                            event.reason,
                        )
                    )
            elif isinstance(event, moqt.GoawayReceived):
                conn.goaway = True
                if event.new_session_uri:
                    self._goaway_url = event.new_session_uri.decode("utf-8", "replace")
                if conn.link is not None:
                    conn.link.close(moqt.SessionErrorCode.NO_ERROR, "going away")
            else:
                moqt.answer_unclaimed(session, event)
        self._changed.notify()

    # -- the connection manager --------------------------------------------------------

    async def _run(self) -> None:
        try:
            await self._run_sessions()
        except Exception as exc:  # never let a background task crash the event loop
            logger.exception("MoQT client failed")
            if not self._ready_once and self._first_error is None:
                self._first_error = BridgeError(f"the MoQT client failed: {exc!r}")
        finally:
            self._ended = True
            self._conn = None
            for publication in self._publications.values():
                publication._client_ended()
            for subscription in list(self._subscriptions.values()):
                subscription._client_ended()
            assert self._done is not None
            self._done.set()
            self._changed.notify()

    async def _run_sessions(self) -> None:
        initial, cap = self._backoff
        delay = initial
        fresh = False
        while not self._closing:
            retry_now = False
            failure: BaseException | None = None
            outage = self._outage
            if outage is not None:
                outage.attempts += 1
                if not outage.announced:
                    self._announce(outage)
            try:
                retry_now = await self._session_once(fresh)
                fresh = False
                delay = initial
            except BridgeAuthError as exc:
                if not self._ready_once or fresh:
                    self._fail(exc)
                    return
                failure = exc  # fetch a fresh token and redial at once
                fresh = True
                retry_now = True
            except APIStatusError as exc:
                if not isinstance(exc, RateLimitError | InternalServerError) or not (
                    self._ready_once
                ):
                    self._fail(exc)
                    return
                failure = exc
            except APIConnectionError as exc:
                if not self._ready_once:
                    self._fail(exc)
                    return
                failure = exc
            except (
                transport.TransportError,
                BridgeConnectError,
                OSError,
                anyio.BrokenResourceError,
                anyio.ClosedResourceError,
            ) as exc:
                if not self._ready_once:
                    self._fail(
                        exc
                        if isinstance(exc, BridgeConnectError)
                        else BridgeConnectError(f"cannot reach the relay: {exc}")
                    )
                    return
                failure = exc
            if self._closing:
                return
            if not self._reconnect:
                if self._outage is not None:
                    self._announce(self._outage, reconnecting=False)
                return
            wait = 0.0 if retry_now else delay * _jitter.uniform(0.5, 1.0)
            if failure is not None:
                self._attempt_failed(failure, wait)
            if wait:
                await self._sleep(wait)
                delay = min(delay * 2, cap)

    def _fail(self, exc: BaseException) -> None:
        if not self._ready_once:
            self._first_error = exc
            return
        self._failure = exc
        # A call that ended while the session was down: nothing to warn about.
        call_ended = isinstance(exc, ConflictError) and exc.code == "call_ended"
        level = logging.INFO if call_ended or self._calls_over() else logging.WARNING
        outage = self._outage
        if outage is None:
            logger.log(level, "MoQT client stopped: %s", exc, extra=self._log_fields())
            return
        spent = time.monotonic() - outage.since
        logger.log(
            level,
            "gave up reconnecting to the relay %s after %.1f s and %d attempt(s): %s; "
            "its tracks have ended%s",
            self._url,
            spent,
            outage.attempts,
            exc,
            self._calls_text(),
            extra=self._log_fields(
                outage_seconds=spent,
                reconnect_attempts=outage.attempts,
                frames_dropped=self._counters.dropped - outage.dropped_before,
            ),
        )

    # -- what an outage logs -----------------------------------------------------------

    def _call_sids(self) -> list[str]:
        tracks = [*self._publications.values(), *self._subscriptions.values()]
        return sorted({track.call_sid for track in tracks})

    def _calls_text(self) -> str:
        sids = self._call_sids()
        if not sids:
            return ""
        shown = ", ".join(sids[:LOGGED_CALLS])
        more = len(sids) - LOGGED_CALLS
        return f" [calls {shown}{f' and {more} more' if more > 0 else ''}]"

    def _log_fields(self, **fields: object) -> dict[str, object]:
        return {"relay_url": self._url, "call_sids": self._call_sids(), **fields}

    def _lost(self, conn: _Conn) -> None:
        """A set-up session ended without the client closing it: an outage begins."""
        self._outage = _Outage(
            reason=_loss_reason(conn),
            since=time.monotonic(),
            dropped_before=self._counters.dropped,
            planned=conn.goaway,
        )

    def _calls_over(self) -> bool:
        """Every voice track this client receives was ended by the relay (its calls
        ended): a session that ends then is no outage."""
        received = [s for s in self._subscriptions.values() if isinstance(s, AudioSubscription)]
        return bool(received) and all(s.track_ended for s in received)

    def _announce(self, outage: _Outage, *, reconnecting: bool = True) -> None:
        outage.announced = True
        then = "reconnecting" if reconnecting else "not reconnecting (reconnect=False)"
        if outage.planned:
            level = logging.INFO
            text = "the relay %s sent GOAWAY; %s%s"
            args: tuple[object, ...] = (self._url, then, self._calls_text())
        else:
            level = logging.INFO if self._calls_over() else logging.WARNING
            text = "lost the session with the relay %s (%s); %s%s"
            args = (self._url, outage.reason, then, self._calls_text())
        logger.log(level, text, *args, extra=self._log_fields(reason=outage.reason))

    def _attempt_failed(self, exc: BaseException, retry_in: float) -> None:
        """A reconnect attempt failed: logged for the first one of an outage, then
        at most every ``RECONNECT_LOG_INTERVAL`` seconds."""
        outage = self._outage
        if outage is None:
            return
        if outage.attempts == 0:
            # The set-up session itself ended with this error: that is the loss.
            outage.reason = f"{outage.reason}: {exc}"
            return
        outage.unlogged_failures += 1
        now = time.monotonic()
        if outage.logged_at and now - outage.logged_at < RECONNECT_LOG_INTERVAL:
            return
        fields = self._log_fields(
            outage_seconds=now - outage.since, reconnect_attempts=outage.attempts
        )
        if not outage.logged_at:
            logger.log(
                logging.INFO if self._calls_over() else logging.WARNING,
                "reconnecting to the relay %s: attempt %d failed (%s); next in %.2f s%s",
                self._url,
                outage.attempts,
                exc,
                retry_in,
                self._calls_text(),
                extra=fields,
            )
        else:
            logger.info(
                "still reconnecting to the relay %s after %.1f s: %d more attempt(s) failed "
                "(last: %s); next in %.2f s%s",
                self._url,
                now - outage.since,
                outage.unlogged_failures,
                exc,
                retry_in,
                self._calls_text(),
                extra=fields,
            )
        outage.logged_at = now
        outage.unlogged_failures = 0

    def _recovered(self) -> None:
        """A session is set up again: the outage ends (frames already too old for
        it are dropped now, so that the count logged is complete)."""
        outage, self._outage = self._outage, None
        if outage is None:
            return
        for publication in list(self._publications.values()):
            if isinstance(publication, AudioPublication):
                publication._drop_stale()
        spent = time.monotonic() - outage.since
        dropped = self._counters.dropped - outage.dropped_before
        level = logging.INFO if outage.planned and not dropped else logging.WARNING
        logger.log(
            level,
            "the session with the relay %s is back after %.2f s and %d attempt(s); "
            "%d frame(s) dropped meanwhile%s",
            self._url,
            spent,
            outage.attempts,
            dropped,
            self._calls_text(),
            extra=self._log_fields(
                outage_seconds=spent, reconnect_attempts=outage.attempts, frames_dropped=dropped
            ),
        )

    async def _sleep(self, seconds: float) -> None:
        assert self._wake is not None
        with anyio.move_on_after(seconds):
            await self._wake.wait()

    async def _session_once(self, fresh: bool) -> bool:
        """One connection: dial, set up, serve until it ends. True: redial at once."""
        url, token = await self._credentials(fresh)
        if self._goaway_url:
            url = self._goaway_url
        self._url = _display_url(url)
        target = transport.parse_url(url)
        webtransport = target.kind is ConnectionKind.WEBTRANSPORT
        session = moqt.Session(
            moqt.Role.CLIENT,
            path=None if webtransport else target.path,
            webtransport=webtransport,
            setup_parameters=_token_parameters(token),
            implementation=self._implementation,
        )
        conn_state = _Conn(session)
        assert self._wake is not None
        self._wake = anyio.Event()
        if self._closing:
            return False
        try:
            async with transport.connect(
                url,
                verify=self._verify,
                cert_sha256=self._cert_sha256,
                server_name=self._server_name,
                timeout=self._connect_timeout,
                idle_timeout=self._idle_timeout,
            ) as conn:
                control = await conn.open_bidi_stream()
                link = MoqtLink(conn, session, lambda events: self._on_events(conn_state, events))
                link.stream_ids = {}  # which frames the relay acknowledged, see _settle
                link.on_drained = lambda: self._drained(conn_state)
                conn_state.link = link
                self._conn = conn_state
                failure: BridgeError | None = None
                async with anyio.create_task_group() as tg:
                    tg.start_soon(link.run, control)
                    with anyio.move_on_after(self._connect_timeout):
                        while not conn_state.setup_done and not link.finished.is_set():
                            if self._closing:
                                break
                            await wait_any(link.finished, self._wake)
                    if not conn_state.setup_done:
                        if not self._closing:
                            failure = self._setup_failure(session)
                        tg.cancel_scope.cancel()
                    else:
                        await wait_any(link.finished, self._wake)
                        if not link.finished.is_set():  # closing
                            conn_state.closing = True
                            self._finish_tracks(conn_state)
                            link.close(moqt.SessionErrorCode.NO_ERROR, "closing")
                            with anyio.move_on_after(2.0):
                                await link.finished.wait()
                            tg.cancel_scope.cancel()
                if failure is not None:
                    raise failure
        finally:
            self._conn = None
            self._settle(conn_state)
            if conn_state.setup_done and not self._closing:
                self._lost(conn_state)
            self._changed.notify()
        return conn_state.goaway

    def _drained(self, conn: _Conn) -> None:
        """The link handed over its backlog: the publications it held back send
        what they queued meanwhile (else it would wait for their next write)."""
        held_back = list(conn.held_back)
        conn.held_back.clear()
        for publication in held_back:
            if not publication._closed:
                publication._flush()

    def _settle(self, conn: _Conn) -> None:
        """The session ``conn`` ended and its connection is closed: each frame handed
        to it was acknowledged by the relay (out), or was not and goes back to its
        publication's queue for the next session (dropped if the client or the
        track is closing). Acknowledgements are all in by now, so none is counted
        twice or lost from the count."""
        for publication in list(conn.senders):
            publication._session_ended(conn, not self._closing and not publication._closed)

    def _setup_failure(self, session: moqt.Session) -> BridgeError:
        termination = session.termination
        if termination is not None and termination.error_code in AUTH_CLOSE_CODES:
            return BridgeAuthError(
                f"the relay refused the session: {termination.reason or 'unauthorized'} "
                f"(code {termination.error_code:#x})",
                code=termination.error_code,
                reason=termination.reason,
            )
        if termination is not None:
            return BridgeConnectError(
                f"the relay ended the session during setup: {termination.reason} "
                f"(code {termination.error_code:#x})"
            )
        return BridgeConnectError("MoQT setup with the relay timed out")

    def _finish_tracks(self, conn: _Conn) -> None:
        if conn.session.state is not moqt.SessionState.ESTABLISHED:
            return
        for publication in list(self._publications.values()):
            self._withdraw(conn, publication)
        for _, subscriber in list(conn.subscribers.values()):
            subscriber.stop()
        conn.subscribers.clear()
