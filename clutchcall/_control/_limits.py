"""Bounds on one HTTP exchange: a deadline from connect to the last body byte.

httpx's ``timeout`` limits each phase (connect, every read, every write), so a
server that sends one byte per read timeout can hold a request forever. Each
attempt of a request therefore also runs under a deadline of ``timeout`` seconds:

- async: an anyio cancel scope (``async_deadline``) around the whole attempt,
  which works on asyncio and trio and with a caller-supplied ``httpx`` client;
- sync: ``sync_deadline`` publishes the deadline in a context variable and the
  SDK's own connection pool reads through :class:`_DeadlineBackend`, which
  shortens every socket connect, read and write to the time left. With a
  caller-supplied ``httpx.Client`` the deadline is checked between body chunks
  only (that client's own timeouts still bound each read).

Either way an attempt past its deadline ends in :class:`httpx.ReadTimeout`, which
the retry policy and the facade treat like any other timeout (``APITimeoutError``).
"""

from __future__ import annotations

import ssl
import time
import typing
from collections.abc import Iterable
from contextvars import ContextVar
from types import TracebackType

import anyio
import httpcore
import httpx

_deadline: ContextVar[Deadline | None] = ContextVar("clutchcall_http_deadline", default=None)


class Deadline:
    """The instant (``time.monotonic()``) one attempt must be complete by."""

    __slots__ = ("at", "request", "timeout")

    def __init__(self, timeout: float, request: httpx.Request) -> None:
        self.timeout = timeout
        self.at = time.monotonic() + timeout
        self.request = request

    def check(self) -> None:
        """Raise :class:`httpx.ReadTimeout` once the deadline has passed."""
        if time.monotonic() >= self.at:
            raise self.expired()

    @property
    def message(self) -> str:
        return f"no complete response within {self.timeout:g} s"

    def expired(self) -> httpx.ReadTimeout:
        return httpx.ReadTimeout(self.message, request=self.request)


class async_deadline:
    """Cancel the enclosed (async) attempt after ``timeout`` seconds; it then raises
    :class:`httpx.ReadTimeout`. Entering gives the :class:`Deadline`.

    ``anyio.fail_after`` with its ``TimeoutError`` turned into ``ReadTimeout``, as one
    class: the generator-based context managers cost more than the cancel scope."""

    __slots__ = ("_deadline", "_scope")

    def __init__(self, timeout: float, request: httpx.Request) -> None:
        self._deadline = Deadline(timeout, request)
        self._scope = anyio.CancelScope(deadline=anyio.current_time() + timeout)

    def __enter__(self) -> Deadline:
        self._scope.__enter__()
        return self._deadline

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._scope.__exit__(exc_type, exc, tb) and exc is not None:
            # The scope swallowed a cancellation: its own, as no one else holds it,
            # which only its deadline sets off.
            raise self._deadline.expired() from None


class sync_deadline:
    """Bound the enclosed (blocking) attempt's socket operations to ``timeout`` seconds.
    Entering gives the :class:`Deadline`."""

    __slots__ = ("_deadline", "_token")

    def __init__(self, timeout: float, request: httpx.Request) -> None:
        self._deadline = Deadline(timeout, request)

    def __enter__(self) -> Deadline:
        self._token = _deadline.set(self._deadline)
        return self._deadline

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _deadline.reset(self._token)


async def async_read_capped(
    response: httpx.Response, limit: int, deadline: Deadline, *, framed: bool = False
) -> tuple[bytes, bool]:
    """At most ``limit`` bytes of the body, and whether there was more (left unread).

    ``framed``: the response declared a ``Content-Length`` of at most ``limit``, so
    HTTP/1.1 framing ends the body there and it is read without a cancel scope to
    stop it early (should a transport deliver more all the same, the excess is
    dropped as it comes, until the body or the deadline ends).
    """
    body = bytearray()
    over = False
    if framed:
        async for chunk in response.aiter_raw():
            if not over:
                if len(body) + len(chunk) > limit:
                    body += chunk[: limit - len(body)]
                    over = True
                else:
                    body += chunk
            deadline.check()
        return bytes(body), over
    with anyio.CancelScope() as stop:
        async for chunk in response.aiter_raw():
            if over:
                continue  # buffered already; the cancellation lands at the next read
            if len(body) + len(chunk) > limit:
                body += chunk[: limit - len(body)]
                over = True
                # Stopped by cancellation rather than `break`: it unwinds httpx's chain
                # of async generators, which a `break` would leave suspended.
                stop.cancel()
                continue
            body += chunk
            deadline.check()
    return bytes(body), over


def sync_read_capped(
    response: httpx.Response, limit: int, deadline: Deadline, *, framed: bool = False
) -> tuple[bytes, bool]:
    """At most ``limit`` bytes of the body, and whether there was more (left unread).

    ``framed`` (as for :func:`async_read_capped`) changes nothing here: a blocking
    read stops at the limit at no cost."""
    body = bytearray()
    for chunk in response.iter_raw():
        if len(body) + len(chunk) > limit:
            body += chunk[: limit - len(body)]
            return bytes(body), True
        body += chunk
        deadline.check()
    return bytes(body), False


def async_http_transport(verify: bool | ssl.SSLContext) -> httpx.AsyncHTTPTransport:
    """The SDK's own async connection pool (the deadline is a cancel scope)."""
    return httpx.AsyncHTTPTransport(verify=verify)


def sync_http_transport(verify: bool | ssl.SSLContext) -> httpx.HTTPTransport:
    """The SDK's own blocking connection pool, its sockets bound by ``sync_deadline``."""
    transport = httpx.HTTPTransport(verify=verify)
    pool = transport._pool
    pool._network_backend = _DeadlineBackend(pool._network_backend)
    return transport


def _time_left(timeout: float | None, expired: type[Exception]) -> float | None:
    """``timeout`` shortened to what is left of the current deadline (if any)."""
    deadline = _deadline.get()
    if deadline is None:
        return timeout
    left = deadline.at - time.monotonic()
    if left <= 0:
        raise expired(deadline.message)
    return left if timeout is None else min(timeout, left)


def _check_deadline(expired: type[Exception]) -> None:
    """After a socket timeout: say so if it was the deadline that ran out."""
    deadline = _deadline.get()
    if deadline is not None and time.monotonic() >= deadline.at:
        raise expired(deadline.message)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        try:
            return self._inner.read(max_bytes, _time_left(timeout, httpcore.ReadTimeout))
        except httpcore.ReadTimeout:
            _check_deadline(httpcore.ReadTimeout)
            raise

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        try:
            self._inner.write(buffer, _time_left(timeout, httpcore.WriteTimeout))
        except httpcore.WriteTimeout:
            _check_deadline(httpcore.WriteTimeout)
            raise

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        left = _time_left(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, left))

    def get_extra_info(self, info: str) -> typing.Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    def __init__(self, inner: httpcore.NetworkBackend) -> None:
        self._inner = inner

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        left = _time_left(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(
            self._inner.connect_tcp(host, port, left, local_address, socket_options)
        )

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        left = _time_left(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._inner.connect_unix_socket(path, left, socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)
