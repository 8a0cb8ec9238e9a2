"""httpx transports that add retries (and wrap a user-supplied httpx client)."""

from __future__ import annotations

import httpx

from ._retry import (
    RetryPolicy,
    async_sleep,
    is_problem_document,
    log_retry,
    synthesize_problem,
)


class AsyncRetryTransport(httpx.AsyncBaseTransport):
    """Retry a request per :class:`RetryPolicy`; the request (and its headers,
    including any ``Idempotency-Key``) is re-sent unchanged. Error responses that
    are not JSON are turned into problem documents so their status is kept."""

    def __init__(self, inner: httpx.AsyncBaseTransport, policy: RetryPolicy) -> None:
        self._inner = inner
        self._policy = policy

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        attempt = 0
        while True:
            try:
                response = await self._inner.handle_async_request(request)
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
                        body = await response.aread()
                        await response.aclose()
                        return synthesize_problem(request, response, body)
                    return response
                delay = self._policy.delay(attempt, response.headers.get("retry-after"))
                reason = f"status {response.status_code}"
                await response.aclose()
            log_retry(request, reason, attempt, delay)
            await async_sleep(delay)
            attempt += 1

    async def aclose(self) -> None:
        await self._inner.aclose()


class AsyncClientTransport(httpx.AsyncBaseTransport):
    """Send through a caller-supplied ``httpx`` client (its own transport, proxies,
    hooks and limits apply). The caller keeps ownership: closing this does not close it."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._client.send(request, stream=True)
