"""Whole short streams (an audio frame each) without a stream object at either end:
``Connection.send_uni_stream_nowait`` and ``Connection.set_stream_callbacks(whole=...)``."""

from __future__ import annotations

import logging

import anyio
import pytest
from transport_helpers import KINDS, client, echo_handler, read_all, server

from clutchcall.transport import Connection, ReceiveStream, _quic
from clutchcall.transport.streams import SEND_CHUNK

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("kind", KINDS)
async def test_whole_streams_reach_the_handler_and_a_long_one_is_accepted(kind: str) -> None:
    count = 30
    long = bytes(range(256)) * 40  # several packets: it arrives in pieces
    go = anyio.Event()
    done = anyio.Event()
    sent_ids: list[int] = []

    async def handler(conn: Connection) -> None:
        await go.wait()
        for index in range(count):
            sent_ids.append(conn.send_uni_stream_nowait(b"frame %d" % index))
        stream = await conn.open_uni_stream()
        await stream.send(long)
        await stream.send_eof()
        await done.wait()

    whole: list[tuple[int, bytes]] = []
    all_whole = anyio.Event()

    def on_whole(stream_id: int, data: bytes) -> None:
        whole.append((stream_id, data))
        if len(whole) == count:
            all_whole.set()

    with anyio.fail_after(20):
        async with server(handler) as srv, client(kind, srv.port) as conn:
            conn.set_stream_callbacks(whole=on_whole)
            go.set()
            accepted = await conn.accept_stream()
            assert isinstance(accepted, ReceiveStream)
            assert await read_all(accepted) == long
            await all_whole.wait()
            with pytest.raises(anyio.WouldBlock):
                conn.accept_stream_nowait()  # the whole ones were never queued
            done.set()
    assert sorted(data for _, data in whole) == sorted(b"frame %d" % i for i in range(count))
    assert sorted(stream_id for stream_id, _ in whole) == sorted(sent_ids)
    assert len(set(sent_ids)) == count
    assert accepted.stream_id not in sent_ids


@pytest.mark.parametrize("kind", KINDS)
async def test_without_a_handler_whole_streams_are_accepted_as_before(kind: str) -> None:
    async def handler(conn: Connection) -> None:
        conn.send_uni_stream_nowait(b"one")
        conn.send_uni_stream_nowait(b"two")
        await anyio.sleep(5)

    with anyio.fail_after(20):
        async with server(handler) as srv, client(kind, srv.port) as conn:
            got = []
            for _ in range(2):
                stream = await conn.accept_stream()
                got.append(await read_all(stream))
    assert sorted(got) == [b"one", b"two"]


@pytest.mark.parametrize("kind", KINDS)
async def test_a_failing_handler_is_logged_and_later_streams_still_arrive(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    go = anyio.Event()
    second = anyio.Event()
    arrived: list[bytes] = []

    def on_whole(stream_id: int, data: bytes) -> None:
        if data == b"bad":
            raise RuntimeError("handler broke")
        arrived.append(data)
        second.set()

    async def handler(conn: Connection) -> None:
        await go.wait()
        conn.send_uni_stream_nowait(b"bad")
        await anyio.sleep(0.2)
        conn.send_uni_stream_nowait(b"good")
        await anyio.sleep(5)

    with caplog.at_level(logging.ERROR, logger="clutchcall.transport.connection"):
        with anyio.fail_after(20):
            async with server(handler) as srv, client(kind, srv.port) as conn:
                conn.set_stream_callbacks(whole=on_whole)
                go.set()
                await second.wait()
                assert not conn.closed
    assert arrived == [b"good"]
    assert "whole-stream callback failed" in caplog.text


@pytest.mark.parametrize("kind", KINDS)
async def test_send_uni_stream_nowait_refuses_what_it_cannot_send(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The peer's window is under test here, not the local bound on tracked streams.
    monkeypatch.setattr(_quic, "MAX_LIVE_STREAMS", 2 * _quic.UNI_STREAM_WINDOW)
    async with server(echo_handler) as srv, client(kind, srv.port) as conn:
        with pytest.raises(ValueError, match="more than one send chunk"):
            conn.send_uni_stream_nowait(bytes(SEND_CHUNK + 1))
        sent = 0
        with pytest.raises(anyio.WouldBlock):
            for _ in range(_quic.UNI_STREAM_WINDOW + 10):
                conn.send_uni_stream_nowait(b"x")
                sent += 1
        # The peer's limit, less the streams its echo may already have let go.
        assert _quic.UNI_STREAM_WINDOW - 10 <= sent <= _quic.UNI_STREAM_WINDOW
    with pytest.raises(anyio.ClosedResourceError):
        conn.send_uni_stream_nowait(b"after close")


@pytest.mark.parametrize("kind", KINDS)
async def test_new_streams_wait_while_max_live_streams_are_unacknowledged(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_quic, "MAX_LIVE_STREAMS", 16)
    received: list[bytes] = []
    all_in = anyio.Event()
    expected = 0

    def on_whole(stream_id: int, data: bytes) -> None:
        received.append(data)
        if len(received) == expected:
            all_in.set()

    async def handler(conn: Connection) -> None:
        conn.set_stream_callbacks(whole=on_whole)
        await anyio.sleep_forever()

    async with server(handler) as srv, client(kind, srv.port) as conn:
        base = len(conn._quic._streams)  # WebTransport's own streams
        sent = 0
        with pytest.raises(anyio.WouldBlock):
            for index in range(40):
                conn.send_uni_stream_nowait(b"frame %d" % index)
                sent += 1
        assert sent == 16 - base
        # A stream opened now waits until the peer acknowledges some, then goes.
        with anyio.fail_after(10):
            stream = await conn.open_uni_stream()
            assert len(conn._quic._streams) <= 16
            await stream.send(b"later")
            stream.send_eof_nowait()
            expected = sent + 1
            if len(received) < expected:
                await all_in.wait()
        assert sorted(received) == sorted([b"frame %d" % i for i in range(sent)] + [b"later"])


@pytest.mark.parametrize("kind", KINDS)
async def test_the_arrived_callback_takes_streams_as_packets_open_them(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    go = anyio.Event()
    later = anyio.Event()

    async def handler(conn: Connection) -> None:
        await go.wait()
        for index in range(3):
            stream = await conn.open_uni_stream()
            await stream.send(b"part %d" % index)  # no FIN: never a whole stream
        await later.wait()
        stream = await conn.open_uni_stream()
        await stream.send(b"after")
        await anyio.sleep(5)

    taken: list[ReceiveStream] = []
    three = anyio.Event()

    def take() -> None:
        while True:
            try:
                stream = conn.accept_stream_nowait()
            except anyio.WouldBlock:
                break
            assert isinstance(stream, ReceiveStream)
            taken.append(stream)
        if len(taken) >= 3:
            three.set()
        raise RuntimeError("arrival callback broke")  # logged; the connection goes on

    with caplog.at_level(logging.ERROR, logger="clutchcall.transport.connection"):
        with anyio.fail_after(20):
            async with server(handler) as srv, client(kind, srv.port) as conn:
                conn.set_stream_callbacks(arrived=take)
                go.set()
                await three.wait()
                parts = sorted([await stream.receive() for stream in taken])
                assert parts == [b"part 0", b"part 1", b"part 2"]
                conn.set_stream_callbacks()  # removed: streams wait for accept_stream
                later.set()
                last = await conn.accept_stream()
                assert isinstance(last, ReceiveStream)
                assert await last.receive() == b"after"
                assert len(taken) == 3
                assert not conn.closed
    assert "stream arrival callback failed" in caplog.text
