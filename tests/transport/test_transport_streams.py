"""Streams and datagrams over raw QUIC and WebTransport, client and server sides."""

from __future__ import annotations

import hashlib
import os

import anyio
import pytest
from transport_helpers import KINDS, BlackholeProxy, client, echo_handler, read_all, server

from clutchcall.transport import (
    Connection,
    ConnectionKind,
    ConnectionLost,
    ReceiveStream,
    SendStream,
    StopSending,
    Stream,
    StreamReset,
    _quic,
)

pytestmark = pytest.mark.anyio


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_bidi_echo(kind: str) -> None:
    with anyio.fail_after(10):
        async with server(echo_handler) as srv, client(kind, srv.port) as conn:
            expected = ConnectionKind.QUIC if kind == "quic" else ConnectionKind.WEBTRANSPORT
            assert conn.kind is expected
            assert conn.alpn == ("moq-00" if kind == "quic" else "h3")
            stream = await conn.open_bidi_stream()
            await stream.send(b"hello ")
            await stream.send(b"world")
            await stream.send_eof()
            assert await read_all(stream) == b"hello world"


async def test_server_opened_bidi_stream_receives_the_clients_answer(kind: str) -> None:
    """The server opens the stream: its peer's data must reach it (aioquic WT bug)."""
    answers: list[bytes] = []
    answered = anyio.Event()

    async def handler(conn: Connection) -> None:
        stream = await conn.open_bidi_stream()
        await stream.send(b"ping")
        await stream.send_eof()
        answers.append(await read_all(stream))
        answered.set()

    with anyio.fail_after(10):
        async with server(handler) as srv, client(kind, srv.port) as conn:
            stream = await conn.accept_stream()
            assert isinstance(stream, Stream)
            assert await read_all(stream) == b"ping"
            await stream.send(b"pong")
            await stream.send_eof()
            await answered.wait()
    assert answers == [b"pong"]


async def test_large_transfer_is_intact_both_ways(kind: str) -> None:
    payload = os.urandom(1 << 20)
    with anyio.fail_after(30):
        async with server(echo_handler) as srv, client(kind, srv.port) as conn:
            stream = await conn.open_bidi_stream()
            received = bytearray()

            async def reader() -> None:
                received.extend(await read_all(stream))

            async with anyio.create_task_group() as tg:
                tg.start_soon(reader)
                await stream.send(payload)
                await stream.send_eof()
    assert len(received) == len(payload)
    assert hashlib.sha256(received).digest() == hashlib.sha256(payload).digest()


async def test_many_uni_streams_both_ways(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """More streams than the peer's stream limit, in both directions: opening waits
    for credit and carries on."""
    monkeypatch.setattr(_quic, "UNI_STREAM_WINDOW", 128)
    count = 150
    with anyio.fail_after(30):
        async with server(echo_handler) as srv, client(kind, srv.port) as conn:
            for index in range(count):
                stream = await conn.open_uni_stream()
                assert isinstance(stream, SendStream)
                await stream.send(f"message {index}".encode())
                await stream.send_eof()
            replies = set()
            for _ in range(count):
                reply = await conn.accept_stream()
                assert isinstance(reply, ReceiveStream)
                replies.add(await read_all(reply))
    assert replies == {f"message {index}".encode() for index in range(count)}


async def test_datagrams_round_trip(kind: str) -> None:
    with anyio.fail_after(10):
        async with server(echo_handler) as srv, client(kind, srv.port) as conn:
            assert conn.max_datagram_size >= 1000
            with pytest.raises(ValueError, match="exceeds"):
                conn.send_datagram(b"x" * (conn.max_datagram_size + 1))
            wanted = {f"datagram {index}".encode() for index in range(20)}
            seen: set[bytes] = set()
            # Datagrams are unreliable: resend what has not come back yet.
            while seen != wanted:
                for item in sorted(wanted - seen):
                    conn.send_datagram(item)
                with anyio.move_on_after(0.5):
                    while seen != wanted:
                        seen.add(await conn.receive_datagram())
            big = b"y" * conn.max_datagram_size
            conn.send_datagram(big)
            while await conn.receive_datagram() != big:
                pass


async def test_client_close_reaches_the_server_handler(kind: str) -> None:
    seen: list[BaseException] = []
    handler_done = anyio.Event()

    async def handler(conn: Connection) -> None:
        try:
            await conn.accept_stream()
        except anyio.BrokenResourceError as exc:
            seen.append(exc)
        handler_done.set()

    with anyio.fail_after(10):
        async with server(handler) as srv:
            async with client(kind, srv.port) as conn:
                await conn.aclose(7, "bye")
                assert conn.closed
                with pytest.raises(anyio.ClosedResourceError):
                    await conn.open_bidi_stream()
                with pytest.raises(anyio.ClosedResourceError):
                    await conn.accept_stream()
            await handler_done.wait()
    cause = seen[0].__cause__
    assert isinstance(cause, ConnectionLost)
    assert cause.by_peer
    assert (cause.code, cause.reason) == (7, "bye")


async def test_server_close_breaks_pending_client_operations(kind: str) -> None:
    async def handler(conn: Connection) -> None:
        stream = await conn.accept_stream()
        assert isinstance(stream, Stream)
        await stream.receive()
        await conn.aclose(3, "done")

    with anyio.fail_after(10):
        async with server(handler) as srv, client(kind, srv.port) as conn:
            stream = await conn.open_bidi_stream()
            await stream.send(b"go")
            with pytest.raises(anyio.BrokenResourceError) as info:
                await stream.receive()
            with pytest.raises(anyio.BrokenResourceError):
                await conn.receive_datagram()
            with pytest.raises(anyio.BrokenResourceError):
                await stream.send(b"more")
    cause = info.value.__cause__
    assert isinstance(cause, ConnectionLost)
    assert cause.by_peer
    assert cause.code == 3
    assert conn.close_reason is cause


async def test_vanished_peer_gives_broken_resource_not_a_hang(kind: str) -> None:
    async with server(echo_handler) as srv, BlackholeProxy(srv.port).running() as proxy:
        with anyio.fail_after(15):
            async with client(kind, proxy.port, idle_timeout=1.0) as conn:
                stream = await conn.open_bidi_stream()
                await stream.send(b"before")
                proxy.dropping = True
                with pytest.raises(anyio.BrokenResourceError) as info:
                    await stream.receive()
                    await stream.receive()
                with pytest.raises(anyio.BrokenResourceError):
                    await conn.accept_stream()
    cause = info.value.__cause__
    assert isinstance(cause, ConnectionLost)
    assert not cause.by_peer


async def test_keepalive_holds_a_quiet_connection_open(kind: str) -> None:
    with anyio.fail_after(10):
        async with server(echo_handler) as srv:
            async with client(kind, srv.port, idle_timeout=0.6) as conn:
                await anyio.sleep(1.5)
                stream = await conn.open_bidi_stream()
                await stream.send(b"awake")
                await stream.send_eof()
                assert await read_all(stream) == b"awake"
            async with client(kind, srv.port, idle_timeout=0.6, keepalive=False) as conn:
                with pytest.raises(anyio.BrokenResourceError):
                    await conn.receive_datagram()
                assert conn.close_reason is not None
                assert "Idle timeout" in conn.close_reason.reason


async def test_reset_and_stop_sending_carry_their_codes(kind: str) -> None:
    reset_codes: list[int] = []

    async def handler(conn: Connection) -> None:
        first = await conn.accept_stream()
        assert isinstance(first, Stream)
        try:
            await read_all(first)
        except anyio.BrokenResourceError as exc:
            assert isinstance(exc.__cause__, StreamReset)
            reset_codes.append(exc.__cause__.code)
        second = await conn.accept_stream()
        assert isinstance(second, Stream)
        second.stop_sending(6)
        await conn.accept_stream()

    with anyio.fail_after(10):
        async with server(handler) as srv, client(kind, srv.port) as conn:
            first = await conn.open_bidi_stream()
            await first.send(b"partial")
            await anyio.sleep(0.05)
            first.reset(5)
            with pytest.raises(anyio.ClosedResourceError):
                await first.send(b"after reset")
            second = await conn.open_bidi_stream()
            with pytest.raises(anyio.BrokenResourceError) as info:
                while True:
                    await second.send(b"x" * 1000)
                    await anyio.sleep(0.01)
    assert reset_codes == [5]
    assert isinstance(info.value.__cause__, StopSending)
    assert info.value.__cause__.code == 6


async def test_a_reader_that_stops_reading_stalls_the_sender(kind: str) -> None:
    """Flow control follows what the application reads, so memory stays bounded."""
    release = anyio.Event()
    received: list[int] = []

    async def handler(conn: Connection) -> None:
        stream = await conn.accept_stream()
        assert isinstance(stream, Stream)
        await release.wait()
        received.append(len(await read_all(stream)))
        await stream.send(b"ok")
        await stream.send_eof()

    total = 6 << 20
    chunk = b"z" * 65536
    sent = 0
    with anyio.fail_after(30):
        async with server(handler) as srv, client(kind, srv.port) as conn:
            stream = await conn.open_bidi_stream()

            async def writer() -> None:
                nonlocal sent
                while sent < total:
                    await stream.send(chunk)
                    sent += len(chunk)
                await stream.send_eof()

            async with anyio.create_task_group() as tg:
                tg.start_soon(writer)
                await anyio.sleep(1.0)
                stalled_at = sent
                release.set()
            assert await read_all(stream) == b"ok"
    # One stream window (1 MiB) at the receiver plus the sender's backlog limit.
    assert stalled_at <= 2 << 20
    assert received == [total]


async def test_a_peer_may_open_a_wide_window_of_streams_at_once(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each audio frame is a stream: a busy connection needs more than aioquic's 128."""
    # The peer's window is under test, not the local bound on tracked streams.
    monkeypatch.setattr(_quic, "MAX_LIVE_STREAMS", 2 * _quic.UNI_STREAM_WINDOW)
    async with server(echo_handler) as srv, client(kind, srv.port) as conn:
        opened = [conn.open_uni_stream_nowait() for _ in range(_quic.UNI_STREAM_WINDOW - 10)]
        with pytest.raises(anyio.WouldBlock):
            for _ in range(20):
                opened.append(conn.open_uni_stream_nowait())
    assert len(opened) >= _quic.UNI_STREAM_WINDOW - 10
