"""httpx transports that add retries and bounds (and wrap a user-supplied httpx client)."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import httpx

from ..errors import APIError, ClientClosedError
from ._base import REQUEST_OPTIONS, RequestOptions
from ._limits import Deadline, async_deadline, async_read_capped
from ._logs import log_exchange
from ._raw import RETRIES_TAKEN
from ._responses import encoded_body_error, too_large_error
from ._retry import RetryPolicy, async_sleep, log_retry


class AsyncRetryTransport(httpx.AsyncBaseTransport):
    """Send a request with retries per :class:`RetryPolicy` and bounds on each attempt.

    The request (and its headers, including any ``Idempotency-Key``) is re-sent
    unchanged. Each attempt, from connecting to the last body byte, must finish
    within ``timeout`` seconds (else :class:`httpx.ReadTimeout`). The body is read
    here, never past ``max_response_bytes``: a longer one raises
    :class:`~clutchcall.errors.ResponseTooLargeError` (or, for an error status, that
    status's error) without reading the rest, so memory stays bounded whatever the
    server sends. The response handed on holds the whole body, and records in its
    extensions how many retries it took.

    A request may carry :class:`RequestOptions` (a method's ``timeout=`` and
    ``max_retries=``) that override the client's for that request alone. Each
    attempt is logged at DEBUG on ``clutchcall.http``.
    """

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport,
        policy: RetryPolicy,
        *,
        timeout: float,
        max_response_bytes: int,
    ) -> None:
        self._inner = inner
        self._policy = policy
        self._timeout = timeout
        self._max_response_bytes = max_response_bytes

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeout, policy = self._timeout, self._policy
        options = request.extensions.get(REQUEST_OPTIONS)
        if isinstance(options, RequestOptions):
            if options.timeout is not None:
                timeout = options.timeout
            if options.max_retries is not None:
                policy = dataclasses.replace(policy, max_retries=options.max_retries)
        attempt = 0
        while True:
            last = attempt >= policy.max_retries
            started = time.monotonic()
            response: httpx.Response | None = None
            try:
                with async_deadline(timeout, request) as deadline:
                    response = await self._inner.handle_async_request(request)
                    if last or not policy.should_retry_status(request, response.status_code):
                        limit = self._max_response_bytes
                        result = await read_body(request, response, deadline, limit, attempt)
                        log_exchange(request, response, started)
                        return result
                    await response.aclose()
                log_exchange(request, response, started, outcome="retrying")
                delay = policy.delay(attempt, response.headers.get("retry-after"))
                reason = f"status {response.status_code}"
            except httpx.TransportError as exc:
                log_exchange(request, response, started, outcome=f"failed: {type(exc).__name__}")
                if last or not policy.should_retry_error(request, exc):
                    raise
                delay = policy.backoff(attempt)
                reason = type(exc).__name__
            except APIError as exc:  # a body too large, or encoded although not asked for
                log_exchange(request, response, started, outcome=f"failed: {type(exc).__name__}")
                raise
            log_retry(request, reason, attempt, delay)
            await async_sleep(delay)
            attempt += 1

    async def aclose(self) -> None:
        await self._inner.aclose()


async def read_body(
    request: httpx.Request,
    response: httpx.Response,
    deadline: Deadline,
    limit: int,
    retries_taken: int = 0,
) -> httpx.Response:
    """``response`` with its whole body read (at most ``limit`` bytes), connection released."""
    response.request = request
    try:
        encoding = response.headers.get("content-encoding", "").strip().lower()
        if encoding not in ("", "identity"):
            raise encoded_body_error(response, encoding)
        declared = response.headers.get("content-length", "")
        framed = declared.isdigit()
        if framed and int(declared) > limit:
            raise too_large_error(response, b"", limit)
        body, over = await async_read_capped(response, limit, deadline, framed=framed)
        if over:
            raise too_large_error(response, body, limit)
    finally:
        await response.aclose()
    # The response is handed on holding its body, as after httpx's `read()` (which
    # stores it in `_content`; `content`, `text`, `json()` and `iter_bytes()` use it),
    # rather than copied into a new Response: copying costs more than reading it.
    response._content = body
    response.extensions[RETRIES_TAKEN] = retries_taken
    return response


class AsyncClientWithoutCookies(httpx.AsyncClient):
    """The SDK's own httpx client, which keeps no cookies.

    The API authenticates every request by its key alone, so a server's
    ``Set-Cookie`` is neither stored nor sent back: a hostile server cannot grow a
    cookie jar without bound, and no response pays for httpx's cookie parsing (it
    builds a urllib request and an email message for every response, which costs
    more than the rest of handling it).
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._no_cookies = _NoCookies()

    @property
    def cookies(self) -> httpx.Cookies:
        return self._no_cookies

    @cookies.setter
    def cookies(self, cookies: object) -> None:
        """Ignored: this client keeps no cookies."""


class _NoCookies(httpx.Cookies):
    """Cookies that a response never adds to."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None


class AsyncClientTransport(httpx.AsyncBaseTransport):
    """Send through a caller-supplied ``httpx`` client (its own transport, proxies,
    hooks and limits apply). The caller keeps ownership: closing this does not close it."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._client.is_closed:
            raise ClientClosedError(
                "the http_client given to this client has been closed; nothing was sent"
            )
        return await self._client.send(request, stream=True)
