"""When and how long to wait before retrying a request.

The policy is pure (no I/O); :mod:`._async_transport` applies it as an httpx
transport, so every request the generated client sends gets the same treatment.
"""

from __future__ import annotations

import email.utils
import json
import logging
import random
import time
from dataclasses import dataclass

import anyio
import httpx

logger = logging.getLogger("clutchcall")

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"})
# Statuses that say the request was not processed: retrying any request is safe.
ALWAYS_RETRY_STATUSES = frozenset({408, 429})
# Server failures: the request may have been processed, so only idempotent ones are retried.
IDEMPOTENT_RETRY_STATUSES = frozenset({500, 502, 503, 504})

# Jitter comes from a private generator: the SDK never draws from (or reseeds) the
# application's global `random` state.
_jitter = random.Random()

async_sleep = anyio.sleep
sync_sleep = time.sleep


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter, honouring ``Retry-After``."""

    max_retries: int = 2
    initial_delay: float = 0.5
    max_delay: float = 8.0
    max_retry_after: float = 60.0

    @staticmethod
    def is_idempotent(request: httpx.Request) -> bool:
        return request.method in IDEMPOTENT_METHODS or "idempotency-key" in request.headers

    def should_retry_status(self, request: httpx.Request, status_code: int) -> bool:
        if status_code in ALWAYS_RETRY_STATUSES:
            return True
        return status_code in IDEMPOTENT_RETRY_STATUSES and self.is_idempotent(request)

    def should_retry_error(self, request: httpx.Request, error: httpx.TransportError) -> bool:
        # Nothing reached the server: always safe.
        if isinstance(error, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
            return True
        if isinstance(error, httpx.UnsupportedProtocol | httpx.LocalProtocolError):
            return False
        return self.is_idempotent(request)

    def backoff(self, attempt: int) -> float:
        """Delay before retry number ``attempt + 1``: exponential, with up to 25 % jitter."""
        delay: float = min(self.max_delay, self.initial_delay * (2.0**attempt))
        return delay * (1.0 - 0.25 * _jitter.random())

    def delay(self, attempt: int, retry_after: str | None) -> float:
        parsed = parse_retry_after(retry_after)
        if parsed is not None and 0 <= parsed <= self.max_retry_after:
            return parsed
        return self.backoff(attempt)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - time.time())


def log_retry(request: httpx.Request, reason: str, attempt: int, delay: float) -> None:
    logger.info(
        "retrying %s %s in %.2fs (attempt %d): %s",
        request.method,
        request.url.path,
        delay,
        attempt + 1,
        reason,
    )


PROBLEM_JSON = "application/problem+json"


def is_problem_document(response: httpx.Response) -> bool:
    content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    return content_type in (PROBLEM_JSON, "application/json")


def synthesize_problem(
    request: httpx.Request, response: httpx.Response, body: bytes
) -> httpx.Response:
    """An error response whose body is not JSON (a proxy's HTML 502, say), rewritten as a
    problem document so that its status survives parsing by the generated client."""
    snippet = body[:200].decode("utf-8", "replace").strip()
    problem = {
        "type": "about:blank",
        "title": response.reason_phrase or "HTTP error",
        "status": response.status_code,
        "code": f"http_{response.status_code}",
        "detail": snippet or response.reason_phrase or "no details",
    }
    headers = [
        (k, v)
        for k, v in response.headers.multi_items()
        if k.lower() not in ("content-type", "content-length", "content-encoding")
    ]
    headers.append(("content-type", PROBLEM_JSON))
    return httpx.Response(
        response.status_code,
        headers=headers,
        content=json.dumps(problem).encode(),
        request=request,
        extensions=response.extensions,
    )
