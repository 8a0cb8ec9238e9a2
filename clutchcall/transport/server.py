"""Server side: raw QUIC (ALPN ``moq-00``) and WebTransport (ALPN ``h3``) on one UDP socket."""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable, Collection, Iterator, Sequence
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any

import anyio
import anyio.abc
from aioquic.quic import events as quic_events
from aioquic.quic.configuration import SMALLEST_MAX_DATAGRAM_SIZE, QuicConfiguration
from aioquic.quic.packet import (
    QuicErrorCode,
    QuicPacketType,
    encode_quic_version_negotiation,
    pull_quic_header,
)
from aioquic.tls import load_pem_private_key, load_pem_x509_certificates

from ._driver import Driver
from ._quic import (
    CONNECTION_WINDOW,
    MAX_DATAGRAM_FRAME_SIZE,
    STREAM_WINDOW,
    Buffer,
    FlowControlledQuicConnection,
)
from ._sockets import SendDatagramNowait, receive_datagrams
from .backend import direct_sender
from .connection import Connection, PathFilter
from .errors import TransportError

logger = logging.getLogger(__name__)

#: What sending a reply on the server's socket may raise (logged, not fatal).
_SEND_ERRORS = (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError)

Handler = Callable[[Connection], Awaitable[None]]
PemSource = bytes | str | os.PathLike[str]

HANDSHAKE_TIMEOUT = 10.0
"""A connection that has no session this long after its first packet is dropped
(and logged with the peer's address)."""

MAX_CONNECTIONS = 1024


def _read_pem(value: PemSource) -> bytes:
    """PEM given as bytes, as a PEM string, or as a file path."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str) and value.lstrip().startswith("-----BEGIN"):
        return value.encode("ascii")
    return Path(value).read_bytes()


def _path_filter(wt_paths: Collection[str] | PathFilter | None) -> PathFilter | None:
    if wt_paths is None or callable(wt_paths):
        return wt_paths
    allowed = frozenset(wt_paths)

    def accept(path: str) -> bool:
        return path.split("?", 1)[0] in allowed

    return accept


async def _run_guarded(driver: Driver, conn: Connection) -> None:
    try:
        await driver.run()
    except Exception:
        logger.exception("QUIC driver task failed for the connection from %s", _peer(conn))


def _leaves(group: BaseExceptionGroup[BaseException]) -> Iterator[BaseException]:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            yield from _leaves(exc)
        else:
            yield exc


def _peer(conn: Connection) -> str:
    """The peer's address as ``host:port`` (``[host]:port`` for IPv6), for logs."""
    try:
        addr = conn.remote_address
        host, port = addr[0], addr[1]
    except Exception:
        return "an unknown address"
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


class Server:
    """A listening QUIC / WebTransport server; use ``async with serve(...) as server``.

    It listens on ``host:port`` (port 0 picks a free one, see :attr:`port`).
    ``certificate`` / ``private_key``: PEM bytes, a PEM string or a file path.
    ``alpn``: protocols offered; ``h3`` enables WebTransport. ``wt_paths``: the
    accepted WebTransport paths (a collection, or a predicate); ``None``
    accepts every path. Rejected CONNECTs get 404. ``handshake_timeout``: a
    connection without a session this many seconds after its first packet is
    dropped (and logged at INFO with the peer's address).

    Each established session (a raw QUIC connection, or a WebTransport session
    whose CONNECT path was accepted) runs ``handler(conn)`` in the server's task
    group; the connection is closed when the handler returns.

    One connection never affects another: whatever its tasks raise (the
    handler, the wait for its session, the QUIC driver) is logged with the
    peer's address and closes only that connection.

    If the server itself stops serving (its UDP socket is closed under it, or
    the task reading it fails), :attr:`failure` records why, every connection
    is dropped, and the ``async with`` body is cancelled: the block raises that
    :class:`TransportError` rather than leave a server that answers nobody.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        certificate: PemSource,
        private_key: PemSource,
        handler: Handler,
        alpn: Sequence[str] = ("moq-00", "h3"),
        wt_paths: Collection[str] | PathFilter | None = None,
        idle_timeout: float = 30.0,
        handshake_timeout: float = HANDSHAKE_TIMEOUT,
    ) -> None:
        self._host = host
        self._requested_port = port
        self._handler = handler
        self._path_filter = _path_filter(wt_paths)
        self._handshake_timeout = handshake_timeout
        certificates = load_pem_x509_certificates(_read_pem(certificate))
        if not certificates:
            raise TransportError("no certificate found in the PEM data")
        self._configuration = QuicConfiguration(
            is_client=False,
            alpn_protocols=list(alpn),
            idle_timeout=idle_timeout,
            max_datagram_frame_size=MAX_DATAGRAM_FRAME_SIZE,
            max_data=CONNECTION_WINDOW,
            max_stream_data=STREAM_WINDOW,
            certificate=certificates[0],
            certificate_chain=certificates[1:],
            private_key=load_pem_private_key(_read_pem(private_key)),
        )
        self._sock: anyio.abc.UDPSocket | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self._send_lock = anyio.Lock()
        self._sender: SendDatagramNowait | None = None
        self._routes: dict[bytes, Driver] = {}
        self._connections: set[Connection] = set()
        self._port = 0
        self._closing = False
        self._failure: TransportError | None = None

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        """The bound UDP port (useful after binding port 0)."""
        return self._port

    @property
    def connections(self) -> frozenset[Connection]:
        """Connections currently alive (including those still handshaking)."""
        return frozenset(self._connections)

    @property
    def failure(self) -> TransportError | None:
        """Why the server stopped serving on its own (None while it serves, and
        after a normal close)."""
        return self._failure

    async def __aenter__(self) -> Server:
        sock = await anyio.create_udp_socket(local_host=self._host, local_port=self._requested_port)
        self._sock = sock
        self._port = int(sock.extra(anyio.abc.SocketAttribute.local_port))
        self._sender = direct_sender(sock, self._send_lock.locked)
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        tg.start_soon(self._read_socket, sock)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        # Only a cancellation goes to the task group (which absorbs its own, when the
        # socket reader failed); any other exception of the body propagates as is.
        if isinstance(exc, anyio.get_cancelled_exc_class()):
            return await self._close(exc_type, exc, tb)
        await self._close(None, None, None)
        return False

    async def aclose(self) -> None:
        """Close every connection, stop all tasks and release the socket.

        Raises :attr:`failure` if the server had stopped serving on its own.
        """
        await self._close(None, None, None)

    async def _close(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        tg, sock = self._tg, self._sock
        self._tg = None
        self._closing = True
        try:
            for conn in list(self._connections):
                conn.abort(reason="server shutting down")
            with anyio.CancelScope(shield=True), anyio.move_on_after(0.5):
                for conn in list(self._connections):
                    await conn.wait_close_sent()
        finally:
            self._sock = None
            try:
                suppress = tg is not None and await self._exit_task_group(tg, exc_type, exc, tb)
            finally:
                if sock is not None:
                    with anyio.CancelScope(shield=True):
                        await sock.aclose()
        return suppress

    async def _exit_task_group(
        self,
        tg: anyio.abc.TaskGroup,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        tg.cancel_scope.cancel()
        try:
            return bool(await tg.__aexit__(exc_type, exc, tb))
        except BaseExceptionGroup as group:
            # The task group fails only when the socket reader does: raise its
            # error itself, unless something else failed with it.
            failure = self._failure
            if failure is None or any(e is not failure for e in _leaves(group)):
                raise
            raise failure from failure.__cause__

    async def _read_socket(self, sock: anyio.abc.UDPSocket) -> None:
        """The listener: routes every datagram; if it stops while the server is not
        closing, the server has failed (see :attr:`failure`)."""
        try:
            await receive_datagrams(sock, self._handle_datagram, self._handle_datagram_nowait)
        except Exception as exc:
            if self._closing:
                return
            failure = TransportError(
                f"the QUIC server on {self._describe()} stopped: its socket reader failed "
                f"({type(exc).__name__}: {exc})"
            )
            failure.__cause__ = exc
        else:
            if self._closing:
                return
            failure = TransportError(
                f"the QUIC server on {self._describe()} stopped: its UDP socket was closed"
            )
        self._failure = failure
        logger.error(
            "%s; dropping its %d connections",
            failure,
            len(self._connections),
            exc_info=failure.__cause__,
        )
        for conn in list(self._connections):
            conn.abort(QuicErrorCode.INTERNAL_ERROR, "server failed")
        raise failure

    async def _close_socket_under_reader(self) -> None:
        """A fault for tests of failure handling: close the UDP socket under the
        reader, as a fatal socket error would. The server then fails."""
        if self._sock is not None:
            await self._sock.aclose()

    def _describe(self) -> str:
        return f"[{self._host}]:{self._port}" if ":" in self._host else f"{self._host}:{self._port}"

    def _send_nowait(self, data: bytes, addr: Any) -> bool:
        sender = self._sender
        if self._sock is None or sender is None:
            return self._sock is None  # closed: dropped, as _send would
        return sender(data, addr)

    async def _send(self, data: bytes, addr: Any) -> None:
        sock = self._sock
        if sock is None:
            return
        async with self._send_lock:
            await sock.sendto(data, addr[0], addr[1])

    async def _handle_datagram(self, data: bytes, addr: Any) -> None:
        reply = self._routed(data, addr)
        if reply is not None:
            try:
                await self._send(reply, addr)
            except _SEND_ERRORS:
                logger.debug("could not answer %r", addr, exc_info=True)

    def _handle_datagram_nowait(self, data: bytes, addr: Any) -> None:
        """:meth:`_handle_datagram` from the socket's read callback: a reply that the
        socket cannot take at once is dropped (the peer sends its packet again)."""
        reply = self._routed(data, addr)
        if reply is not None:
            try:
                self._send_nowait(reply, addr)
            except _SEND_ERRORS:
                logger.debug("could not answer %r", addr, exc_info=True)

    def _routed(self, data: bytes, addr: Any) -> bytes | None:
        """:meth:`_route`, with a datagram it cannot handle dropped (and logged)."""
        try:
            return self._route(data, addr)
        except Exception:
            logger.debug("dropped a datagram from %r", addr, exc_info=True)
            return None

    def _route(self, data: bytes, addr: Any) -> bytes | None:
        """Hand a datagram to its connection; returns a stateless reply if any."""
        configuration = self._configuration
        try:
            header = pull_quic_header(
                Buffer(data=data), host_cid_length=configuration.connection_id_length
            )
        except ValueError:
            return None
        if (
            header.packet_type != QuicPacketType.VERSION_NEGOTIATION
            and header.version is not None
            and header.version not in configuration.supported_versions
        ):
            return encode_quic_version_negotiation(
                source_cid=header.destination_cid,
                destination_cid=header.source_cid,
                supported_versions=configuration.supported_versions,
            )
        driver = self._routes.get(header.destination_cid)
        if (
            driver is None
            and header.packet_type == QuicPacketType.INITIAL
            and len(data) >= SMALLEST_MAX_DATAGRAM_SIZE
            and len(self._connections) < MAX_CONNECTIONS
            and self._tg is not None
        ):
            quic = FlowControlledQuicConnection(
                configuration=configuration,
                original_destination_connection_id=header.destination_cid,
            )
            driver = Driver(quic, self._send, send_nowait=self._send_nowait)
            conn = Connection(driver, is_client=False, path_filter=self._path_filter)
            driver.event_listener = partial(self._on_quic_event, driver)
            self._routes[header.destination_cid] = driver
            self._routes[quic.host_cid] = driver
            self._connections.add(conn)
            name = f"QUIC connection {addr!r}"
            self._tg.start_soon(self._run_connection, driver, conn, name=name)
        if driver is not None:
            driver.datagram_received(data, addr)
        return None

    def _on_quic_event(self, driver: Driver, event: quic_events.QuicEvent) -> None:
        if isinstance(event, quic_events.ConnectionIdIssued):
            self._routes[event.connection_id] = driver
        elif (
            isinstance(event, quic_events.ConnectionIdRetired)
            and self._routes.get(event.connection_id) is driver
        ):
            del self._routes[event.connection_id]

    async def _run_connection(self, driver: Driver, conn: Connection) -> None:
        """One connection's task: whatever fails in it is logged with the peer's
        address and closes this connection only, never the server."""
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(_run_guarded, driver, conn)
                try:
                    await self._serve_connection(conn)
                    with anyio.move_on_after(5):
                        await conn.wait_terminated()
                except Exception:
                    logger.exception("connection from %s failed; closing it", _peer(conn))
                    conn.abort(QuicErrorCode.INTERNAL_ERROR, "internal error")
                    with anyio.move_on_after(1):
                        await conn.wait_close_sent()
                tg.cancel_scope.cancel()
        except Exception:
            logger.exception("connection from %s failed; dropped it", _peer(conn))
            conn.abort(QuicErrorCode.INTERNAL_ERROR, "internal error")
        finally:
            self._connections.discard(conn)
            for cid in [cid for cid, owner in self._routes.items() if owner is driver]:
                del self._routes[cid]

    async def _serve_connection(self, conn: Connection) -> None:
        """Wait for the session (at most the handshake timeout), then run the handler."""
        ready = False
        with anyio.move_on_after(self._handshake_timeout) as waited:
            ready = await conn.wait_session()
        if waited.cancelled_caught:
            logger.info(
                "dropped the connection from %s: no session within %g s",
                _peer(conn),
                self._handshake_timeout,
            )
            conn.abort(reason="no session in time")
            return
        if conn.closed or not ready:
            logger.debug("connection from %s ended without a session", _peer(conn))
            conn.abort(reason="no session")
            return
        try:
            await self._handler(conn)
        except Exception:
            logger.exception("connection handler failed for %s; closing it", _peer(conn))
            await conn.aclose(1, "internal error", linger=0)
        else:
            await conn.aclose()


#: ``async with serve(host, port, ...) as server``: the :class:`Server` constructor,
#: under the name it reads best by.
serve = Server
