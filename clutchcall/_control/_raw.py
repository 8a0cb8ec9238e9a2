"""Raw responses: ``voice.calls.with_raw_response.get(...)`` and its siblings.

In the manner of openai-python: the same methods, returning an :class:`APIResponse`
that shows the HTTP exchange (status, headers, request id, time taken, retries)
and whose :meth:`~APIResponse.parse` gives what the plain method returns. Error
statuses still raise their :class:`~clutchcall.APIStatusError` (which carries the
response too); a success body is only checked when it is parsed.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import httpx

T = TypeVar("T")

#: Response extension in which the retry transport records how many retries it took.
RETRIES_TAKEN = "clutchcall.retries_taken"

_UNPARSED: Any = object()


class APIResponse(Generic[T]):
    """One request's final HTTP response, read in full, and the result it parses to."""

    def __init__(
        self,
        http_response: httpx.Response,
        parse: Callable[[], T],
        *,
        elapsed: datetime.timedelta,
    ) -> None:
        self._http_response = http_response
        self._parse = parse
        self._elapsed = elapsed
        self._parsed: T = _UNPARSED

    def parse(self) -> T:
        """What the plain method returns (a call, a bridge token, None). The body is
        checked here, the first time: an invalid one raises
        :class:`~clutchcall.APIResponseValidationError`."""
        if self._parsed is _UNPARSED:
            self._parsed = self._parse()
        return self._parsed

    @property
    def http_response(self) -> httpx.Response:
        return self._http_response

    @property
    def http_request(self) -> httpx.Request:
        """The request as last sent (its ``Authorization`` header is masked in reprs)."""
        return self._http_response.request

    @property
    def status_code(self) -> int:
        return self._http_response.status_code

    @property
    def headers(self) -> httpx.Headers:
        return self._http_response.headers

    @property
    def request_id(self) -> str | None:
        """The server's ``X-Request-Id``: quote it when asking for support."""
        found: str | None = self._http_response.headers.get("x-request-id")
        return found

    @property
    def elapsed(self) -> datetime.timedelta:
        """From sending the request to the end of the body, retries included."""
        return self._elapsed

    @property
    def retries_taken(self) -> int:
        """How many times the request was sent again before this response."""
        taken = self._http_response.extensions.get(RETRIES_TAKEN, 0)
        return taken if isinstance(taken, int) else 0

    @property
    def url(self) -> httpx.URL:
        return self._http_response.request.url

    @property
    def method(self) -> str:
        return self._http_response.request.method

    @property
    def content(self) -> bytes:
        return self._http_response.content

    @property
    def text(self) -> str:
        return self._http_response.text

    def json(self) -> Any:
        """The body as JSON, unchecked (:meth:`parse` checks it against the API)."""
        return json.loads(self._http_response.content)

    def __repr__(self) -> str:
        return (
            f"<APIResponse [{self.status_code} {self._http_response.reason_phrase}] "
            f"{self.method} {self.url.path}>"
        )
