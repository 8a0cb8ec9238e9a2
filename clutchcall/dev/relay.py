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
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio
import anyio.abc

from .. import moqt, transport
from ..moqnet import BacklogLimit, MoqtLink
from ..moqt import VoiceRole, VoiceTrack
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

    def kick(self) -> None:
        if self.link is not None:
            self.link.kick()


@dataclass(eq=False)
class _Track:
    #: (peer, request id of our subscription to it), most recent last.
    publishers: list[tuple[_Peer, int]] = field(default_factory=list)
    #: peer -> its request id.
    subscribers: dict[_Peer, int] = field(default_factory=dict)
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
        )

    # -- one session -------------------------------------------------------------------

    async def _handle(self, conn: Connection) -> None:
        session = moqt.Session(
            moqt.Role.SERVER,
            webtransport=conn.kind is ConnectionKind.WEBTRANSPORT,
            implementation="clutchcall-dev-relay",
        )
        peer = _Peer(session)
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
                key = peer.downstream.pop(event.request_id, None)
                track = self._tracks.get(key) if key else None
                if track is not None:
                    track.subscribers.pop(peer, None)
                self._resize_backlog(peer)
            elif isinstance(event, moqt.ObjectReceived):
                self._forward(peer, event)
            elif isinstance(event, moqt.SubscribeRejected | moqt.PublishDoneReceived):
                self._drop_upstream(peer, event.request_id, unsubscribe=False)
            elif isinstance(event, moqt.PublishNamespaceDoneReceived):
                for request_id, (sid, _) in list(peer.upstream.items()):
                    if event.namespace == moqt.voice_namespace(sid):
                        self._drop_upstream(peer, request_id, unsubscribe=True)
            elif isinstance(event, moqt.SubscribeNamespaceReceived):
                peer.session.reject_subscribe_namespace(
                    event.request_id,
                    moqt.SubscribeNamespaceErrorCode.NOT_SUPPORTED,
                    "this relay serves voice/<sid> tracks by name",
                )
            elif isinstance(event, moqt.SessionClosed):
                self._drop_peer(peer)

    def _authenticate(self, peer: _Peer, event: moqt.SetupCompleted) -> None:
        assert peer.link is not None
        raw = _token_parameter(event.parameters)
        if raw is None:
            peer.link.abort(_CODES.UNAUTHORIZED, "a bridge token is required")
            return
        claims = self._check_token(raw)
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
        if new_call and self.on_peer is not None:
            self.on_peer(claims.call_sid, peer.implementation)

    def _claims_for(
        self,
        peer: _Peer,
        namespace: moqt.Namespace,
        parameters: moqt.Parameters,
        allowed: Callable[[tokens.BridgeClaims], bool],
    ) -> tokens.BridgeClaims | _Refusal:
        """The grant that covers a request on ``namespace``: the request's own token
        if it carries one (held by the session from then on, unless the request is
        refused), else one the session already holds."""
        raw = _token_parameter(parameters)
        if raw is not None:
            claims = self._check_token(raw)
            if isinstance(claims, _Refusal):
                return claims
            if namespace != moqt.voice_namespace(claims.call_sid):
                return _Refusal(_CODES.UNAUTHORIZED, "this token does not cover that namespace")
            if not allowed(claims):
                # Refused: the token grants nothing, not even for later requests.
                return _Refusal(_CODES.UNAUTHORIZED, f"a {claims.role} token may not do that")
            self._grant(peer, claims)
            return claims
        held = [c for (sid, _), c in peer.grants.items() if namespace == moqt.voice_namespace(sid)]
        if not held:
            return _Refusal(_CODES.UNAUTHORIZED, "this token does not cover that namespace")
        for claims in held:
            if allowed(claims):
                return claims
        return _Refusal(_CODES.UNAUTHORIZED, f"a {held[0].role} token may not do that")

    def _on_publish_namespace(self, peer: _Peer, event: moqt.PublishNamespaceReceived) -> None:
        claims = self._claims_for(peer, event.namespace, event.parameters, lambda c: True)
        if isinstance(claims, _Refusal):
            peer.session.reject_publish_namespace(
                event.request_id, moqt.PublishNamespaceErrorCode.UNAUTHORIZED, claims.reason
            )
            return
        name = claims.role.publishes
        key = (claims.call_sid, name)
        if key not in peer.upstream.values():
            request_id = peer.session.subscribe(event.namespace, name.wire_name)
            peer.upstream[request_id] = key
            self._tracks.setdefault(key, _Track()).publishers.append((peer, request_id))
        peer.session.accept_publish_namespace(event.request_id)

    def _on_subscribe(self, peer: _Peer, event: moqt.SubscribeReceived) -> None:
        try:
            name = moqt.voice_track(event.track_name)
        except ValueError:
            name = None
        if name is None or len(event.namespace) != 2:
            peer.session.reject_subscribe(
                event.request_id, moqt.SubscribeErrorCode.TRACK_DOES_NOT_EXIST, "no such track"
            )
            return
        found = self._claims_for(
            peer, event.namespace, event.parameters, lambda c: c.may_subscribe(name)
        )
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
        track.subscribers[peer] = event.request_id
        self._resize_backlog(peer)

    def _resize_backlog(self, peer: _Peer) -> None:
        """A session may hold the backlog limit's bytes once per track it subscribes to."""
        if peer.link is not None:
            limit = self.backlog_limit
            tracks = max(1, len(peer.downstream))
            peer.link.backlog_limit = dataclasses.replace(limit, max_bytes=limit.max_bytes * tracks)

    def _forward(self, peer: _Peer, event: moqt.ObjectReceived) -> None:
        key = peer.upstream.get(event.request_id)
        track = self._tracks.get(key) if key else None
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
        for subscriber, request_id in list(track.subscribers.items()):
            try:
                subscriber.session.send_object(
                    request_id, group_id, event.payload, timestamp_us=event.timestamp_us
                )
            except moqt.MoqtUsageError:
                continue
            subscriber.kick()

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
            return
        track = self._tracks.get(key)
        if track is not None:
            track.publishers = [p for p in track.publishers if p != (peer, request_id)]
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
        peer.upstream.clear()
        peer.downstream.clear()

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
                    for request_id in list(peer.downstream):
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
        for request_id, key in list(peer.downstream.items()):
            if key[0] not in ended:
                continue
            del peer.downstream[request_id]
            track = self._tracks.get(key)
            if track is not None:
                track.subscribers.pop(peer, None)
            if live:
                with contextlib.suppress(moqt.MoqtUsageError):
                    session.publish_done(
                        request_id, moqt.PublishDoneCode.TRACK_ENDED, "the call ended"
                    )
        self._resize_backlog(peer)
        for request_id, key in list(peer.upstream.items()):
            if key[0] in ended:
                self._drop_upstream(peer, request_id, unsubscribe=True)
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


@dataclass(frozen=True)
class _Refusal:
    code: int
    reason: str


def _token_parameter(parameters: moqt.Parameters) -> bytes | None:
    raw = next((v for k, v in parameters if k == moqt.MessageParameter.AUTHORIZATION_TOKEN), None)
    return raw if isinstance(raw, bytes) else None


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
