"""MoqtLink over a real QUIC connection: the paths audio frames rarely take.

Two sans-IO sessions (client and server) on loopback QUIC, each driven by a
MoqtLink: a subscriber leaving while a subgroup stream is still open (the
subscriber's side stops the stream, the publisher's side resets it), a stream
left open without FIN, and objects sent as QUIC datagrams afterwards.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
import anyio.abc
import pytest

from clutchcall import moqt, transport
from clutchcall.moqnet import MoqtLink

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]

NAMESPACE = ("voice", "CA1")


@functools.cache
def certificate() -> transport.SelfSignedCertificate:
    return transport.generate_self_signed()


@dataclass
class Side:
    session: moqt.Session
    events: list[moqt.Event] = field(default_factory=list)
    changed: anyio.Event = field(default_factory=anyio.Event)
    link: MoqtLink | None = None

    def on_events(self, events: list[moqt.Event]) -> None:
        self.events.extend(events)
        self.changed.set()
        self.changed = anyio.Event()

    def kick(self) -> None:
        assert self.link is not None
        self.link.kick()

    async def wait_for(self, condition: Callable[[], object], within: float = 5.0) -> None:
        with anyio.fail_after(within):
            while not condition():
                await self.changed.wait()

    def of(self, kind: type[moqt.Event]) -> list[moqt.Event]:
        return [e for e in self.events if isinstance(e, kind)]


@asynccontextmanager
async def linked() -> AsyncIterator[tuple[Side, Side]]:
    server = Side(moqt.Session(moqt.Role.SERVER))
    client = Side(moqt.Session(moqt.Role.CLIENT, path="/"))
    cert = certificate()

    async def handler(conn: transport.Connection) -> None:
        server.link = MoqtLink(conn, server.session, server.on_events)
        await server.link.run()

    async with (
        transport.serve(
            "127.0.0.1", 0, certificate=cert.cert_pem, private_key=cert.key_pem, handler=handler
        ) as srv,
        transport.connect(
            f"moqt://127.0.0.1:{srv.port}", cert_sha256=cert.fingerprint, timeout=5
        ) as conn,
        anyio.create_task_group() as tg,
    ):
        client.link = MoqtLink(conn, client.session, client.on_events)
        tg.start_soon(client.link.run, await conn.open_bidi_stream())
        await client.wait_for(lambda: client.of(moqt.SetupCompleted))
        await server.wait_for(lambda: server.of(moqt.SetupCompleted))
        yield server, client
        tg.cancel_scope.cancel()


async def subscribe(server: Side, client: Side, track: str) -> int:
    """Client subscribes to ``track``; the server accepts; returns the server's request id."""
    client.session.subscribe(NAMESPACE, track)
    client.kick()
    accepted_before = len(client.of(moqt.SubscribeAccepted))

    def received() -> list[moqt.SubscribeReceived]:
        return [
            e
            for e in server.events
            if isinstance(e, moqt.SubscribeReceived) and e.track_name == track.encode()
        ]

    await server.wait_for(received)
    request_id = received()[-1].request_id
    server.session.accept_subscribe(request_id)
    server.kick()
    await client.wait_for(lambda: len(client.of(moqt.SubscribeAccepted)) > accepted_before)
    return request_id


def payloads(side: Side) -> list[bytes]:
    return [e.payload for e in side.events if isinstance(e, moqt.ObjectReceived)]


async def test_leaving_mid_stream_stops_and_resets_it_and_datagrams_still_flow() -> None:
    async with linked() as (server, client):
        request_id = await subscribe(server, client, "audio")
        key = server.session.open_subgroup(request_id, group_id=0)
        assert key is not None
        server.session.write_object(key, 0, b"first")
        server.kick()  # no FIN: the stream stays open on both sides
        await client.wait_for(lambda: payloads(client) == [b"first"])
        assert client.link is not None and server.link is not None
        assert len(client.link._in) == 1  # a reader task holds the open stream

        # The subscriber leaves with the stream open: its side stops the stream,
        # the publisher's side resets it when it hears UNSUBSCRIBE.
        subscription = client.of(moqt.SubscribeAccepted)[0]
        assert isinstance(subscription, moqt.SubscribeAccepted)
        client.session.unsubscribe(subscription.request_id)
        client.kick()
        await server.wait_for(lambda: server.of(moqt.UnsubscribeReceived))
        with anyio.fail_after(5):
            while client.link._in or server.link._out:  # noqa: ASYNC110
                await anyio.sleep(0.01)
        assert server.session.write_object(key, 1, b"too late") is False

        # The session carries on: objects as datagrams on a new subscription.
        datagram_request = await subscribe(server, client, "audio-datagrams")
        for group in range(5):
            assert server.session.send_datagram(datagram_request, group, b"dgram-%d" % group)
        server.kick()
        await client.wait_for(lambda: len(payloads(client)) >= 6)
    assert payloads(client) == [b"first", *(b"dgram-%d" % g for g in range(5))]
