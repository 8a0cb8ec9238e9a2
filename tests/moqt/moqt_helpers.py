"""Shared pieces for the MoQT tests: hypothesis strategies and an in-memory link."""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import strategies as st

from clutchcall.moqt import messages as m
from clutchcall.moqt.data import (
    FetchObject,
    ObjectDatagram,
    ObjectStatus,
    SubgroupHeader,
    SubgroupIdMode,
)
from clutchcall.moqt.events import Event, StopSending, StreamReset, StreamWrite
from clutchcall.moqt.session import Role, Session
from clutchcall.moqt.wire import MAX_VARINT, Location

# --- Strategies ------------------------------------------------------------------------

varints = st.one_of(
    st.integers(0, 63),
    st.integers(0, 16383),
    st.integers(0, (1 << 30) - 1),
    st.integers(0, MAX_VARINT),
)
u8 = st.integers(0, 255)
namespaces = st.lists(st.binary(max_size=16), min_size=1, max_size=32).map(tuple)
prefixes = st.lists(st.binary(max_size=16), min_size=0, max_size=32).map(tuple)
track_names = st.binary(max_size=64)
reasons = st.text(max_size=40)
locations = st.builds(Location, varints, varints)
key_value_pairs = st.one_of(
    st.tuples(varints.map(lambda v: v & ~1), varints),
    st.tuples(varints.map(lambda v: v | 1), st.binary(max_size=40)),
)
parameters = st.lists(key_value_pairs, max_size=4).map(tuple)
group_orders = st.integers(0, 2)
response_orders = st.integers(1, 2)
flags = st.integers(0, 1)


@st.composite
def filters(draw: st.DrawFn) -> tuple[int, Location | None, int | None]:
    kind = draw(st.sampled_from(list(m.FilterType)))
    if kind in (m.FilterType.NEXT_GROUP_START, m.FilterType.LARGEST_OBJECT):
        return int(kind), None, None
    start = draw(locations)
    if kind == m.FilterType.ABSOLUTE_START:
        return int(kind), start, None
    end = draw(st.integers(start.group, MAX_VARINT))
    return int(kind), start, end


@st.composite
def subscribe_like(draw: st.DrawFn, cls: type[m._SubscribeBody]) -> m.Message:
    kind, start, end = draw(filters())
    return cls(
        draw(varints),
        draw(namespaces),
        draw(track_names),
        draw(u8),
        draw(group_orders),
        draw(flags),
        kind,
        start,
        end,
        draw(parameters),
    )


@st.composite
def subscribe_updates(draw: st.DrawFn) -> m.Message:
    start = draw(locations)
    # End Group is the end group plus one: a start in the last group leaves only 0.
    ends = st.just(0)
    if start.group < MAX_VARINT:
        ends = ends | st.integers(start.group + 1, MAX_VARINT)
    end = draw(ends)
    return m.SubscribeUpdate(
        draw(varints), draw(varints), start, end, draw(u8), draw(flags), draw(parameters)
    )


@st.composite
def publish_oks(draw: st.DrawFn) -> m.Message:
    kind, start, end = draw(filters())
    return m.PublishOk(
        draw(varints),
        draw(flags),
        draw(u8),
        draw(response_orders),
        kind,
        start,
        end,
        draw(parameters),
    )


@st.composite
def fetches(draw: st.DrawFn) -> m.Message:
    if draw(st.booleans()):
        return m.Fetch(
            draw(varints),
            draw(u8),
            draw(group_orders),
            m.FetchType.STANDALONE,
            draw(namespaces),
            draw(track_names),
            draw(locations),
            draw(locations),
            parameters=draw(parameters),
        )
    return m.Fetch(
        draw(varints),
        draw(u8),
        draw(group_orders),
        draw(st.sampled_from([m.FetchType.RELATIVE_JOINING, m.FetchType.ABSOLUTE_JOINING])),
        joining_request_id=draw(varints),
        joining_start=draw(varints),
        parameters=draw(parameters),
    )


def _errors(cls: type[m._RequestError]) -> st.SearchStrategy[m.Message]:
    return st.builds(cls, varints, varints, reasons)


def subscribe_ok_like(cls: type[m._SubscribeOkBody]) -> st.SearchStrategy[m.Message]:
    return st.builds(
        cls, varints, varints, varints, response_orders, st.none() | locations, parameters
    )


MESSAGE_STRATEGIES: dict[type[m.Message], st.SearchStrategy[m.Message]] = {
    m.ClientSetup: st.builds(m.ClientSetup, st.lists(varints, max_size=4).map(tuple), parameters),
    m.ServerSetup: st.builds(m.ServerSetup, varints, parameters),
    m.Goaway: st.builds(m.Goaway, st.binary(max_size=100)),
    m.MaxRequestId: st.builds(m.MaxRequestId, varints),
    m.RequestsBlocked: st.builds(m.RequestsBlocked, varints),
    m.Subscribe: subscribe_like(m.Subscribe),
    m.TrackStatus: subscribe_like(m.TrackStatus),
    m.SubscribeOk: subscribe_ok_like(m.SubscribeOk),
    m.TrackStatusOk: subscribe_ok_like(m.TrackStatusOk),
    m.SubscribeError: _errors(m.SubscribeError),
    m.TrackStatusError: _errors(m.TrackStatusError),
    m.SubscribeUpdate: subscribe_updates(),
    m.Unsubscribe: st.builds(m.Unsubscribe, varints),
    m.PublishDone: st.builds(m.PublishDone, varints, varints, varints, reasons),
    m.Publish: st.builds(
        m.Publish,
        varints,
        namespaces,
        track_names,
        varints,
        response_orders,
        st.none() | locations,
        flags,
        parameters,
    ),
    m.PublishOk: publish_oks(),
    m.PublishError: _errors(m.PublishError),
    m.Fetch: fetches(),
    m.FetchOk: st.builds(m.FetchOk, varints, response_orders, flags, locations, parameters),
    m.FetchError: _errors(m.FetchError),
    m.FetchCancel: st.builds(m.FetchCancel, varints),
    m.PublishNamespace: st.builds(m.PublishNamespace, varints, namespaces, parameters),
    m.PublishNamespaceOk: st.builds(m.PublishNamespaceOk, varints),
    m.PublishNamespaceError: _errors(m.PublishNamespaceError),
    m.PublishNamespaceDone: st.builds(m.PublishNamespaceDone, namespaces),
    m.PublishNamespaceCancel: st.builds(m.PublishNamespaceCancel, namespaces, varints, reasons),
    m.SubscribeNamespace: st.builds(m.SubscribeNamespace, varints, prefixes, parameters),
    m.SubscribeNamespaceOk: st.builds(m.SubscribeNamespaceOk, varints),
    m.SubscribeNamespaceError: _errors(m.SubscribeNamespaceError),
    m.UnsubscribeNamespace: st.builds(m.UnsubscribeNamespace, prefixes),
}

any_message = st.one_of(*MESSAGE_STRATEGIES.values())

statuses = st.sampled_from([int(s) for s in ObjectStatus])
extension_blocks = st.lists(key_value_pairs, max_size=3).map(tuple)


@st.composite
def subgroup_headers(draw: st.DrawFn) -> SubgroupHeader:
    mode = draw(st.sampled_from(list(SubgroupIdMode)))
    return SubgroupHeader(
        draw(varints),
        draw(varints),
        draw(u8),
        draw(varints) if mode == SubgroupIdMode.EXPLICIT else 0,
        mode,
        draw(st.booleans()),
        draw(st.booleans()),
    )


@st.composite
def object_datagrams(draw: st.DrawFn) -> ObjectDatagram:
    extensions = draw(extension_blocks)
    if draw(st.booleans()):
        status = draw(statuses)
        if status == ObjectStatus.DOES_NOT_EXIST:
            extensions = ()
        return ObjectDatagram(
            draw(varints), draw(varints), draw(varints), draw(u8), b"", status, extensions
        )
    return ObjectDatagram(
        draw(varints),
        draw(varints),
        draw(varints),
        draw(u8),
        draw(st.binary(max_size=64)),
        None,
        extensions,
        draw(st.booleans()),
    )


@st.composite
def objects(draw: st.DrawFn) -> tuple[int, bytes, int, tuple[tuple[int, int | bytes], ...]]:
    """(object id gap, payload, status, extensions) for one stream object."""
    gap = draw(st.integers(0, 3))
    if draw(st.booleans()):
        status = draw(statuses)
        extensions = () if status == ObjectStatus.DOES_NOT_EXIST else draw(extension_blocks)
        return gap, b"", status, extensions
    return gap, draw(st.binary(min_size=1, max_size=64)), 0, draw(extension_blocks)


@st.composite
def fetch_objects(draw: st.DrawFn) -> FetchObject:
    _, payload, status, extensions = draw(objects())
    return FetchObject(
        draw(varints), draw(varints), draw(varints), draw(u8), payload, status, extensions
    )


def splits(data: bytes, cuts: list[int]) -> list[bytes]:
    """Cut ``data`` at the given offsets (any order, any range)."""
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces = []
    previous = 0
    for point in [*points, len(data)]:
        pieces.append(data[previous:point])
        previous = point
    return pieces


# --- Two sessions back to back ----------------------------------------------------------


@dataclass
class Peer:
    session: Session
    events: list[Event] = field(default_factory=list)
    stopped: set[object] = field(default_factory=set)
    resets: list[StreamReset] = field(default_factory=list)


class Link:
    """Client and server sessions wired back to back in memory.

    ``pump`` moves everything queued on either side to the other until both are
    quiet, collecting events per side.
    """

    def __init__(self, client: Session | None = None, server: Session | None = None) -> None:
        self.client = Peer(client or Session(Role.CLIENT, path="/"))
        self.server = Peer(server or Session(Role.SERVER))

    def pump(self) -> None:
        busy = True
        while busy:
            busy = self._move(self.client, self.server, "c")
            busy = self._move(self.server, self.client, "s") or busy

    def _move(self, src: Peer, dst: Peer, tag: str) -> bool:
        moved = False
        control = src.session.control_data_to_send()
        if control:
            moved = True
            dst.events += dst.session.receive_control(control)
        for command in src.session.stream_commands_to_send():
            moved = True
            if isinstance(command, StreamWrite):
                key = (tag, command.key)
                if key not in dst.stopped:
                    dst.events += dst.session.receive_stream(key, command.data, command.end)
            elif isinstance(command, StreamReset):
                src.resets.append(command)
                dst.events += dst.session.receive_stream_reset(
                    (tag, command.key), command.error_code
                )
            else:
                assert isinstance(command, StopSending)
                src.stopped.add(command.key)
        for datagram in src.session.datagrams_to_send():
            moved = True
            dst.events += dst.session.receive_datagram(datagram)
        return moved

    def take(self, side: Peer) -> list[Event]:
        events, side.events = side.events, []
        return events


def established() -> Link:
    link = Link()
    link.pump()
    link.client.events.clear()
    link.server.events.clear()
    return link
