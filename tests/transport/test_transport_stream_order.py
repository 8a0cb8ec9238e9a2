"""Peer unidirectional streams surface with their data, in arrival order.

``ReceiveStream.receive_nowait`` reads what is already there without waiting, and
a WebTransport stream is not handed out while only its header has arrived: a
reader can then consume complete streams in the order they arrived.
"""

from __future__ import annotations

import anyio
import pytest
from transport_helpers import KINDS, client, server

from clutchcall.transport import Connection, ReceiveStream

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]


@pytest.mark.parametrize("kind", KINDS)
async def test_streams_are_accepted_with_data_and_in_order(kind: str) -> None:
    received: list[bytes] = []
    done = anyio.Event()

    async def handler(conn: Connection) -> None:
        while len(received) < 20:
            stream = await conn.accept_stream()
            assert isinstance(stream, ReceiveStream)
            # A stream is handed out with its first payload, never header-only.
            chunks = [stream.receive_nowait()]
            with anyio.fail_after(5):
                while True:
                    try:
                        chunks.append(stream.receive_nowait())
                    except anyio.WouldBlock:
                        await anyio.sleep(0.001)
                    except anyio.EndOfStream:
                        break
            received.append(b"".join(chunks))
        done.set()

    with anyio.fail_after(20):
        async with server(handler) as srv, client(kind, srv.port) as conn:
            for n in range(20):
                stream = await conn.open_uni_stream()
                await stream.send(b"frame-%d" % n)
                await stream.send_eof()
            await done.wait()
    assert received == [b"frame-%d" % n for n in range(20)]


async def test_receive_nowait_would_block_until_data_arrives() -> None:
    got: list[object] = []
    ready = anyio.Event()
    release = anyio.Event()

    async def handler(conn: Connection) -> None:
        stream = await conn.accept_stream()
        assert isinstance(stream, ReceiveStream)
        got.append(stream.receive_nowait())
        try:
            stream.receive_nowait()
        except anyio.WouldBlock:
            got.append("would block")
        ready.set()
        await release.wait()
        await anyio.sleep(0.2)
        got.append(stream.receive_nowait())

    with anyio.fail_after(20):
        async with server(handler) as srv, client("quic", srv.port) as conn:
            stream = await conn.open_uni_stream()
            await stream.send(b"first")
            await ready.wait()
            await stream.send(b"second")
            release.set()
            await anyio.sleep(0.5)
    assert got == [b"first", "would block", b"second"]
