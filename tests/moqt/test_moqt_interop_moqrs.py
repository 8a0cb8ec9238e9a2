"""The sans-IO session against an independent peer: the moq-rs relay (Rust, from PyPI).

Two sessions connect to a local moq-rs relay over raw QUIC (ALPN ``moq-00``) through
a bare aioquic driver written here: one publishes voice/CA1/uplink, the other
subscribes through the relay and must receive every frame in order.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from clutchcall import moqt as M
from clutchcall.moqt.voice import AudioPublisher, AudioSubscriber, answer_unclaimed

pytest.importorskip("moq")
aioquic_asyncio = pytest.importorskip("aioquic.asyncio")

from aioquic.asyncio.protocol import QuicConnectionProtocol  # noqa: E402
from aioquic.quic.configuration import QuicConfiguration  # noqa: E402
from aioquic.quic.events import (  # noqa: E402
    ConnectionTerminated,
    DatagramFrameReceived,
    QuicEvent,
    StreamDataReceived,
    StreamReset,
)

RELAY = """
import asyncio, sys, moq
async def main():
    async with moq.Server(sys.argv[1], tls_generate=["localhost"]) as server:
        print(server.local_addr, flush=True)
        try:
            await asyncio.wait_for(server.serve(), float(sys.argv[2]))
        except asyncio.TimeoutError:
            pass
asyncio.run(main())
"""


class Driver(QuicConnectionProtocol):
    """Moves bytes between one aioquic connection and one MoQT session."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.session: M.Session | None = None
        self.control = -1
        self.streams: dict[int, int] = {}
        self.events: asyncio.Queue[M.Event] = asyncio.Queue()
        self.errors: list[M.MoqtProtocolError] = []

    def start(self) -> None:
        self.session = M.Session(M.Role.CLIENT, path="/")
        self.control = self._quic.get_next_available_stream_id()
        self.flush()

    def flush(self) -> None:
        session = self.session
        if session is None:
            return
        data = session.control_data_to_send()
        if data:
            self._quic.send_stream_data(self.control, data)
        for command in session.stream_commands_to_send():
            if isinstance(command, M.StreamWrite):
                if command.open:
                    self.streams[command.key] = self._quic.get_next_available_stream_id(
                        is_unidirectional=True
                    )
                self._quic.send_stream_data(self.streams[command.key], command.data, command.end)
            elif isinstance(command, M.StreamReset):
                self._quic.reset_stream(self.streams[command.key], command.error_code)
            else:
                assert isinstance(command.key, int)
                self._quic.stop_stream(command.key, command.error_code)
        for datagram in session.datagrams_to_send():
            self._quic.send_datagram_frame(datagram)
        self.transmit()

    def quic_event_received(self, event: QuicEvent) -> None:
        session = self.session
        if session is None:
            return
        events: list[M.Event] = []
        try:
            if isinstance(event, StreamDataReceived):
                if event.stream_id == self.control:
                    events = session.receive_control(event.data)
                else:
                    events = session.receive_stream(event.stream_id, event.data, event.end_stream)
            elif isinstance(event, DatagramFrameReceived):
                events = session.receive_datagram(event.data)
            elif isinstance(event, StreamReset):
                events = session.receive_stream_reset(event.stream_id, event.error_code)
            elif isinstance(event, ConnectionTerminated):
                events = session.connection_lost(event.error_code, event.reason_phrase)
        except M.MoqtProtocolError as exc:
            self.errors.append(exc)
            self._quic.close(exc.error_code, reason_phrase=exc.reason)
        for item in events:
            self.events.put_nowait(item)
        self.flush()


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@asynccontextmanager
async def dial(port: int) -> AsyncIterator[Driver]:
    config = QuicConfiguration(
        alpn_protocols=[M.ALPN],
        is_client=True,
        verify_mode=ssl.CERT_NONE,
        server_name="localhost",
        max_datagram_frame_size=65536,
    )
    async with aioquic_asyncio.connect(
        "127.0.0.1", port, configuration=config, create_protocol=Driver
    ) as protocol:
        assert isinstance(protocol, Driver)
        protocol.start()
        yield protocol


async def next_event(driver: Driver, kind: type[M.Event]) -> M.Event:
    while True:
        event = await asyncio.wait_for(driver.events.get(), 5)
        assert driver.session is not None
        if isinstance(event, kind):
            return event
        if answer_unclaimed(driver.session, event):
            driver.flush()


async def voice_through_relay(port: int, use_datagrams: bool) -> list[M.ObjectReceived]:
    async with dial(port) as alice, dial(port) as bob:
        assert alice.session is not None and bob.session is not None
        await next_event(alice, M.SetupCompleted)
        setup = await next_event(bob, M.SetupCompleted)
        assert isinstance(setup, M.SetupCompleted) and setup.version == M.DRAFT_14

        publisher = AudioPublisher(alice.session, "CA1", M.UPLINK, use_datagrams=use_datagrams)
        publisher.start()
        alice.flush()
        await next_event(alice, M.PublishNamespaceAccepted)

        subscriber = AudioSubscriber(bob.session, "CA1", M.UPLINK)
        subscriber.start()
        bob.flush()
        subscribe = await next_event(alice, M.SubscribeReceived)
        assert publisher.handle(subscribe)
        alice.flush()
        await next_event(bob, M.SubscribeAccepted)

        for n in range(30):
            assert publisher.send_frame(b"frame-%d" % n, 20_000 * n) == 1
            alice.flush()
            await asyncio.sleep(0.005)
        frames: list[M.ObjectReceived] = []
        while len(frames) < 30:
            event = await next_event(bob, M.ObjectReceived)
            frame = subscriber.handle(event)
            assert frame is not None
            frames.append(frame)

        subscriber.stop()
        bob.flush()
        unsubscribed = await next_event(alice, M.UnsubscribeReceived)
        assert publisher.handle(unsubscribed)
        assert alice.errors == bob.errors == []
        return frames


@pytest.mark.parametrize("use_datagrams", [False, True], ids=["streams", "datagrams"])
def test_voice_through_the_moq_rs_relay(use_datagrams: bool) -> None:
    port = free_udp_port()
    relay = subprocess.Popen(
        [sys.executable, "-c", RELAY, f"127.0.0.1:{port}", "30"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "RUST_LOG": "error"},
    )
    try:
        assert relay.stdout is not None
        assert relay.stdout.readline().strip()
        frames = asyncio.run(asyncio.wait_for(voice_through_relay(port, use_datagrams), 20))
    finally:
        relay.terminate()
        relay.wait(10)
        if relay.stdout is not None:
            relay.stdout.close()
    assert [f.payload for f in frames] == [b"frame-%d" % n for n in range(30)]
    assert [f.group_id for f in frames] == list(range(30))
    # moq-rs stamps objects with its own clock on draft-14, so only monotonicity holds.
    stamps = [f.timestamp_us for f in frames]
    assert all(s is not None for s in stamps)
    assert stamps == sorted(stamps)  # type: ignore[type-var]
