"""The UDP socket fast paths: sending without a scheduling round, reading in batches."""

from __future__ import annotations

import socket

import anyio
import pytest
import sniffio
from transport_helpers import KINDS, client, server

from clutchcall.transport import Connection, ReceiveStream, SendStream
from clutchcall.transport._sockets import RECEIVE_BATCH, SocketReceiver
from clutchcall.transport.backend import CallbackReceiver, direct_sender

pytestmark = pytest.mark.anyio


async def test_asyncio_sockets_get_the_direct_send_path() -> None:
    async with await anyio.create_udp_socket(local_host="127.0.0.1") as sink:
        port = sink.extra(anyio.abc.SocketAttribute.local_port)
        async with await anyio.create_udp_socket(local_host="127.0.0.1") as sock:
            sender = direct_sender(sock)
            if sniffio.current_async_library() != "asyncio":
                assert sender is None  # trio: every send goes through anyio
                return
            assert sender is not None
            assert sender(b"direct", ("127.0.0.1", port)) is True
            with anyio.fail_after(5):
                data, _ = await sink.receive()
    assert data == b"direct"


async def test_a_burst_is_read_in_one_wake_up() -> None:
    count = 40
    async with await anyio.create_udp_socket(local_host="127.0.0.1") as sock:
        port = sock.extra(anyio.abc.SocketAttribute.local_port)
        # A plain socket sends the burst without yielding, so that the event loop
        # has not read any of it before the first receive.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            for index in range(count):
                sender.sendto(b"%d" % index, ("127.0.0.1", port))
        receiver = SocketReceiver(sock)
        try:
            with anyio.fail_after(5):
                first, _ = await sock.receive()
            rest = []
            while (item := receiver.receive_nowait()) is not None:
                rest.append(item[0])
        finally:
            receiver.close()
        assert receiver.receive_nowait() is None  # closed: nothing, no error
    assert count - 1 <= RECEIVE_BATCH
    assert [first, *rest] == [b"%d" % index for index in range(count)]


async def test_asyncio_hands_datagrams_to_a_callback_from_the_read_callback() -> None:
    count = 40
    got: list[tuple[bytes, object]] = []
    all_in = anyio.Event()

    def handle(data: bytes, addr: object) -> None:
        got.append((data, addr))
        if len(got) == count:
            all_in.set()

    async with await anyio.create_udp_socket(local_host="127.0.0.1") as sock:
        callbacks = CallbackReceiver.install(sock, handle, 64)
        if sniffio.current_async_library() != "asyncio":
            assert callbacks is None  # trio: a reader task's loop
            return
        assert callbacks is not None
        port = sock.extra(anyio.abc.SocketAttribute.local_port)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            sender.bind(("127.0.0.1", 0))
            for index in range(count):
                sender.sendto(b"%d" % index, ("127.0.0.1", port))
            source = sender.getsockname()
        async with anyio.create_task_group() as tg:
            tg.start_soon(callbacks.wait_closed)
            with anyio.fail_after(5):
                await all_in.wait()
            await sock.aclose()  # wait_closed returns: the task group ends
    assert [data for data, _ in got] == [b"%d" % index for index in range(count)]
    assert {addr for _, addr in got} == {source}


async def test_a_cancelled_callback_receiver_gives_the_socket_back() -> None:
    async with await anyio.create_udp_socket(local_host="127.0.0.1") as sock:
        callbacks = CallbackReceiver.install(sock, lambda data, addr: None, 64)
        if callbacks is None:
            return  # trio: nothing to give back
        with anyio.move_on_after(0.01):
            await callbacks.wait_closed()
        port = sock.extra(anyio.abc.SocketAttribute.local_port)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            sender.sendto(b"again", ("127.0.0.1", port))
        with anyio.fail_after(5):
            data, _ = await sock.receive()  # anyio's own receive works again
    assert data == b"again"


@pytest.mark.parametrize("kind", KINDS)
async def test_accept_stream_nowait_takes_every_queued_stream(kind: str) -> None:
    count = 20
    arrived = anyio.Event()

    async def handler(conn: Connection) -> None:
        for index in range(count):
            stream = await conn.open_uni_stream()
            assert isinstance(stream, SendStream)
            await stream.send(b"%d" % index)
            await stream.send_eof()
        await arrived.wait()

    with anyio.fail_after(20):
        async with server(handler) as srv, client(kind, srv.port) as conn:
            first = await conn.accept_stream()
            streams = [first]
            while len(streams) < count:
                try:
                    streams.append(conn.accept_stream_nowait())
                except anyio.WouldBlock:
                    await anyio.sleep(0.01)
            with pytest.raises(anyio.WouldBlock):
                conn.accept_stream_nowait()
            payloads = []
            for stream in streams:
                assert isinstance(stream, ReceiveStream)
                payloads.append(await stream.receive())
            arrived.set()
        with pytest.raises(anyio.ClosedResourceError):
            conn.accept_stream_nowait()
    assert payloads == [b"%d" % index for index in range(count)]
