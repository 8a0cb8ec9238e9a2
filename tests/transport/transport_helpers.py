"""Shared helpers for the transport tests (plain functions, no fixtures)."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc

from clutchcall import transport
from clutchcall.transport import Connection, ReceiveStream, Stream

KINDS = ("quic", "webtransport")
WT_PATH = "/moq"


@functools.cache
def shared_certificate() -> transport.SelfSignedCertificate:
    """One self-signed certificate for localhost, 127.0.0.1 and ::1 (made once)."""
    return transport.generate_self_signed()


def url_for(kind: str, port: int, host: str = "127.0.0.1", path: str = WT_PATH) -> str:
    if ":" in host:
        host = f"[{host}]"
    if kind == "quic":
        return f"moqt://{host}:{port}"
    return f"https://{host}:{port}{path}"


def client(kind: str, port: int, **kwargs: Any) -> Any:
    """``transport.connect`` to a test server, pinned to the test certificate."""
    kwargs.setdefault("cert_sha256", shared_certificate().fingerprint)
    kwargs.setdefault("timeout", 5.0)
    host = kwargs.pop("host", "127.0.0.1")
    path = kwargs.pop("path", WT_PATH)
    return transport.connect(url_for(kind, port, host, path), **kwargs)


def server(handler: Callable[[Connection], Awaitable[None]], **kwargs: Any) -> transport.Server:
    cert = shared_certificate()
    kwargs.setdefault("wt_paths", [WT_PATH])
    kwargs.setdefault("certificate", cert.cert_pem)
    kwargs.setdefault("private_key", cert.key_pem)
    host = kwargs.pop("host", "127.0.0.1")
    return transport.serve(host, 0, handler=handler, **kwargs)


async def read_all(stream: Stream | ReceiveStream) -> bytes:
    chunks = []
    while True:
        try:
            chunks.append(await stream.receive())
        except anyio.EndOfStream:
            return b"".join(chunks)


async def echo_stream(stream: Stream) -> None:
    data = await read_all(stream)
    await stream.send(data)
    await stream.send_eof()


async def echo_handler(conn: Connection) -> None:
    """Echo every bidirectional stream; answer each uni stream on a new uni stream;
    echo datagrams. Returns when the peer goes away."""

    async def uni_reply(stream: ReceiveStream) -> None:
        data = await read_all(stream)
        reply = await conn.open_uni_stream()
        await reply.send(data)
        await reply.send_eof()

    async def datagrams() -> None:
        while True:
            conn.send_datagram(await conn.receive_datagram())

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(datagrams)
            while True:
                stream = await conn.accept_stream()
                if isinstance(stream, Stream):
                    tg.start_soon(echo_stream, stream)
                else:
                    tg.start_soon(uni_reply, stream)
    except* (anyio.BrokenResourceError, anyio.ClosedResourceError):
        pass


class BlackholeProxy:
    """A UDP relay on loopback that can be told to drop everything (a vanished peer)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.dropping = False
        self.port = 0

    @asynccontextmanager
    async def running(self) -> AsyncIterator[BlackholeProxy]:
        async with (
            await anyio.create_udp_socket(local_host="127.0.0.1") as front,
            await anyio.create_udp_socket(local_host="127.0.0.1") as back,
            anyio.create_task_group() as tg,
        ):
            self.port = front.extra(anyio.abc.SocketAttribute.local_port)
            client_addr: list[tuple[str, int]] = []

            async def forward() -> None:
                async for data, addr in front:
                    if not client_addr:
                        client_addr.append(addr)
                    if not self.dropping:
                        await back.sendto(data, "127.0.0.1", self.target_port)

            async def backward() -> None:
                async for data, _ in back:
                    if not self.dropping and client_addr:
                        await front.sendto(data, *client_addr[0])

            tg.start_soon(forward)
            tg.start_soon(backward)
            try:
                yield self
            finally:
                tg.cancel_scope.cancel()
