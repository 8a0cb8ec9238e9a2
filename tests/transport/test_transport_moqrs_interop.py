"""Interop with an independent implementation: the moq-rs server (Rust, PyPI ``moq-rs``).

The server runs in a subprocess on loopback (it speaks asyncio only; our client
runs on both backends). The tests prove the QUIC handshake with ALPN ``moq-00``,
the WebTransport extended CONNECT (200 on ``/``), and the stream path end to end
by sending a hand-made draft-14 CLIENT_SETUP and decoding moq-rs's SERVER_SETUP.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import anyio
import pytest
from aioquic._buffer import Buffer
from aioquic.buffer import encode_uint_var
from child_processes import moqrs_server

from clutchcall import transport
from clutchcall.transport import CertificateError, Connection, ConnectionKind

pytestmark = pytest.mark.anyio

DRAFT_14 = 0xFF00000E
CLIENT_SETUP = 0x20
SERVER_SETUP = 0x21
PARAM_PATH = 0x01
PARAM_MAX_REQUEST_ID = 0x02
PARAM_IMPLEMENTATION = 0x07


@dataclass(frozen=True)
class MoqRsServer:
    port: int
    fingerprints: tuple[str, ...]


@pytest.fixture(scope="module")
def moqrs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MoqRsServer]:
    with moqrs_server(tmp_path_factory.mktemp("moqrs") / "server.log") as (port, fingerprints):
        yield MoqRsServer(port, fingerprints)


def client_setup(*, path: str | None) -> bytes:
    """A draft-14 CLIENT_SETUP offering only draft-14."""
    params = [encode_uint_var(PARAM_MAX_REQUEST_ID) + encode_uint_var(100)]
    if path is not None:
        raw = path.encode()
        params.append(encode_uint_var(PARAM_PATH) + encode_uint_var(len(raw)) + raw)
    payload = (
        encode_uint_var(1)
        + encode_uint_var(DRAFT_14)
        + encode_uint_var(len(params))
        + b"".join(params)
    )
    return encode_uint_var(CLIENT_SETUP) + len(payload).to_bytes(2, "big") + payload


@dataclass(frozen=True)
class ServerSetup:
    version: int
    params: dict[int, int | bytes]


def parse_server_setup(data: bytes) -> ServerSetup:
    buf = Buffer(data=data)
    assert buf.pull_uint_var() == SERVER_SETUP
    length = buf.pull_uint16()
    assert length == len(data) - buf.tell(), "one complete message expected"
    version = buf.pull_uint_var()
    params: dict[int, int | bytes] = {}
    for _ in range(buf.pull_uint_var()):
        key = buf.pull_uint_var()
        if key % 2 == 0:
            params[key] = buf.pull_uint_var()
        else:
            params[key] = buf.pull_bytes(buf.pull_uint_var())
    assert buf.eof()
    return ServerSetup(version=version, params=params)


async def exchange_setup(conn: Connection, *, path: str | None) -> ServerSetup:
    control = await conn.open_bidi_stream()
    await control.send(client_setup(path=path))
    data = b""
    while True:
        data += await control.receive()
        if len(data) >= 3:
            buf = Buffer(data=data)
            buf.pull_uint_var()
            if len(data) >= buf.tell() + 2 + buf.pull_uint16():
                return parse_server_setup(data)


async def test_raw_quic_handshake_and_setup_with_moq_rs(moqrs: MoqRsServer) -> None:
    url = f"moqt://127.0.0.1:{moqrs.port}"
    with anyio.fail_after(15):
        async with transport.connect(url, verify=False, server_name="localhost") as conn:
            assert conn.kind is ConnectionKind.QUIC
            assert conn.alpn == "moq-00"
            setup = await exchange_setup(conn, path="/")
    assert setup.version == DRAFT_14
    implementation = setup.params.get(PARAM_IMPLEMENTATION)
    assert isinstance(implementation, bytes)
    assert implementation.startswith(b"moq")


async def test_webtransport_connect_and_setup_with_moq_rs(moqrs: MoqRsServer) -> None:
    url = f"https://127.0.0.1:{moqrs.port}/"
    with anyio.fail_after(15):
        async with transport.connect(
            url, cert_sha256=moqrs.fingerprints, server_name="localhost"
        ) as conn:
            assert conn.kind is ConnectionKind.WEBTRANSPORT
            assert conn.alpn == "h3"
            assert conn.session_id == 0
            setup = await exchange_setup(conn, path=None)
    assert setup.version == DRAFT_14
    assert isinstance(setup.params.get(PARAM_MAX_REQUEST_ID), int)


async def test_moq_rs_self_signed_certificate_fails_default_verification(
    moqrs: MoqRsServer,
) -> None:
    with anyio.fail_after(15), pytest.raises(CertificateError):
        async with transport.connect(f"moqt://127.0.0.1:{moqrs.port}", server_name="localhost"):
            pass
