"""The transport's error tree.

Everything the transport raises on purpose derives from :class:`TransportError`,
except the anyio stream errors (``EndOfStream``, ``BrokenResourceError``,
``ClosedResourceError``) that streams raise with their usual anyio meaning. When a
stream or connection breaks because the QUIC connection went away, the
``BrokenResourceError`` carries a :class:`ConnectionLost` as its ``__cause__``.
"""

from __future__ import annotations

from collections.abc import Sequence


class TransportError(Exception):
    """Base class of the transport's own errors."""


class InvalidURL(TransportError, ValueError):
    """The URL is neither ``moqt://host:port`` nor ``https://host:port/path``."""


class ConnectError(TransportError):
    """A connection or WebTransport session could not be established."""


class ConnectTimeout(ConnectError, TimeoutError):
    """The handshake (or the WebTransport CONNECT) did not finish in time."""


class HandshakeError(ConnectError):
    """The peer or the local TLS stack aborted the QUIC handshake."""

    def __init__(self, message: str, *, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class CertificateError(HandshakeError):
    """The server's certificate failed verification or pinning."""


class WebTransportRejected(ConnectError):
    """The server answered the WebTransport CONNECT with a non-2xx status."""

    def __init__(self, status: int, headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
        super().__init__(f"WebTransport session rejected with HTTP status {status}")
        self.status = status
        self.headers = list(headers)


class ConnectionLost(TransportError):
    """The connection ended: closed by either side, idle timeout or protocol error.

    ``code`` is the QUIC (or WebTransport session) error code, ``reason`` the
    peer's or local reason phrase, ``by_peer`` tells who ended it.
    """

    def __init__(self, code: int, reason: str, *, by_peer: bool) -> None:
        who = "peer" if by_peer else "local side"
        detail = f": {reason}" if reason else ""
        super().__init__(f"connection closed by {who} (code 0x{code:x}){detail}")
        self.code = code
        self.reason = reason
        self.by_peer = by_peer


class StreamReset(TransportError):
    """The peer reset the stream (cause of the ``BrokenResourceError``)."""

    def __init__(self, code: int) -> None:
        super().__init__(f"stream reset by peer (code {code})")
        self.code = code


class StopSending(TransportError):
    """The peer asked us to stop sending (cause of the ``BrokenResourceError``)."""

    def __init__(self, code: int) -> None:
        super().__init__(f"peer stopped reading the stream (code {code})")
        self.code = code


__all__ = [
    "CertificateError",
    "ConnectError",
    "ConnectTimeout",
    "ConnectionLost",
    "HandshakeError",
    "InvalidURL",
    "StopSending",
    "StreamReset",
    "TransportError",
    "WebTransportRejected",
]
