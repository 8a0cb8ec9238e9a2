"""The dev engine's MoQT relay: call audio between bridges, callers and simulated callees.

One UDP port serves raw QUIC (``moqt://host:port``, ALPN ``moq-00``) and
WebTransport (``https://host:port/<any path>``) with a self-signed certificate.

Access: the client presents a bridge token (``POST .../bridge-tokens``) in the
AUTHORIZATION_TOKEN setup parameter. The relay checks its signature with the
engine's secret, its expiry, and that the call exists in the token's org and has
not ended; otherwise it closes the session with UNAUTHORIZED (0x2),
MALFORMED_AUTH_TOKEN (0x16) or EXPIRED_AUTH_TOKEN (0x18) before SERVER_SETUP.
A valid token grants its call and role to the session. PUBLISH_NAMESPACE and
SUBSCRIBE may carry a token of their own (the AUTHORIZATION_TOKEN parameter),
checked the same way, which adds its grant: so one session can carry the audio
of many calls (a client multiplexing its bridges); a bad token there refuses
only that request, and a refused request grants nothing. Grants bound what the
client may do: only namespaces ``("voice", <sid>)`` of granted calls (else
PUBLISH_NAMESPACE_ERROR / SUBSCRIBE_ERROR UNAUTHORIZED); a ``server`` subscribes
``uplink`` and publishes ``downlink``, a ``caller`` the reverse (a SUBSCRIBE to the
other track is refused with UNAUTHORIZED; the relay only ever subscribes the track
a role may publish).

Routing: the relay is the origin of every call's two tracks. It accepts a
subscription at once, even before anyone publishes (late joiners and reconnects
simply start receiving), and when a client announces ``voice/<sid>`` it
subscribes upstream to the track that client's role publishes, before answering
PUBLISH_NAMESPACE_OK, so a publisher is served as soon as it is accepted. Each
object is fanned out to every subscriber as a new group on its own stream,
keeping the publisher's LOC timestamp and group order; group IDs are renumbered
per track so that a publisher that reconnects (and restarts its groups) or takes
over from another continues the sequence downstream. If
several sessions publish one track (a reconnect racing the old session, or a
softphone joining a call whose simulated callee also speaks), the most recent
one is heard, simulated callees only when nobody else publishes. When a call
ends, its subscribers get PUBLISH_DONE (TRACK_ENDED), the relay unsubscribes
from its publishers, and sessions left with no live call are closed.

Token in the URL: clients that carry credentials in the connect URL (the moq-rs
library, browsers) may instead send the bridge token as the ``jwt`` (or
``token``) query parameter: of the CONNECT path over WebTransport, of the PATH
setup parameter over raw QUIC. The AUTHORIZATION_TOKEN parameter wins when both
are present.

Discovery: a SUBSCRIBE_NAMESPACE whose prefix covers ``("voice", <sid>)`` of a
granted call (the empty prefix covers all) is accepted, and the relay announces
(PUBLISH_NAMESPACE) the call namespace of every granted call it covers, as
generic MoQT clients expect (moq-rs subscribes to the empty prefix first).

Formats and transcoding (see :mod:`clutchcall.moqt.catalog`): each side declares
the format of the track it publishes in an MSF catalog, the track ``catalog`` of
``("voice", <sid>, <track>)``. When a client announces that namespace, the relay
subscribes to its catalog and keeps the declared format (a malformed catalog is
ignored, logged and counted). It serves the call's merged catalog at
``("voice", <sid>)`` / ``catalog`` (the active publisher's format of each track)
and each side's at ``("voice", <sid>, <track>)`` / ``catalog``, sending the current
version at once on SUBSCRIBE and each new version as a new group. Like a
platform's media gateway, it delivers each track to a subscriber in the format
that subscriber declared for its own track (a bridge speaks and hears one
format): when the publisher's declared format differs, the relay transcodes
(:class:`~clutchcall.audio.Transcoder`), once per target format per track, inline
as each frame arrives (no queue). A publisher that declares nothing is taken to
send the SDK's default (:data:`UNDECLARED_FORMAT`, Opus 48 kHz mono 20 ms);
a subscriber that declares nothing gets the frames as published. At most
:data:`MAX_RENDITIONS` target formats are made per track; a subscriber beyond
that gets the frames as published. Each rendition transcodes at most
:data:`TRANSCODE_SPEED` times real time (a publisher sending faster loses the
excess for those subscribers), so a track costs the relay a bounded amount of
work whatever its publisher sends.

Slow subscribers: each session holds at most :data:`SUBSCRIBER_BACKLOG_BYTES` (per
track it subscribes to) of forwarded objects it has not acknowledged, none older
than :data:`SUBSCRIBER_BACKLOG_AGE`. A subscriber that falls further behind (it stopped
reading, grants no flow-control credit, or its path is too slow) loses its oldest
groups: streams already sent are reset (DELIVERY_TIMEOUT), the others never
leave. The drops are counted (:meth:`Relay.stats`) and logged once per episode;
the publisher and the other subscribers do not notice. A session that leaves
more than :data:`CONTROL_BACKLOG_BYTES` of control messages unread is closed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio
import anyio.abc

from .. import moqt, transport
from ..audio import AudioError, Transcoder
from ..moqnet import BacklogLimit, MoqtLink
from ..moqt import AudioFormat, VoiceRole, VoiceTrack
from ..moqt.wire import NeedMoreData, Reader
from ..transport import Connection, ConnectionKind
from . import tokens
from ._state import Store

logger = logging.getLogger(__name__)

SETUP_TIMEOUT = 10.0
"""A session that has not completed SETUP this long after its handshake is closed
(CONTROL_MESSAGE_TIMEOUT)."""

HANDSHAKE_TIMEOUT = transport.server.HANDSHAKE_TIMEOUT
"""A QUIC connection without a session this long after its first packet is dropped."""

SWEEP_INTERVAL = 0.1
"""How often sessions of ended calls are looked for."""

SUBSCRIBER_BACKLOG_BYTES = 2 << 20
"""Per track a session subscribes to, the most it may hold of forwarded objects
it has not acknowledged yet (each counted with its stream's overhead, see
:data:`~clutchcall.moqnet.GROUP_OVERHEAD`); past it the relay drops that
session's oldest groups. A call's audio (50 frames a second) counts for about
60 KB a second, so this is far more than any track holds for
:data:`SUBSCRIBER_BACKLOG_AGE`; it bounds a publisher that sends much more."""

SUBSCRIBER_BACKLOG_AGE = 2.0
"""Seconds a forwarded object may wait for a session to take it (acknowledge all
of it); an older one is dropped: audio that late is of no use to anyone."""

CONTROL_BACKLOG_BYTES = 256 << 10
"""Control messages a session may leave waiting (beyond what the transport holds
for its control stream) before the relay closes it with TOO_MANY_REQUESTS: a
session that keeps sending requests but never reads the answers."""

BACKLOG_LIMIT = BacklogLimit(
    max_bytes=SUBSCRIBER_BACKLOG_BYTES,
    max_age=SUBSCRIBER_BACKLOG_AGE,
    max_control_bytes=CONTROL_BACKLOG_BYTES,
)

MAX_RENDITIONS = 4
"""Target formats the relay transcodes one track into, at most (each costs one
encoder's work per frame); further subscribers get the track as published."""

TRANSCODE_SPEED = 2.0
"""A rendition transcodes at most this many seconds of audio per second of wall
time (plus :data:`TRANSCODE_BURST` seconds banked): a publisher that sends faster
than real time cannot make the relay's transcoding work grow with it. Frames past
the budget are dropped for the subscribers that need them transcoded, and
counted."""

TRANSCODE_BURST = 1.0

MAX_NAMESPACE_PREFIXES = 8
"""SUBSCRIBE_NAMESPACE requests one session may hold."""

URL_TOKEN_KEYS = ("jwt", "token")
"""Query parameters of the connect URL that may carry the bridge token."""

UNDECLARED_FORMAT = moqt.DEFAULT_FORMAT
"""What a publisher that declares no format is taken to send, for transcoding:
the SDK's default, Opus 48 kHz mono in 20 ms frames."""

USE_VALUE = 0x3
_CODES = moqt.SessionErrorCode


@dataclass(eq=False)
class _Peer:
    """One client session."""

    session: moqt.Session
    link: MoqtLink | None = None
    #: The setup token's claims (None until the session is authenticated).
    claims: tokens.BridgeClaims | None = None
    #: Every (call sid, role) granted so far: the setup token's and the requests'.
    grants: dict[tuple[str, VoiceRole], tokens.BridgeClaims] = field(default_factory=dict)
    implementation: str | None = None
    #: Our subscriptions to this peer's track: request id -> track key.
    upstream: dict[int, tuple[str, VoiceTrack]] = field(default_factory=dict)
    #: This peer's subscriptions to us: request id -> track key.
    downstream: dict[int, tuple[str, VoiceTrack]] = field(default_factory=dict)
    #: Our subscriptions to this peer's catalogs: request id -> (call sid, its track).
    catalog_upstream: dict[int, tuple[str, VoiceTrack]] = field(default_factory=dict)
    #: The format this peer declared, per (call sid, track it publishes).
    declared: dict[tuple[str, VoiceTrack], AudioFormat] = field(default_factory=dict)
    #: This peer's subscriptions to catalogs: request id -> (call sid, side or None).
    catalog_downstream: dict[int, tuple[str, VoiceTrack | None]] = field(default_factory=dict)
    #: Namespace prefixes it subscribed to (SUBSCRIBE_NAMESPACE), and the calls
    #: announced to it under them.
    prefixes: list[moqt.Namespace] = field(default_factory=list)
    announced_calls: set[str] = field(default_factory=set)
    #: The WebTransport CONNECT path (where a browser puts its token).
    connect_path: str | None = None

    def kick(self) -> None:
        if self.link is not None:
            self.link.kick()


@dataclass(eq=False)
class _Downstream:
    """One subscription to a track: its request id and its own group numbering
    (group IDs continue without going back when its source changes)."""

    request_id: int
    next_group: int
    #: Where its frames come from: None (as published) or a rendition's key.
    source: tuple[AudioFormat, AudioFormat] | None = None
    offset: int = 0


@dataclass(eq=False)
class _Rendition:
    """A track transcoded into one target format, with its own group numbers."""

    transcoder: Transcoder
    next_group: int
    #: Microseconds of audio it may still transcode (refilled in real time).
    budget_us: float = TRANSCODE_BURST * 1_000_000
    refilled_at: float = field(default_factory=time.monotonic)

    def afford(self, cost_us: int) -> bool:
        """Take ``cost_us`` of audio from the budget, if there is that much."""
        now = time.monotonic()
        elapsed = now - self.refilled_at
        self.refilled_at = now
        self.budget_us = min(
            TRANSCODE_BURST * 1_000_000, self.budget_us + elapsed * TRANSCODE_SPEED * 1_000_000
        )
        if self.budget_us < cost_us:
            return False
        self.budget_us -= cost_us
        return True


@dataclass(eq=False)
class _Track:
    #: (peer, request id of our subscription to it), most recent last.
    publishers: list[tuple[_Peer, int]] = field(default_factory=list)
    #: peer -> its subscription.
    subscribers: dict[_Peer, _Downstream] = field(default_factory=dict)
    #: (source format, target format) -> the track transcoded.
    renditions: dict[tuple[AudioFormat, AudioFormat], _Rendition] = field(default_factory=dict)
    #: Group IDs sent downstream: the active publisher's group plus ``offset``.
    active: _Peer | None = None
    offset: int = 0
    #: Starts above 0 so that objects overtaken by a publisher's first one still fit.
    next_group: int = 16


class Relay:
    """The relay; run :meth:`serve` in a task group, stop it with :meth:`stop`."""

    def __init__(
        self,
        store: Store,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        certificate: transport.SelfSignedCertificate,
        on_peer: Callable[[str, str | None], None] | None = None,
        background_implementation: str | None = None,
        handshake_timeout: float = HANDSHAKE_TIMEOUT,
        setup_timeout: float = SETUP_TIMEOUT,
    ) -> None:
        self.store = store
        self.host = host
        self.port = port
        self.certificate = certificate
        #: Called with (call sid, peer implementation) whenever a session authenticates.
        self.on_peer = on_peer
        #: Publishers with this MOQT_IMPLEMENTATION are heard only when no other
        #: session publishes the track (the engine's simulated callees).
        self.background_implementation = background_implementation
        self.handshake_timeout = handshake_timeout
        self.setup_timeout = setup_timeout
        #: The transport server while :meth:`serve` runs.
        self.server: transport.Server | None = None
        self._tracks: dict[tuple[str, VoiceTrack], _Track] = {}
        self._peers: set[_Peer] = set()
        #: The sessions granted each call (the engine asks this every few ms per call).
        self._by_call: dict[str, set[_Peer]] = {}
        self._stop: anyio.Event | None = None
        self._stopped: anyio.Event | None = None
        #: How far a session may fall behind (see the module docstring); its
        #: ``max_bytes`` is per track the session subscribes to.
        self.backlog_limit = BACKLOG_LIMIT
        #: Groups dropped by sessions that have ended.
        self._dropped_before = 0
        #: Catalog subscribers: (call sid, side or None for the merged one) -> peer -> request id.
        self._catalog_subs: dict[tuple[str, VoiceTrack | None], dict[_Peer, int]] = {}
        #: The last version sent of each catalog: (group, payload).
        self._catalog_sent: dict[tuple[str, VoiceTrack | None], tuple[int, bytes]] = {}
        self._transcoded = 0
        self._untranscodable = 0
        self._catalogs_refused = 0
        self._rendition_refusals = 0
        self._over_budget = 0

    # -- lifecycle -------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Raw QUIC URL of the relay."""
        return f"moqt://{_host(self.host)}:{self.port}"

    @property
    def webtransport_url(self) -> str:
        """WebTransport URL of the relay (any path is accepted)."""
        return f"https://{_host(self.host)}:{self.port}/"

    async def serve(
        self, *, task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Listen until :meth:`stop`; reports the bound port through ``task_status``."""
        self._stop = anyio.Event()
        self._stopped = anyio.Event()
        try:
            async with transport.serve(
                self.host,
                self.port,
                certificate=self.certificate.cert_pem,
                private_key=self.certificate.key_pem,
                handler=self._handle,
                idle_timeout=15.0,
                handshake_timeout=self.handshake_timeout,
            ) as server:
                self.server = server
                self.port = server.port
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._sweep)
                    task_status.started(server.port)
                    await self._stop.wait()
                    tg.cancel_scope.cancel()
        finally:
            self.server = None
            self._peers.clear()
            self._tracks.clear()
            self._by_call.clear()
            self._catalog_subs.clear()
            self._catalog_sent.clear()
            self._stopped.set()

    async def stop(self) -> None:
        """Close every session and the socket (the port may be bound again at once)."""
        if self._stop is None or self._stopped is None:
            return
        self._stop.set()
        await self._stopped.wait()

    def goaway(self, new_session_uri: str = "") -> int:
        """Send GOAWAY to every established session; returns how many got it."""
        count = 0
        for peer in list(self._peers):
            if peer.session.state is moqt.SessionState.ESTABLISHED:
                try:
                    peer.session.goaway(new_session_uri.encode())
                except moqt.MoqtUsageError:
                    continue
                peer.kick()
                count += 1
        return count

    def sessions(
        self,
        call_sid: str | None = None,
        *,
        exclude: str | tuple[str, ...] | None = None,
        role: VoiceRole | None = None,
    ) -> int:
        """Authenticated sessions (of one call, if given, and holding that call in
        ``role``, if given; not counting clients whose MOQT_IMPLEMENTATION is
        ``exclude``, or one of them)."""
        skip = (exclude,) if isinstance(exclude, str) else (exclude or ())
        if call_sid is not None:
            peers = self._by_call.get(call_sid, ())
            return sum(
                1
                for peer in peers
                if peer.implementation not in skip
                and (role is None or (call_sid, role) in peer.grants)
            )
        return sum(
            1 for peer in self._peers if peer.claims is not None and peer.implementation not in skip
        )

    def session_calls(self, *, exclude: tuple[str, ...] = ()) -> list[frozenset[str]]:
        """The calls each authenticated session carries (one set per session), not
        counting clients whose MOQT_IMPLEMENTATION is in ``exclude``."""
        return [
            frozenset(sid for sid, _ in peer.grants)
            for peer in self._peers
            if peer.claims is not None and peer.implementation not in exclude
        ]

    def stats(self) -> RelayStats:
        """Counters of the relay's sessions and tracks (for monitoring and tests)."""
        live = [peer.link for peer in self._peers if peer.link is not None]
        return RelayStats(
            sessions=len(self._peers),
            tracks=len(self._tracks),
            subscriptions=sum(len(track.subscribers) for track in self._tracks.values()),
            grants=sum(len(peer.grants) for peer in self._peers),
            peer_streams=sum(link.streams_reading for link in live),
            backlog_bytes=sum(link.backlog_bytes for link in live),
            groups_dropped=self._dropped_before + sum(link.groups_dropped for link in live),
            sessions_dropping=sum(1 for link in live if link.dropping),
            renditions=sum(len(track.renditions) for track in self._tracks.values()),
            frames_transcoded=self._transcoded,
            frames_untranscodable=self._untranscodable,
            catalogs_refused=self._catalogs_refused,
            renditions_refused=self._rendition_refusals,
            frames_over_budget=self._over_budget,
        )

    # -- one session -------------------------------------------------------------------

    async def _handle(self, conn: Connection) -> None:
        session = moqt.Session(
            moqt.Role.SERVER,
            webtransport=conn.kind is ConnectionKind.WEBTRANSPORT,
            implementation="clutchcall-dev-relay",
        )
        peer = _Peer(session, connect_path=conn.path)
        link = MoqtLink(
            conn,
            session,
            lambda events: self._on_events(peer, events),
            backlog_limit=self.backlog_limit,
        )
        peer.link = link
        self._peers.add(peer)
        try:
            async with anyio.create_task_group() as tg:

                async def setup_watchdog() -> None:
                    await anyio.sleep(self.setup_timeout)
                    if peer.claims is None:
                        link.abort(_CODES.CONTROL_MESSAGE_TIMEOUT, "no SETUP in time")

                tg.start_soon(setup_watchdog)
                await link.run()
                tg.cancel_scope.cancel()
        finally:
            self._drop_peer(peer)
            self._dropped_before += link.groups_dropped

    def _on_events(self, peer: _Peer, events: list[moqt.Event]) -> None:
        for event in events:
            if isinstance(event, moqt.SetupCompleted):
                self._authenticate(peer, event)
            elif peer.claims is None:
                continue
            elif isinstance(event, moqt.PublishNamespaceReceived):
                self._on_publish_namespace(peer, event)
            elif isinstance(event, moqt.SubscribeReceived):
                self._on_subscribe(peer, event)
            elif isinstance(event, moqt.UnsubscribeReceived):
                self._unsubscribed(peer, event.request_id)
            elif isinstance(event, moqt.ObjectReceived):
                self._forward(peer, event)
            elif isinstance(event, moqt.SubscribeRejected | moqt.PublishDoneReceived):
                self._drop_upstream(peer, event.request_id, unsubscribe=False)
            elif isinstance(event, moqt.PublishNamespaceDoneReceived):
                for request_id, (sid, _) in list(peer.upstream.items()):
                    if event.namespace == moqt.voice_namespace(sid):
                        self._drop_upstream(peer, request_id, unsubscribe=True)
                for request_id, (sid, side) in list(peer.catalog_upstream.items()):
                    if event.namespace == moqt.catalog_namespace(sid, side):
                        self._drop_upstream(peer, request_id, unsubscribe=True)
            elif isinstance(event, moqt.SubscribeNamespaceReceived):
                self._on_subscribe_namespace(peer, event)
            elif isinstance(event, moqt.SessionClosed):
                self._drop_peer(peer)

    def _authenticate(self, peer: _Peer, event: moqt.SetupCompleted) -> None:
        assert peer.link is not None
        raw = _token_parameter(event.parameters)
        if raw is not None:
            claims = self._check_token(raw)
        else:
            path = peer.connect_path
            if event.path is not None:
                path = event.path.decode("utf-8", "replace")
            token = _url_token(path)
            if token is None:
                peer.link.abort(_CODES.UNAUTHORIZED, "a bridge token is required")
                return
            claims = self._verify(token)
        if isinstance(claims, _Refusal):
            peer.link.abort(claims.code, claims.reason)
            return
        peer.claims = claims
        peer.implementation = event.peer_implementation
        self._grant(peer, claims)

    def _check_token(self, raw: bytes) -> tokens.BridgeClaims | _Refusal:
        """The claims of an AUTHORIZATION_TOKEN value, or why it is refused."""
        try:
            reader = Reader(raw)
            alias_type = reader.read_varint()
            reader.read_varint()  # token type: not interpreted
            token = reader.read_bytes(reader.remaining).decode("ascii")
        except (NeedMoreData, UnicodeDecodeError):
            return _Refusal(_CODES.MALFORMED_AUTH_TOKEN, "malformed AUTHORIZATION_TOKEN")
        if alias_type != USE_VALUE:
            return _Refusal(_CODES.MALFORMED_AUTH_TOKEN, "token aliases are not supported")
        return self._verify(token)

    def _verify(self, token: str) -> tokens.BridgeClaims | _Refusal:
        """The claims of a bridge token, or why it is refused."""
        try:
            claims = tokens.verify(self.store.bridge_secret, token, now=time.time())
        except tokens.TokenExpiredError as exc:
            return _Refusal(_CODES.EXPIRED_AUTH_TOKEN, str(exc))
        except tokens.TokenError as exc:
            return _Refusal(_CODES.UNAUTHORIZED, str(exc))
        call = self.store.get(claims.org_id, claims.call_sid)
        if call is None:
            return _Refusal(_CODES.UNAUTHORIZED, "no such call")
        if call.ending(self.store.clock()) is not None:
            return _Refusal(_CODES.UNAUTHORIZED, "the call has ended")
        return claims

    def _grant(self, peer: _Peer, claims: tokens.BridgeClaims) -> None:
        new_call = not any(sid == claims.call_sid for sid, _ in peer.grants)
        peer.grants[(claims.call_sid, claims.role)] = claims
        self._by_call.setdefault(claims.call_sid, set()).add(peer)
        if new_call:
            self._announce_calls(peer)
            if self.on_peer is not None:
                self.on_peer(claims.call_sid, peer.implementation)

    def _claims_for(
        self,
        peer: _Peer,
        call_sid: str | None,
        parameters: moqt.Parameters,
        allowed: Callable[[tokens.BridgeClaims], bool],
    ) -> tokens.BridgeClaims | _Refusal:
        """The grant that covers a request on a namespace of ``call_sid`` (None: a
        namespace of no call): the request's own token if it carries one (held by
        the session from then on, unless the request is refused), else one the
        session already holds."""
        raw = _token_parameter(parameters)
        if raw is not None:
            claims = self._check_token(raw)
            if isinstance(claims, _Refusal):
                return claims
            if call_sid != claims.call_sid:
                return _Refusal(_CODES.UNAUTHORIZED, "this token does not cover that namespace")
            if not allowed(claims):
                # Refused: the token grants nothing, not even for later requests.
                return _Refusal(_CODES.UNAUTHORIZED, f"a {claims.role} token may not do that")
            self._grant(peer, claims)
            return claims
        held = [c for (sid, _), c in peer.grants.items() if sid == call_sid]
        if not held:
            return _Refusal(_CODES.UNAUTHORIZED, "this token does not cover that namespace")
        for claims in held:
            if allowed(claims):
                return claims
        return _Refusal(_CODES.UNAUTHORIZED, f"a {held[0].role} token may not do that")

    def _on_publish_namespace(self, peer: _Peer, event: moqt.PublishNamespaceReceived) -> None:
        parsed = moqt.parse_catalog_namespace(event.namespace)
        sid, side = parsed if parsed is not None else (None, None)
        claims = self._claims_for(
            peer,
            sid,
            event.parameters,
            (lambda c: True) if side is None else (lambda c: c.role.publishes == side),
        )
        if isinstance(claims, _Refusal):
            peer.session.reject_publish_namespace(
                event.request_id, moqt.PublishNamespaceErrorCode.UNAUTHORIZED, claims.reason
            )
            return
        name = claims.role.publishes
        key = (claims.call_sid, name)
        if side is not None:
            # One side's catalog: subscribe to it, to learn the format it declares.
            if key not in peer.catalog_upstream.values():
                request_id = peer.session.subscribe(
                    event.namespace, moqt.CATALOG_TRACK, subscriber_priority=0
                )
                peer.catalog_upstream[request_id] = key
        elif key not in peer.upstream.values():
            request_id = peer.session.subscribe(event.namespace, name.wire_name)
            peer.upstream[request_id] = key
            self._tracks.setdefault(key, _Track()).publishers.append((peer, request_id))
            self._refresh_catalogs(claims.call_sid)
        peer.session.accept_publish_namespace(event.request_id)

    def _on_subscribe(self, peer: _Peer, event: moqt.SubscribeReceived) -> None:
        if event.track_name == moqt.CATALOG_TRACK:
            self._on_catalog_subscribe(peer, event)
            return
        try:
            name = moqt.voice_track(event.track_name)
        except ValueError:
            name = None
        parsed = moqt.parse_catalog_namespace(event.namespace)
        if name is None or parsed is None or parsed[1] is not None:
            peer.session.reject_subscribe(
                event.request_id, moqt.SubscribeErrorCode.TRACK_DOES_NOT_EXIST, "no such track"
            )
            return
        found = self._claims_for(peer, parsed[0], event.parameters, lambda c: c.may_subscribe(name))
        if isinstance(found, _Refusal):
            peer.session.reject_subscribe(
                event.request_id, moqt.SubscribeErrorCode.UNAUTHORIZED, found.reason
            )
            return
        claims = found
        key = (claims.call_sid, name)
        track = self._tracks.setdefault(key, _Track())
        # Largest tells the subscriber which group comes next, so that it can put
        # even its first frames back in order.
        largest = moqt.Location(track.next_group - 1, 0)
        peer.session.accept_subscribe(event.request_id, largest=largest)
        peer.downstream[event.request_id] = key
        track.subscribers[peer] = _Downstream(event.request_id, track.next_group)
        self._resize_backlog(peer)

    def _on_catalog_subscribe(self, peer: _Peer, event: moqt.SubscribeReceived) -> None:
        """A catalog: the call's merged one, or one side's (any role of the call may read)."""
        parsed = moqt.parse_catalog_namespace(event.namespace)
        if parsed is None:
            peer.session.reject_subscribe(
                event.request_id, moqt.SubscribeErrorCode.TRACK_DOES_NOT_EXIST, "no such track"
            )
            return
        found = self._claims_for(peer, parsed[0], event.parameters, lambda c: True)
        if isinstance(found, _Refusal):
            peer.session.reject_subscribe(
                event.request_id, moqt.SubscribeErrorCode.UNAUTHORIZED, found.reason
            )
            return
        subscribers = self._catalog_subs.setdefault(parsed, {})
        previous = subscribers.get(peer)
        if previous is not None:  # subscribed again: the new request replaces the old
            peer.catalog_downstream.pop(previous, None)
        peer.session.accept_subscribe(event.request_id)
        peer.catalog_downstream[event.request_id] = parsed
        subscribers[peer] = event.request_id
        version = self._catalog_version(parsed)
        if version is not None:
            self._send_catalog(peer, event.request_id, *version)

    def _unsubscribed(self, peer: _Peer, request_id: int) -> None:
        key = peer.downstream.pop(request_id, None)
        track = self._tracks.get(key) if key else None
        if track is not None:
            track.subscribers.pop(peer, None)
        catalog = peer.catalog_downstream.pop(request_id, None)
        if catalog is not None:
            subscribers = self._catalog_subs.get(catalog)
            if subscribers is not None and subscribers.get(peer) == request_id:
                del subscribers[peer]
                if not subscribers:
                    del self._catalog_subs[catalog]
        self._resize_backlog(peer)

    def _on_subscribe_namespace(self, peer: _Peer, event: moqt.SubscribeNamespaceReceived) -> None:
        """Accept a prefix that covers call namespaces (the empty prefix covers all),
        then announce every granted call it covers."""
        prefix = event.namespace_prefix
        code: int | None = None
        if len(peer.prefixes) >= MAX_NAMESPACE_PREFIXES:
            code, reason = moqt.SubscribeNamespaceErrorCode.NOT_SUPPORTED, "too many prefixes"
        elif len(prefix) > 2 or (prefix and prefix[0] != moqt.voice_namespace("")[0]):
            code = moqt.SubscribeNamespaceErrorCode.NAMESPACE_PREFIX_UNKNOWN
            reason = "this relay serves voice/<sid> namespaces"
        elif len(prefix) == 2 and prefix[1].decode("utf-8", "replace") not in {
            sid for sid, _ in peer.grants
        }:
            code, reason = moqt.SubscribeNamespaceErrorCode.UNAUTHORIZED, "not your call"
        if code is not None:
            peer.session.reject_subscribe_namespace(event.request_id, code, reason)
            return
        peer.session.accept_subscribe_namespace(event.request_id)
        peer.prefixes.append(prefix)
        self._announce_calls(peer)

    def _announce_calls(self, peer: _Peer) -> None:
        """PUBLISH_NAMESPACE each granted call that a prefix of ``peer`` covers."""
        if not peer.prefixes or peer.session.state is not moqt.SessionState.ESTABLISHED:
            return
        for sid in {sid for sid, _ in peer.grants} - peer.announced_calls:
            namespace = moqt.voice_namespace(sid)
            if any(namespace[: len(prefix)] == prefix for prefix in peer.prefixes):
                with contextlib.suppress(moqt.MoqtUsageError):
                    peer.session.publish_namespace(namespace)
                    peer.announced_calls.add(sid)
        peer.kick()

    def _resize_backlog(self, peer: _Peer) -> None:
        """A session may hold the backlog limit's bytes once per track it subscribes to."""
        if peer.link is not None:
            limit = self.backlog_limit
            tracks = max(1, len(peer.downstream))
            peer.link.backlog_limit = dataclasses.replace(limit, max_bytes=limit.max_bytes * tracks)

    def _forward(self, peer: _Peer, event: moqt.ObjectReceived) -> None:
        key = peer.upstream.get(event.request_id)
        if key is None:
            catalog = peer.catalog_upstream.get(event.request_id)
            if catalog is not None and event.payload:
                self._on_catalog(peer, catalog, event.payload)
            return
        track = self._tracks.get(key)
        if track is None or self._active_publisher(track) is not peer:
            return  # not (or no longer) the track's active publisher
        if not event.payload:
            return
        if track.active is not peer:
            # A new publisher continues the track's group numbering without a gap.
            track.active = peer
            track.offset = track.next_group - event.group_id
        group_id = event.group_id + track.offset
        if group_id < 0:
            return
        track.next_group = max(track.next_group, group_id + 1)
        published = [(group_id, event.payload, event.timestamp_us)]
        # A publisher that declares nothing is taken to send the SDK's default
        # format.
        source = peer.declared.get(key, UNDECLARED_FORMAT)
        transcoded: dict[AudioFormat, list[tuple[int, bytes, int | None]] | None] = {}
        for subscriber, downstream in list(track.subscribers.items()):
            wanted = self._wanted_format(subscriber, key)
            if wanted is None or wanted == source:
                self._deliver(subscriber, downstream, None, published)
                continue
            if wanted not in transcoded:
                transcoded[wanted] = self._transcode(track, source, wanted, event)
            frames = transcoded[wanted]
            if frames is None:  # no rendition to be had: as published
                self._deliver(subscriber, downstream, None, published)
            else:
                self._deliver(subscriber, downstream, (source, wanted), frames)

    @staticmethod
    def _deliver(
        subscriber: _Peer,
        downstream: _Downstream,
        source: tuple[AudioFormat, AudioFormat] | None,
        frames: list[tuple[int, bytes, int | None]],
    ) -> None:
        """Send frames of one source (as published, or a rendition) to one subscriber."""
        for group_id, payload, timestamp_us in frames:
            if downstream.source != source:
                downstream.source = source
                downstream.offset = downstream.next_group - group_id
            group = group_id + downstream.offset
            if group < 0:
                continue
            downstream.next_group = max(downstream.next_group, group + 1)
            try:
                subscriber.session.send_object(
                    downstream.request_id, group, payload, timestamp_us=timestamp_us
                )
            except moqt.MoqtUsageError:
                return
        if frames:
            subscriber.kick()

    def _transcode(
        self, track: _Track, source: AudioFormat, target: AudioFormat, event: moqt.ObjectReceived
    ) -> list[tuple[int, bytes, int | None]] | None:
        """One published frame in ``target`` format (None: no rendition to be had)."""
        key = (source, target)
        rendition = track.renditions.get(key)
        if rendition is None:
            for stale in [k for k in track.renditions if k[0] != source]:
                track.renditions.pop(stale).transcoder.close()
            if len(track.renditions) >= MAX_RENDITIONS:
                if not self._rendition_refusals:
                    logger.info("a track needs more than %d target formats", MAX_RENDITIONS)
                self._rendition_refusals += 1
                return None
            try:
                rendition = _Rendition(Transcoder(source, target), track.next_group)
            except (AudioError, ValueError):
                self._rendition_refusals += 1
                return None
            track.renditions[key] = rendition
        if not rendition.afford(source.frame_ms * 1000):
            self._over_budget += 1
            return []
        stamp = event.timestamp_us if event.timestamp_us is not None else 0
        try:
            out = rendition.transcoder.push(event.payload, stamp)
        except (AudioError, ValueError):
            self._untranscodable += 1
            return []
        frames: list[tuple[int, bytes, int | None]] = []
        for data, timestamp in out:
            frames.append((rendition.next_group, data, timestamp))
            rendition.next_group += 1
        self._transcoded += len(frames)
        return frames

    @staticmethod
    def _wanted_format(subscriber: _Peer, key: tuple[str, VoiceTrack]) -> AudioFormat | None:
        """The format ``subscriber`` hears ``key`` in: the one it declared for the
        track it publishes on that call (a bridge speaks and hears one format)."""
        sid, track = key
        other = VoiceTrack.DOWNLINK if track is VoiceTrack.UPLINK else VoiceTrack.UPLINK
        return subscriber.declared.get((sid, other))

    # -- catalogs --------------------------------------------------------------------

    def _on_catalog(self, peer: _Peer, key: tuple[str, VoiceTrack], payload: bytes) -> None:
        """A catalog version from the publisher of ``key``: keep its format."""
        try:
            catalog = moqt.decode_catalog(payload)
        except moqt.CatalogError as exc:
            if not self._catalogs_refused:
                logger.info("ignoring a malformed catalog for %s: %s", key[0], exc)
            self._catalogs_refused += 1
            return
        fmt = catalog.format_of(key[1])
        if fmt is None:
            peer.declared.pop(key, None)
        else:
            peer.declared[key] = fmt
        self._refresh_catalogs(key[0])

    def _published_format(self, call_sid: str, track: VoiceTrack) -> AudioFormat | None:
        entry = self._tracks.get((call_sid, track))
        active = self._active_publisher(entry) if entry is not None else None
        return None if active is None else active.declared.get((call_sid, track))

    def _catalog_payload(self, key: tuple[str, VoiceTrack | None]) -> bytes | None:
        sid, side = key
        formats = {
            track: fmt
            for track in (VoiceTrack.UPLINK, VoiceTrack.DOWNLINK)
            if (fmt := self._published_format(sid, track)) is not None
        }
        if side is None:
            return moqt.encode_catalog(moqt.call_catalog(sid, formats))
        fmt = formats.get(side)
        return None if fmt is None else moqt.encode_catalog(moqt.side_catalog(sid, side, fmt))

    def _catalog_version(self, key: tuple[str, VoiceTrack | None]) -> tuple[int, bytes] | None:
        """The current version of a catalog (a new group if it changed), if any."""
        payload = self._catalog_payload(key)
        if payload is None:
            return None
        last = self._catalog_sent.get(key)
        if last is not None and last[1] == payload:
            return last
        version = ((last[0] + 1) if last is not None else 1, payload)
        self._catalog_sent[key] = version
        return version

    def _refresh_catalogs(self, call_sid: str) -> None:
        """Send the catalogs of ``call_sid`` that changed to their subscribers."""
        for side in (None, VoiceTrack.UPLINK, VoiceTrack.DOWNLINK):
            key = (call_sid, side)
            subscribers = self._catalog_subs.get(key)
            if not subscribers:
                continue
            last = self._catalog_sent.get(key)
            version = self._catalog_version(key)
            if version is None or version == last:
                continue
            for subscriber, request_id in list(subscribers.items()):
                self._send_catalog(subscriber, request_id, *version)

    @staticmethod
    def _send_catalog(peer: _Peer, request_id: int, group: int, payload: bytes) -> None:
        with contextlib.suppress(moqt.MoqtUsageError):
            peer.session.send_object(
                request_id, group, payload, publisher_priority=moqt.catalog.CATALOG_PRIORITY
            )
        peer.kick()

    def _active_publisher(self, track: _Track) -> _Peer | None:
        """The newest publisher, preferring real clients over simulated callees."""
        background = self.background_implementation
        for peer, _ in reversed(track.publishers):
            if background is None or peer.implementation != background:
                return peer
        return track.publishers[-1][0] if track.publishers else None

    def _drop_upstream(self, peer: _Peer, request_id: int, *, unsubscribe: bool) -> None:
        key = peer.upstream.pop(request_id, None)
        if key is None:
            key = peer.catalog_upstream.pop(request_id, None)
            if key is None:
                return
            peer.declared.pop(key, None)
        else:
            track = self._tracks.get(key)
            if track is not None:
                track.publishers = [p for p in track.publishers if p != (peer, request_id)]
        self._refresh_catalogs(key[0])
        if unsubscribe and peer.session.state is moqt.SessionState.ESTABLISHED:
            with contextlib.suppress(moqt.MoqtUsageError):
                peer.session.unsubscribe(request_id)
            peer.kick()

    def _unindex(self, peer: _Peer, call_sid: str) -> None:
        if not any(sid == call_sid for sid, _ in peer.grants):  # not still in its other role
            self._forget(peer, call_sid)

    def _forget(self, peer: _Peer, call_sid: str) -> None:
        peers = self._by_call.get(call_sid)
        if peers is not None:
            peers.discard(peer)
            if not peers:
                del self._by_call[call_sid]

    def _drop_peer(self, peer: _Peer) -> None:
        self._peers.discard(peer)
        calls = {sid for sid, _ in peer.grants} | {sid for sid, _ in peer.upstream.values()}
        for sid in {sid for sid, _ in peer.grants}:
            self._forget(peer, sid)
        for key in set(peer.upstream.values()) | set(peer.downstream.values()):
            track = self._tracks.get(key)
            if track is None:
                continue
            track.publishers = [p for p in track.publishers if p[0] is not peer]
            track.subscribers.pop(peer, None)
            if not track.publishers and not track.subscribers:
                del self._tracks[key]
        for catalog in set(peer.catalog_downstream.values()):
            subscribers = self._catalog_subs.get(catalog)
            if subscribers is not None:
                subscribers.pop(peer, None)
                if not subscribers:
                    del self._catalog_subs[catalog]
        peer.upstream.clear()
        peer.downstream.clear()
        peer.catalog_upstream.clear()
        peer.catalog_downstream.clear()
        peer.declared.clear()
        for sid in calls:
            self._refresh_catalogs(sid)
            if not any(key[0] == sid for key in self._catalog_subs):
                for side in (None, VoiceTrack.UPLINK, VoiceTrack.DOWNLINK):
                    self._catalog_sent.pop((sid, side), None)

    async def _sweep(self) -> None:
        """End the calls that have ended: their tracks, and sessions left with none."""
        while True:
            await anyio.sleep(SWEEP_INTERVAL)
            now = self.store.clock()
            for peer in list(self._peers):
                if peer.claims is None or peer.link is None:
                    continue
                ended = set()
                for sid, role in list(peer.grants):
                    claims = peer.grants[(sid, role)]
                    call = self.store.get(claims.org_id, sid)
                    if call is None or call.ending(now) is not None:
                        ended.add(sid)
                        del peer.grants[(sid, role)]
                        self._unindex(peer, sid)
                if not ended:
                    continue
                if peer.grants:
                    self._end_calls(peer, ended)
                    continue
                session = peer.session
                if session.state is moqt.SessionState.ESTABLISHED:
                    for request_id in [*peer.downstream, *peer.catalog_downstream]:
                        with contextlib.suppress(moqt.MoqtUsageError):
                            session.publish_done(
                                request_id, moqt.PublishDoneCode.TRACK_ENDED, "the call ended"
                            )
                self._drop_peer(peer)
                peer.link.close(_CODES.NO_ERROR, "the call ended")

    def _end_calls(self, peer: _Peer, ended: set[str]) -> None:
        """A session that carries other live calls: end only these calls' tracks."""
        session = peer.session
        live = session.state is moqt.SessionState.ESTABLISHED
        for request_id, key in [*peer.downstream.items(), *peer.catalog_downstream.items()]:
            if key[0] not in ended:
                continue
            self._unsubscribed(peer, request_id)
            if live:
                with contextlib.suppress(moqt.MoqtUsageError):
                    session.publish_done(
                        request_id, moqt.PublishDoneCode.TRACK_ENDED, "the call ended"
                    )
        self._resize_backlog(peer)
        for request_id, key in [*peer.upstream.items(), *peer.catalog_upstream.items()]:
            if key[0] in ended:
                self._drop_upstream(peer, request_id, unsubscribe=True)
        for sid in ended & peer.announced_calls:
            peer.announced_calls.discard(sid)
            if live:
                with contextlib.suppress(moqt.MoqtUsageError):
                    session.publish_namespace_done(moqt.voice_namespace(sid))
        for key in [k for k in self._tracks if k[0] in ended]:
            track = self._tracks[key]
            if not track.publishers and not track.subscribers:
                del self._tracks[key]
        peer.kick()


@dataclass(frozen=True)
class RelayStats:
    """What :meth:`Relay.stats` reports."""

    #: Sessions connected (authenticated or not yet).
    sessions: int
    #: Tracks the relay knows (with a publisher or a subscriber).
    tracks: int
    #: Subscriptions to them, over all sessions.
    subscriptions: int
    #: (call, role) grants held, over all sessions.
    grants: int
    #: Streams opened by clients that the relay is reading (not yet finished or reset).
    peer_streams: int
    #: Forwarded objects not yet acknowledged, as counted against the backlog limit.
    backlog_bytes: int
    #: Groups dropped for subscribers that fell behind, since the relay started.
    groups_dropped: int
    #: Sessions dropping groups right now.
    sessions_dropping: int
    #: Target formats tracks are being transcoded into right now.
    renditions: int = 0
    #: Frames delivered transcoded (each rendition's output, counted once).
    frames_transcoded: int = 0
    #: Published frames that did not decode in their declared format (dropped for
    #: the subscribers that needed them transcoded).
    frames_untranscodable: int = 0
    #: Catalog objects that were malformed (ignored).
    catalogs_refused: int = 0
    #: Times a subscriber got a track as published because no rendition could be made.
    renditions_refused: int = 0
    #: Published frames not transcoded because their rendition was past its budget
    #: (:data:`TRANSCODE_SPEED`: a publisher sending faster than real time).
    frames_over_budget: int = 0


@dataclass(frozen=True)
class _Refusal:
    code: int
    reason: str


def _token_parameter(parameters: moqt.Parameters) -> bytes | None:
    raw = next((v for k, v in parameters if k == moqt.MessageParameter.AUTHORIZATION_TOKEN), None)
    return raw if isinstance(raw, bytes) else None


def _url_token(path: str | None) -> str | None:
    """The bridge token in a connect URL's query (``?jwt=`` or ``?token=``), if any."""
    if not path or "?" not in path:
        return None
    query = path.split("?", 1)[1]
    try:
        fields = urllib.parse.parse_qs(query, max_num_fields=16)
    except ValueError:
        return None
    for key in URL_TOKEN_KEYS:
        values = fields.get(key)
        if values:
            return values[0]
    return None


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
