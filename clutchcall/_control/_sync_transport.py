# Generated from clutchcall/_control/_async_transport.py by codegen/generate.py.
# Do not edit: change the async original and run `make generate`.
"""httpx transports that add retries and bounds (and wrap a user-supplied httpx client)."""

from __future__ import annotations

import httpx

from ._limits import Deadline, sync_deadline, sync_read_capped
from ._responses import encoded_body_error, too_large_error
from ._retry import RetryPolicy, log_retry, sync_sleep


class RetryTransport(httpx.BaseTransport):
    """Send a request with retries per :class:`RetryPolicy` and bounds on each attempt.

    The request (and its headers, including any ``Idempotency-Key``) is re-sent
    unchanged. Each attempt, from connecting to the last body byte, must finish
    within ``timeout`` seconds (else :class:`httpx.ReadTimeout`). The body is read
    here, never past ``max_response_bytes``: a longer one raises
    :class:`~clutchcall.errors.ResponseTooLargeError` (or, for an error status, that
    status's error) without reading the rest, so memory stays bounded whatever the
    server sends. The response handed on holds the whole body.
    """

    def __init__(
        self,
        inner: httpx.BaseTransport,
        policy: RetryPolicy,
        *,
        timeout: float,
        max_response_bytes: int,
    ) -> None:
        self._inner = inner
        self._policy = policy
        self._timeout = timeout
        self._max_response_bytes = max_response_bytes

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        attempt = 0
        while True:
            last = attempt >= self._policy.max_retries
            try:
                with sync_deadline(self._timeout, request) as deadline:
                    response = self._inner.handle_request(request)
                    if last or not self._policy.should_retry_status(request, response.status_code):
                        limit = self._max_response_bytes
                        return read_body(request, response, deadline, limit)
                    response.close()
                delay = self._policy.delay(attempt, response.headers.get("retry-after"))
                reason = f"status {response.status_code}"
            except httpx.TransportError as exc:
                if last or not self._policy.should_retry_error(request, exc):
                    raise
                delay = self._policy.backoff(attempt)
                reason = type(exc).__name__
            log_retry(request, reason, attempt, delay)
            sync_sleep(delay)
            attempt += 1

    def close(self) -> None:
        self._inner.close()


def read_body(
    request: httpx.Request, response: httpx.Response, deadline: Deadline, limit: int
) -> httpx.Response:
    """``response`` with its whole body read (at most ``limit`` bytes), connection released."""
    response.request = request
    try:
        encoding = response.headers.get("content-encoding", "").strip().lower()
        if encoding not in ("", "identity"):
            raise encoded_body_error(response, encoding)
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise too_large_error(response, b"", limit)
        body, over = sync_read_capped(response, limit, deadline)
        if over:
            raise too_large_error(response, body, limit)
    finally:
        response.close()
    return httpx.Response(
        response.status_code,
        headers=response.headers,
        content=body,
        request=request,
        extensions=response.extensions,
    )


class ClientTransport(httpx.BaseTransport):
    """Send through a caller-supplied ``httpx`` client (its own transport, proxies,
    hooks and limits apply). The caller keeps ownership: closing this does not close it."""

    def __init__(self, client: httpx.Client) -> None:
        self._client = client

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self._client.send(request, stream=True)
