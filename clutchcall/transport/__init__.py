"""QUIC and WebTransport transport for the data plane, on anyio (asyncio or trio).

An anyio driver around aioquic's sans-IO ``QuicConnection``::

    from clutchcall import transport

    async with transport.connect("moqt://127.0.0.1:4443", verify="cert.pem") as conn:
        stream = await conn.open_bidi_stream()
        await stream.send(b"hello")

    async def handler(conn: transport.Connection) -> None:
        stream = await conn.accept_stream()
        ...

    async with transport.serve("127.0.0.1", 0, certificate=pem, private_key=key,
                               handler=handler) as server:
        print(server.port)
"""

from .certs import SelfSignedCertificate, fingerprint_sha256, generate_self_signed
from .client import connect, parse_url
from .connection import Connection, ConnectionKind
from .errors import (
    CertificateError,
    ConnectError,
    ConnectionLost,
    ConnectTimeout,
    HandshakeError,
    InvalidURL,
    StopSending,
    StreamReset,
    TransportError,
    WebTransportRejected,
)
from .server import Server, serve
from .streams import ReceiveStream, SendStream, Stream

__all__ = [
    "CertificateError",
    "ConnectError",
    "ConnectTimeout",
    "Connection",
    "ConnectionKind",
    "ConnectionLost",
    "HandshakeError",
    "InvalidURL",
    "ReceiveStream",
    "SelfSignedCertificate",
    "SendStream",
    "Server",
    "StopSending",
    "Stream",
    "StreamReset",
    "TransportError",
    "WebTransportRejected",
    "connect",
    "fingerprint_sha256",
    "generate_self_signed",
    "parse_url",
    "serve",
]
