"""The server: both protocols on one socket, WebTransport paths, robustness, cleanup."""

from __future__ import annotations

import contextlib
import gc
import os
import socket

import anyio
import anyio.abc
import anyio.lowlevel
import pytest
from aioquic.buffer import encode_uint_var
from transport_helpers import KINDS, client, echo_handler, read_all, server

from clutchcall import transport
from clutchcall.transport import (
    Connection,
    ConnectionKind,
    ConnectionLost,
    ConnectTimeout,
    InvalidURL,
    WebTransportRejected,
)

pytestmark = pytest.mark.anyio


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def echo_once(conn: Connection, payload: bytes = b"ping") -> bytes:
    stream = await conn.open_bidi_stream()
    await stream.send(payload)
    await stream.send_eof()
    return await read_all(stream)


async def test_both_protocols_share_one_socket() -> None:
    kinds: list[tuple[ConnectionKind, str | None]] = []

    async def handler(conn: Connection) -> None:
        kinds.append((conn.kind, conn.path))
        await echo_handler(conn)

    with anyio.fail_after(10):
        async with (
            server(handler) as srv,
            client("quic", srv.port) as raw,
            client("webtransport", srv.port) as wt,
        ):
            assert await echo_once(raw) == b"ping"
            assert await echo_once(wt) == b"ping"
    assert sorted(kinds, key=str) == [
        (ConnectionKind.QUIC, None),
        (ConnectionKind.WEBTRANSPORT, "/moq"),
    ]


async def test_webtransport_handler_sees_path_and_request_headers() -> None:
    seen: list[tuple[str | None, dict[bytes, bytes]]] = []

    async def handler(conn: Connection) -> None:
        seen.append((conn.path, dict(conn.request_headers)))

    with anyio.fail_after(10):
        async with (
            server(handler, wt_paths=lambda path: path.startswith("/moq")) as srv,
            client(
                "webtransport", srv.port, path="/moq?room=1", headers=[(b"x-token", b"abc")]
            ) as conn,
        ):
            with pytest.raises(anyio.BrokenResourceError):
                await conn.accept_stream()
    path, headers = seen[0]
    assert path == "/moq?room=1"
    assert headers[b":protocol"] == b"webtransport"
    assert headers[b"x-token"] == b"abc"


async def test_unknown_webtransport_path_is_rejected_with_404() -> None:
    handled: list[Connection] = []

    async def handler(conn: Connection) -> None:
        handled.append(conn)

    with anyio.fail_after(10):
        async with server(handler) as srv:
            with pytest.raises(WebTransportRejected) as info:
                async with client("webtransport", srv.port, path="/elsewhere"):
                    pass
    assert info.value.status == 404
    assert "404" in str(info.value)
    assert handled == []


async def test_garbage_datagrams_do_not_stop_the_server(kind: str) -> None:
    def long_header(version: int, size: int) -> bytes:
        # A long-header Initial with random connection ids and a random body.
        header = bytes([0xC0]) + version.to_bytes(4, "big") + b"\x08" + os.urandom(8)
        header += b"\x08" + os.urandom(8) + encode_uint_var(0) + encode_uint_var(size)
        return header + os.urandom(size)

    garbage = [
        b"",
        b"\x00",
        os.urandom(20),
        os.urandom(1500),
        long_header(0x00000001, 1300),  # looks like a QUIC v1 Initial, undecryptable
        long_header(0x6B3343CF, 1300),  # QUIC v2 Initial
        long_header(0x1A2A3A4A, 1300),  # unknown version: answered with version negotiation
        long_header(0x00000000, 100),  # a version negotiation packet
        bytes([0x40]) + os.urandom(60),  # short header, unknown connection id
    ]
    with anyio.fail_after(15):
        async with server(echo_handler, handshake_timeout=2.0) as srv:
            async with client(kind, srv.port) as before:
                async with await anyio.create_udp_socket(local_host="127.0.0.1") as attacker:
                    # Short-header packets carrying the live connection's id reach
                    # its QuicConnection and must be dropped there.
                    live_cid = before._quic._peer_cid.cid
                    for _ in range(20):
                        for datagram in garbage:
                            await attacker.sendto(datagram, "127.0.0.1", srv.port)
                        forged = bytes([0x40]) + live_cid + os.urandom(40)
                        await attacker.sendto(forged, "127.0.0.1", srv.port)
                    await anyio.sleep(0.2)
                assert await echo_once(before, b"still here") == b"still here"
            async with client(kind, srv.port) as after:
                assert await echo_once(after, b"new") == b"new"


async def test_failing_handler_closes_only_its_connection() -> None:
    calls = 0

    async def handler(conn: Connection) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("handler bug")
        await echo_handler(conn)

    with anyio.fail_after(10):
        async with server(handler) as srv:
            async with client("quic", srv.port) as broken:
                with pytest.raises(anyio.BrokenResourceError) as info:
                    await broken.accept_stream()
                assert isinstance(info.value.__cause__, ConnectionLost)
            async with client("quic", srv.port) as fine:
                assert await echo_once(fine) == b"ping"


async def test_ipv6_loopback(kind: str) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 support in this Python build")
    with anyio.fail_after(10):
        async with server(echo_handler, host="::1") as srv, client(kind, srv.port, host="::1") as c:
            assert await echo_once(c) == b"ping"


async def test_connect_to_a_silent_port_times_out() -> None:
    async with await anyio.create_udp_socket(local_host="127.0.0.1") as silent:
        port = silent.extra(anyio.abc.SocketAttribute.local_port)
        with anyio.fail_after(5), pytest.raises(ConnectTimeout):
            async with client("quic", port, timeout=0.5):
                pass


def test_invalid_urls_are_rejected() -> None:
    for url in ("http://host:1", "moqt://:4443", "ftp://x", "https://host:notaport/"):
        with pytest.raises(InvalidURL):
            transport.parse_url(url)
    parsed = transport.parse_url("https://[::1]:4443/moq?x=1")
    assert (parsed.host, parsed.port, parsed.path) == ("::1", 4443, "/moq?x=1")
    assert parsed.authority == "[::1]:4443"
    assert transport.parse_url("moqt://relay.example").port == 443


async def test_no_task_or_socket_is_left_behind(kind: str) -> None:
    before = len(anyio.get_running_tasks())
    with anyio.fail_after(10):
        async with server(echo_handler) as srv, client(kind, srv.port) as conn:
            assert await echo_once(conn) == b"ping"
            assert len(anyio.get_running_tasks()) > before
    await anyio.lowlevel.checkpoint()
    assert len(anyio.get_running_tasks()) == before


async def test_cancellation_at_any_point_closes_sockets(kind: str) -> None:
    """Cancelled connects and bodies leave no socket open (ResourceWarning is an error)."""

    async def idle(conn: Connection) -> None:
        await anyio.sleep(30)

    with anyio.fail_after(20):
        async with server(idle) as srv:
            for delay in (0.0, 0.001, 0.005, 0.02, 0.1):
                with anyio.move_on_after(delay):
                    async with client(kind, srv.port):
                        await anyio.sleep(30)
        with anyio.move_on_after(0.3):
            async with server(idle) as srv, client(kind, srv.port):
                await anyio.sleep(30)
    gc.collect()


async def test_closing_the_server_tells_every_busy_client(kind: str) -> None:
    """The CONNECTION_CLOSE of each connection leaves before the server stops its
    driver, even while the peer keeps sending (the close must not be lost in a send
    that was still awaiting the socket)."""

    async def sink(conn: Connection) -> None:
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
            while True:
                await conn.receive_datagram()

    async def chatter(conn: Connection, told: list[Connection]) -> None:
        try:
            while True:
                conn.send_datagram(b"x" * 200)
                await anyio.sleep(0.001)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            told.append(conn)

    closing = anyio.Event()

    async def run_server(*, task_status: anyio.abc.TaskStatus[int]) -> None:
        async with server(sink) as srv:
            task_status.started(srv.port)
            await closing.wait()

    told: list[Connection] = []
    with anyio.fail_after(20):
        async with anyio.create_task_group() as outer:
            port = await outer.start(run_server)
            async with contextlib.AsyncExitStack() as stack:
                clients = [
                    await stack.enter_async_context(client(kind, port, idle_timeout=60.0))
                    for _ in range(8)
                ]
                tg = await stack.enter_async_context(anyio.create_task_group())
                for conn in clients:
                    tg.start_soon(chatter, conn, told)
                await anyio.sleep(0.2)
                closing.set()
                # Every client hears of it long before its 60 s idle timeout.
                while len(told) < len(clients):  # noqa: ASYNC110
                    await anyio.sleep(0.01)
    assert sorted(map(id, told)) == sorted(map(id, clients))
