"""QUIC and WebTransport transport for the data plane, on anyio (asyncio or trio).

An anyio driver around aioquic's sans-IO ``QuicConnection``. Clients pick the
protocol by URL (``moqt://host:port`` is raw QUIC with ALPN ``moq-00``,
``https://host:port/path`` is WebTransport over HTTP/3); servers accept both on
one UDP socket. Both sides get the same :class:`Connection`::

    from clutchcall import transport

    cert = transport.generate_self_signed()          # localhost, 127.0.0.1, ::1

    async def handler(conn: transport.Connection) -> None:
        stream = await conn.accept_stream()           # Stream (bidi) or ReceiveStream
        await stream.send(await stream.receive())

    async with transport.serve("127.0.0.1", 0, certificate=cert.cert_pem,
                               private_key=cert.key_pem, handler=handler) as server:
        url = f"https://127.0.0.1:{server.port}/"
        async with transport.connect(url, cert_sha256=cert.fingerprint) as conn:
            stream = await conn.open_bidi_stream()
            await stream.send(b"hello")
            print(await stream.receive())
"""

from .certs import SelfSignedCertificate, fingerprint_sha256, generate_self_signed
from .client import Verify, connect, parse_url
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
    "Verify",
    "WebTransportRejected",
    "connect",
    "fingerprint_sha256",
    "generate_self_signed",
    "parse_url",
    "serve",
]
