"""Client side: ``connect(url)`` for raw QUIC (``moqt://``) and WebTransport (``https://``)."""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import ssl
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import anyio
import anyio.abc
from aioquic.quic.configuration import QuicConfiguration

from ._driver import Driver
from ._quic import (
    CONNECTION_WINDOW,
    MAX_DATAGRAM_FRAME_SIZE,
    STREAM_WINDOW,
    FlowControlledQuicConnection,
)
from ._sockets import receive_datagrams
from .backend import direct_sender
from .connection import Connection, ConnectionKind
from .errors import ConnectError, ConnectTimeout, InvalidURL, TransportError

logger = logging.getLogger(__name__)

MOQT_ALPN = "moq-00"
H3_ALPN = "h3"

Verify = bool | str | os.PathLike[str] | ssl.SSLContext
"""What ``verify=`` accepts: see :func:`connect`."""


@dataclass(frozen=True)
class Target:
    """A parsed transport URL."""

    kind: ConnectionKind
    host: str
    port: int
    path: str

    @property
    def authority(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_url(url: str) -> Target:
    """Split ``moqt://host:port`` or ``https://host:port/path`` (port defaults to 443)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "moqt":
        kind = ConnectionKind.QUIC
    elif scheme == "https":
        kind = ConnectionKind.WEBTRANSPORT
    else:
        raise InvalidURL(f"unsupported URL scheme in {url!r}: use moqt:// or https://")
    host = parts.hostname
    if not host:
        raise InvalidURL(f"no host in {url!r}")
    try:
        port = parts.port or 443
    except ValueError as exc:
        raise InvalidURL(f"bad port in {url!r}") from exc
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Target(kind=kind, host=host, port=port, path=path)


def _normalise_pins(pins: str | Iterable[str] | None) -> frozenset[str]:
    if pins is None:
        return frozenset()
    if isinstance(pins, str):
        pins = [pins]
    return frozenset(pin.replace(":", "").lower() for pin in pins)


def _apply_verify(configuration: QuicConfiguration, verify: Verify) -> None:
    """Map ``verify=`` onto what aioquic understands (verify_mode, cafile, cadata).

    ``True`` verifies against certifi's CA bundle (aioquic's default); ``False``
    disables verification; a path is a PEM file of trusted certificates (a
    self-signed server certificate itself works). An ``ssl.SSLContext``
    contributes its verify mode and the CA certificates loaded into it, as
    ``get_ca_certs()`` reports them: OpenSSL lists only CA certificates there, so
    pin a self-signed leaf with a path instead; a context without any falls back
    to certifi. The host name is always checked when verifying.
    """
    if verify is True:
        configuration.verify_mode = ssl.CERT_REQUIRED
        return
    if verify is False:
        configuration.verify_mode = ssl.CERT_NONE
        return
    if isinstance(verify, ssl.SSLContext):
        configuration.verify_mode = (
            ssl.CERT_NONE if verify.verify_mode == ssl.CERT_NONE else ssl.CERT_REQUIRED
        )
        ders = verify.get_ca_certs(binary_form=True)
        if ders:
            configuration.cadata = b"".join(
                ssl.DER_cert_to_PEM_cert(der).encode("ascii") for der in ders
            )
        return
    if isinstance(verify, str | os.PathLike):
        path = os.fspath(verify)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"CA file not found: {path}")
        configuration.verify_mode = ssl.CERT_REQUIRED
        configuration.cafile = path
        return
    raise TypeError(f"verify must be a bool, a CA file path or an ssl.SSLContext, not {verify!r}")


async def _receive_loop(sock: anyio.abc.UDPSocket, driver: Driver) -> None:
    async def handle(data: bytes, addr: Any) -> None:
        driver.datagram_received(data, addr)

    await receive_datagrams(sock, handle, driver.datagram_received)


async def _run_guarded(driver: Driver) -> None:
    try:
        await driver.run()
    except Exception:  # run() handles its own errors; this keeps the task group clean
        logger.exception("QUIC driver task failed")


class _ClientSession:
    """The async context manager returned by :func:`connect`."""

    def __init__(
        self,
        url: str,
        *,
        verify: Verify,
        cert_sha256: str | Iterable[str] | None,
        alpn: Sequence[str] | None,
        timeout: float,
        idle_timeout: float,
        server_name: str | None,
        headers: Sequence[tuple[bytes, bytes]],
        keepalive: bool,
    ) -> None:
        self._target = parse_url(url)
        self._keepalive = keepalive
        self._verify = verify
        self._pins = _normalise_pins(cert_sha256)
        if alpn is None:
            alpn = [MOQT_ALPN] if self._target.kind is ConnectionKind.QUIC else [H3_ALPN]
        self._alpn = list(alpn)
        self._timeout = timeout
        self._idle_timeout = idle_timeout
        self._server_name = server_name
        self._headers = list(headers)
        self._sock: anyio.abc.UDPSocket | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self._conn: Connection | None = None

    def _configuration(self) -> QuicConfiguration:
        configuration = QuicConfiguration(
            is_client=True,
            alpn_protocols=self._alpn,
            server_name=self._server_name or self._target.host,
            idle_timeout=self._idle_timeout,
            max_datagram_frame_size=MAX_DATAGRAM_FRAME_SIZE,
            max_data=CONNECTION_WINDOW,
            max_stream_data=STREAM_WINDOW,
        )
        _apply_verify(configuration, self._verify)
        if self._pins:
            # The pinned fingerprint replaces chain verification (like WebTransport's
            # serverCertificateHashes); it is checked right after the handshake.
            configuration.verify_mode = ssl.CERT_NONE
        return configuration

    async def __aenter__(self) -> Connection:
        target = self._target
        configuration = self._configuration()
        with anyio.move_on_after(self._timeout) as scope:
            try:
                infos = await anyio.getaddrinfo(target.host, target.port, type=socket.SOCK_DGRAM)
            except OSError as exc:
                raise ConnectError(f"cannot resolve {target.host!r}: {exc}") from exc
        if scope.cancelled_caught:
            raise ConnectTimeout(f"resolving {target.host!r} timed out")
        if not infos:
            raise ConnectError(f"cannot resolve {target.host!r}")
        family = infos[0][0]
        sockaddr = infos[0][4]
        remote = (str(sockaddr[0]), int(sockaddr[1]))
        ip = ipaddress.ip_address(remote[0].split("%")[0])
        if ip.is_loopback:
            local_host = remote[0]
        else:
            local_host = "::" if family == socket.AF_INET6 else "0.0.0.0"

        sock = await anyio.create_udp_socket(local_host=local_host)
        self._sock = sock
        try:
            return await self._start(sock, configuration, remote)
        except BaseException:
            if self._sock is not None:
                self._sock = None
                with anyio.CancelScope(shield=True):
                    await sock.aclose()
            raise

    async def _start(
        self, sock: anyio.abc.UDPSocket, configuration: QuicConfiguration, remote: Any
    ) -> Connection:
        target = self._target

        async def send(data: bytes, addr: Any) -> None:
            await sock.sendto(data, addr[0], addr[1])

        quic = FlowControlledQuicConnection(configuration=configuration)
        keepalive = self._idle_timeout / 3 if self._keepalive else None
        driver = Driver(quic, send, send_nowait=direct_sender(sock), keepalive=keepalive)
        conn = Connection(driver, is_client=True)
        self._conn = conn
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        try:
            tg.start_soon(_receive_loop, sock, driver)
            tg.start_soon(_run_guarded, driver)
            quic.connect(remote, now=anyio.current_time())
            driver.wakeup()
            with anyio.move_on_after(self._timeout) as scope:
                await conn.establish_client_session(
                    authority=target.authority,
                    path=target.path,
                    headers=self._headers,
                    pins=self._pins,
                )
            if scope.cancelled_caught:
                stage = "WebTransport CONNECT" if conn.alpn else "QUIC handshake"
                raise ConnectTimeout(
                    f"{stage} with {target.authority} did not finish within {self._timeout} s"
                )
        except BaseException as exc:
            await self._shutdown(graceful=False)
            if isinstance(exc, Exception) and not isinstance(exc, TransportError):
                # Anything else escaping aioquic during setup is still a failed connect.
                raise ConnectError(f"connecting to {target.authority} failed: {exc!r}") from exc
            raise
        return conn

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._shutdown(graceful=exc_type is None)

    async def _shutdown(self, *, graceful: bool) -> None:
        conn, tg, sock = self._conn, self._tg, self._sock
        self._tg = self._sock = None
        try:
            if conn is not None:
                # aclose() shields itself and is bounded by its linger time.
                await conn.aclose(linger=2.0 if graceful else 0.0)
        finally:
            # The task group is exited outside any other cancel scope of ours, as
            # anyio/trio require for a task group entered in __aenter__.
            try:
                if tg is not None:
                    tg.cancel_scope.cancel()
                    await tg.__aexit__(None, None, None)
            finally:
                if sock is not None:
                    with anyio.CancelScope(shield=True):
                        await sock.aclose()


def connect(
    url: str,
    *,
    verify: Verify = True,
    cert_sha256: str | Iterable[str] | None = None,
    alpn: Sequence[str] | None = None,
    timeout: float = 10.0,
    idle_timeout: float = 30.0,
    server_name: str | None = None,
    headers: Sequence[tuple[bytes, bytes]] = (),
    keepalive: bool = True,
) -> _ClientSession:
    """Connect to ``url`` and yield a :class:`Connection` (use ``async with``).

    - ``moqt://host:port``: raw QUIC, ALPN ``moq-00`` (override with ``alpn=``).
    - ``https://host:port/path``: HTTP/3 (ALPN ``h3``) then a WebTransport
      extended CONNECT to ``path``; a non-2xx answer raises
      :class:`~clutchcall.transport.errors.WebTransportRejected`.

    ``verify``: ``True`` (default CA bundle), ``False``, a CA file path or an
    ``ssl.SSLContext``. ``cert_sha256``: hex SHA-256 fingerprint(s) of the
    server certificate to accept instead of chain verification. ``timeout``
    bounds the handshake and CONNECT; ``idle_timeout`` ends a silent connection
    (with ``keepalive`` the client PINGs every third of it, so only a vanished
    peer ends it). ``headers`` are extra WebTransport CONNECT request headers.
    Leaving the block closes the connection and its socket and stops its tasks.
    """
    return _ClientSession(
        url,
        verify=verify,
        cert_sha256=cert_sha256,
        alpn=alpn,
        timeout=timeout,
        idle_timeout=idle_timeout,
        server_name=server_name,
        headers=headers,
        keepalive=keepalive,
    )
