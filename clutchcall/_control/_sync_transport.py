# Generated from clutchcall/_control/_async_transport.py by codegen/generate.py.
# Do not edit: change the async original and run `make generate`.
"""httpx transports that add retries (and wrap a user-supplied httpx client)."""

from __future__ import annotations

import httpx

from ._retry import (
    RetryPolicy,
    is_problem_document,
    log_retry,
    sync_sleep,
    synthesize_problem,
)


class RetryTransport(httpx.BaseTransport):
    """Retry a request per :class:`RetryPolicy`; the request (and its headers,
    including any ``Idempotency-Key``) is re-sent unchanged. Error responses that
    are not JSON are turned into problem documents so their status is kept."""

    def __init__(self, inner: httpx.BaseTransport, policy: RetryPolicy) -> None:
        self._inner = inner
        self._policy = policy

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        attempt = 0
        while True:
            try:
                response = self._inner.handle_request(request)
            except httpx.TransportError as exc:
                if attempt >= self._policy.max_retries or not self._policy.should_retry_error(
                    request, exc
                ):
                    raise
                delay = self._policy.backoff(attempt)
                reason = type(exc).__name__
            else:
                if attempt >= self._policy.max_retries or not self._policy.should_retry_status(
                    request, response.status_code
                ):
                    if response.status_code >= 400 and not is_problem_document(response):
                        body = response.read()
                        response.close()
                        return synthesize_problem(request, response, body)
                    return response
                delay = self._policy.delay(attempt, response.headers.get("retry-after"))
                reason = f"status {response.status_code}"
                response.close()
            log_retry(request, reason, attempt, delay)
            sync_sleep(delay)
            attempt += 1

    def close(self) -> None:
        self._inner.close()


class ClientTransport(httpx.BaseTransport):
    """Send through a caller-supplied ``httpx`` client (its own transport, proxies,
    hooks and limits apply). The caller keeps ownership: closing this does not close it."""

    def __init__(self, client: httpx.Client) -> None:
        self._client = client

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self._client.send(request, stream=True)
