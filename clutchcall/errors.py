"""The SDK's error tree.

Everything the SDK raises on purpose derives from :class:`ClutchCallError`::

    ClutchCallError
    ├── ConfigurationError          a required setting is missing or malformed
    ├── InvalidArgumentError        a call was made with bad arguments (also a ValueError)
    ├── ClientClosedError           a client was used after close() (also a RuntimeError)
    ├── MissingExtraError           an optional part needs an extra (also an ImportError)
    ├── BridgeError                 the data plane (relay session, tracks) failed
    │   ├── BridgeConnectError      the relay could not be reached or set up
    │   ├── BridgeAuthError         the relay refused the session or a track (unauthorized)
    │   ├── BridgeTrackError        the relay refused a track for another reason
    │   ├── BridgeFormatError       a peer's catalog (its audio format) is malformed
    │   └── BridgeClosedError       the bridge or client was closed, or ended
    │       └── CallEndedError      the bridge's call ended (a hang-up): it carries no more audio
    ├── AudioError                  the audio layer (clutchcall.audio) could not do its work
    │   ├── UnsupportedFormatError  codec / sample rate / channels / frame length not supported
    │   ├── FrameSizeError          a PCM or encoded frame has the wrong size or shape
    │   ├── DecodeError             an encoded frame could not be decoded
    │   └── WavFormatError          a WAV file is unreadable or not 16-bit PCM
    └── APIError                    the control plane could not serve a request
        ├── APIConnectionError      no usable HTTP exchange (refused, reset, TLS...)
        │   └── APITimeoutError     the request timed out
        ├── APIResponseValidationError  a success response did not match the API schema
        │   └── ResponseTooLargeError   a success response's body exceeded max_response_bytes
        └── APIStatusError          the server answered with an error status
            ├── BadRequestError             400
            ├── AuthenticationError         401
            ├── PermissionDeniedError       403
            ├── NotFoundError               404
            ├── ConflictError               409
            ├── UnprocessableEntityError    422
            ├── RateLimitError              429
            └── InternalServerError         5xx

The tree lives in this one module, which imports nothing else of the SDK: every
layer may raise and catch these.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIResponseValidationError",
    "APIStatusError",
    "APITimeoutError",
    "AudioError",
    "AuthenticationError",
    "BadRequestError",
    "BridgeAuthError",
    "BridgeClosedError",
    "BridgeConnectError",
    "BridgeError",
    "BridgeFormatError",
    "BridgeTrackError",
    "CallEndedError",
    "ClientClosedError",
    "ClutchCallError",
    "ConfigurationError",
    "ConflictError",
    "DecodeError",
    "FieldError",
    "FrameSizeError",
    "InternalServerError",
    "InvalidArgumentError",
    "MissingExtraError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "ResponseTooLargeError",
    "UnprocessableEntityError",
    "UnsupportedFormatError",
    "WavFormatError",
]


class ClutchCallError(Exception):
    """Base class of every error the SDK raises on purpose."""


class ConfigurationError(ClutchCallError):
    """A required setting (argument or environment variable) is missing or invalid."""


class InvalidArgumentError(ClutchCallError, ValueError):
    """A method was called with arguments it cannot accept; nothing was sent."""


class ClientClosedError(ClutchCallError, RuntimeError):
    """The client was used after ``close()``; nothing was sent. Make a new client."""


class MissingExtraError(ClutchCallError, ImportError):
    """An optional part of the SDK was imported without the extra that installs its
    dependencies; ``extra`` names it (``pip install 'clutchcall[<extra>]'``)."""

    def __init__(self, message: str, *, extra: str, name: str | None = None) -> None:
        super().__init__(message, name=name)
        self.extra = extra


class BridgeError(ClutchCallError):
    """The data plane (relay session, tracks) failed."""


class BridgeConnectError(BridgeError):
    """The relay could not be reached, or the MoQT session could not be set up."""


class BridgeAuthError(BridgeError):
    """The relay refused the session (bad, expired or missing token) or a track.

    ``code`` is the MoQT error code the relay sent (a session termination code
    such as UNAUTHORIZED 0x2 / EXPIRED_AUTH_TOKEN 0x18, or a SUBSCRIBE_ERROR /
    PUBLISH_NAMESPACE_ERROR code such as UNAUTHORIZED 0x1); ``reason`` its text.
    """

    def __init__(self, message: str, *, code: int, reason: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason


class BridgeTrackError(BridgeError):
    """The relay refused a SUBSCRIBE or PUBLISH_NAMESPACE for a reason other than
    authorization (e.g. moq-rs answers "unroutable" for a track nobody publishes yet).
    """

    def __init__(self, message: str, *, code: int, reason: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason


class BridgeFormatError(BridgeError, ValueError):
    """A catalog (a side's declaration of its audio format, see
    :mod:`clutchcall.moqt.catalog`) is malformed, too large or names a format the
    SDK cannot decode."""


class BridgeClosedError(BridgeError):
    """The bridge (or client) is closed and cannot be used any more: it was closed,
    its client was closed, or it ended on its own (its call ended, raising the
    subclass :class:`CallEndedError`, or its relay session could not be restored;
    the message says which)."""


class CallEndedError(BridgeClosedError):
    """The bridge's call ended (either side hung up, or the platform ended it): the
    relay ended the call's tracks and the bridge closed itself. Raised by
    ``publish_downlink`` / ``publish_uplink`` from then on; ``call_sid`` names the call.

    A subclass of :class:`BridgeClosedError`, so ``except BridgeClosedError`` also
    catches it; catch this one to tell a finished call from a bridge closed by you.
    """

    def __init__(self, message: str, *, call_sid: str) -> None:
        super().__init__(message)
        self.call_sid = call_sid


class AudioError(ClutchCallError):
    """Base class of the errors raised by the audio layer (:mod:`clutchcall.audio`).

    Defined here with the rest of the tree, so that catching them needs no audio
    extra; :mod:`clutchcall.audio.errors` re-exports them."""


class UnsupportedFormatError(AudioError, ValueError):
    """The codec cannot run with this sample rate, channel count or frame length."""


class FrameSizeError(AudioError, ValueError):
    """A frame handed to a codec does not have the size (or shape, or dtype) it needs."""


class DecodeError(AudioError):
    """An encoded frame is corrupt or does not decode to exactly one frame of audio."""


class WavFormatError(AudioError):
    """A WAV file could not be read, or is not 16-bit integer PCM."""


class APIError(ClutchCallError):
    """The control plane could not serve a request."""


class APIConnectionError(APIError):
    """No usable HTTP exchange took place (connection refused or reset, TLS failure...)."""

    def __init__(self, message: str, *, request: httpx.Request | None = None) -> None:
        super().__init__(message)
        self.request = request


class APITimeoutError(APIConnectionError):
    """The request did not complete within the configured timeout."""


class APIResponseValidationError(APIError):
    """The server answered with success but a body the SDK cannot use: not JSON, not
    an object, a missing or wrongly typed field, an unknown status value, a date
    without a time zone...

    ``status_code`` and ``request_id`` (from ``X-Request-Id``) identify the
    response; ``body`` holds the bytes that were read (at most ``max_response_bytes``)
    and the message quotes the start of it.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        body: bytes,
        request_id: str | None = None,
        response: httpx.Response | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.body = body
        self.request_id = request_id
        self.response = response


class ResponseTooLargeError(APIResponseValidationError):
    """A success response's body was longer than ``max_response_bytes``: reading
    stopped at the limit (``limit``) and the connection was dropped.

    An error status with an oversized body raises that status's
    :class:`APIStatusError` subclass instead, saying the body was cut short.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        body: bytes,
        limit: int,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message, status_code=status_code, body=body, request_id=request_id)
        self.limit = limit


@dataclass(frozen=True, slots=True)
class FieldError:
    """One per-field validation failure reported by the server."""

    field: str
    message: str


class APIStatusError(APIError):
    """The server answered with an error status.

    ``status_code`` is the HTTP status, ``code`` the server's stable error code
    (for example ``"call_ended"``; ``"http_<status>"`` when the body is not a problem
    document), ``message`` the human explanation (or the start of a body that is not
    a problem document) and ``request_id`` the id to quote when asking for support.
    ``body`` is the parsed JSON object, or None.
    """

    status_code: int

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        code: str | None,
        request_id: str | None,
        response: httpx.Response,
        errors: list[FieldError] | None = None,
        body: Any = None,
    ) -> None:
        text = f"{status_code} {code or 'error'}: {message}"
        if request_id:
            text += f" (request id {request_id})"
        super().__init__(text)
        self.message = message
        self.status_code = status_code
        self.code = code
        self.request_id = request_id
        self.response = response
        self.errors = errors or []
        self.body = body


class BadRequestError(APIStatusError):
    """400: the request was malformed."""


class AuthenticationError(APIStatusError):
    """401: no API key, or the server does not know it."""


class PermissionDeniedError(APIStatusError):
    """403: the key lacks a scope or belongs to another org."""


class NotFoundError(APIStatusError):
    """404: no such call or agent (calls of other orgs are reported the same way)."""


class ConflictError(APIStatusError):
    """409: the call's state does not allow the operation (for example it has ended)."""


class UnprocessableEntityError(APIStatusError):
    """422: the request body broke the API's schema; see ``errors`` for the fields."""


class RateLimitError(APIStatusError):
    """429: too many requests, still refused after the configured retries."""


class InternalServerError(APIStatusError):
    """5xx: the server failed, still failing after the configured retries."""


_STATUS_ERRORS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: UnprocessableEntityError,
    429: RateLimitError,
}


def status_error_class(status_code: int) -> type[APIStatusError]:
    """The most specific :class:`APIStatusError` subclass for an HTTP status."""
    if 500 <= status_code <= 599:
        return InternalServerError
    return _STATUS_ERRORS.get(status_code, APIStatusError)
