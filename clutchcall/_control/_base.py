"""Logic shared by the sync and async facades: no I/O here."""

from __future__ import annotations

import re
import ssl
import uuid
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar

import httpx
from clutchcall_api.models import BridgeToken as BridgeTokenModel
from clutchcall_api.models import Call as CallModel
from clutchcall_api.models import CallStatus, EndReason
from clutchcall_api.types import Unset

from .. import __version__
from ..errors import APIConnectionError, APITimeoutError, ClientClosedError, InvalidArgumentError
from ..moqt import VoiceRole
from ._config import ClientConfig, is_positive_seconds, is_retry_count

T = TypeVar("T")

USER_AGENT = f"clutchcall-python/{__version__}"
ENDED_STATUSES = frozenset({CallStatus.COMPLETED, CallStatus.FAILED, CallStatus.NO_ANSWER})
#: A call sid, as ``openapi.yaml`` defines it (``CallSid``).
CALL_SID = re.compile(r"CA[0-9a-f]{32}")
#: Request extension carrying one request's :class:`RequestOptions` to the retry transport.
REQUEST_OPTIONS = "clutchcall.request_options"


@dataclass(frozen=True, slots=True)
class RequestOptions:
    """Per-request overrides of the client's ``timeout`` and ``max_retries`` (None: keep)."""

    timeout: float | None = None
    max_retries: int | None = None


def request_options(timeout: float | None, max_retries: int | None) -> RequestOptions:
    """Check a method's ``timeout=`` / ``max_retries=`` arguments."""
    if timeout is not None and not is_positive_seconds(timeout):
        raise InvalidArgumentError(
            f"timeout must be a positive number of seconds, got {_show(timeout)}"
        )
    if max_retries is not None and not is_retry_count(max_retries):
        raise InvalidArgumentError(f"max_retries must be an integer >= 0, got {_show(max_retries)}")
    if timeout is None and max_retries is None:
        return NO_OVERRIDES
    return RequestOptions(None if timeout is None else float(timeout), max_retries)


#: The options of a request that overrides nothing (most of them): made once.
NO_OVERRIDES = RequestOptions()


def closed_error(client: object) -> ClientClosedError:
    return ClientClosedError(
        f"this {type(client).__name__} has been closed and cannot send requests; "
        "make a new client (or use it as a context manager around its whole use)"
    )


def client_kwargs(config: ClientConfig) -> dict[str, Any]:
    """Arguments for the ``httpx`` client the SDK builds for itself."""
    return {
        "base_url": config.base_url,
        # httpx masks Authorization in every repr of headers, requests and clients.
        "headers": {
            "Authorization": f"Bearer {config.api_key}",
            "User-Agent": USER_AGENT,
            "Accept": "application/json",
            # Bodies are small JSON; a compressed one could expand far past the size
            # limit in memory, so none is accepted.
            "Accept-Encoding": "identity",
        },
        "timeout": httpx.Timeout(config.timeout),
        "follow_redirects": False,
    }


def new_idempotency_key() -> str:
    return f"cc-{uuid.uuid4().hex}"


def require_sid(sid: object, name: str = "sid") -> str:
    """``sid`` if it is a call sid (``CA`` and 32 lowercase hex digits); the error names
    the argument ``name``. Nothing that cannot be a sid is ever sent."""
    if not isinstance(sid, str) or not CALL_SID.fullmatch(sid):
        raise InvalidArgumentError(
            f"{name} must be a call sid ('CA' and 32 lowercase hex digits, as originate "
            f"returns it), got {_show(sid)}"
        )
    return sid


def _show(value: object) -> str:
    """``repr(value)``, cut short: an argument can be anything, of any size."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def transfer_target(to: str | None, agent: str | None) -> tuple[str, str]:
    """Check that exactly one of ``to`` / ``agent`` is given; return (kind, value)."""
    if (to is None) == (agent is None):
        raise InvalidArgumentError(
            "transfer needs exactly one of to='+1555...' (a number) or agent='agent-id'"
        )
    kind, value = ("to", to) if to is not None else ("agent", agent)
    if not isinstance(value, str) or not value:
        raise InvalidArgumentError(f"transfer {kind} must be a non-empty string, got {value!r}")
    return kind, value


class translate_errors:
    """Turn httpx exceptions into the SDK's error tree (the message names what failed).

    A class rather than a generator-based context manager: it wraps every request.
    """

    __slots__ = ("_method", "_url")

    def __init__(self, method: str, url: str) -> None:
        self._method = method
        self._url = url

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if isinstance(exc, httpx.TimeoutException):
            raise APITimeoutError(
                f"{self._method} {self._url} timed out: {exc or type(exc).__name__}",
                request=_request_of(exc),
            ) from exc
        if isinstance(exc, httpx.HTTPError):  # refused, reset, malformed HTTP, redirect loops...
            raise APIConnectionError(
                f"{self._method} {self._url} failed: {exc or type(exc).__name__}",
                request=_request_of(exc),
            ) from exc


class AbsoluteURLs:
    """The absolute ``httpx.URL`` of each API path under ``base_url``, as httpx would
    merge them, parsed once per path: parsing a URL costs more than the rest of
    building a request. At most :attr:`MAX_ENTRIES` are kept (then it starts over)."""

    MAX_ENTRIES = 256
    __slots__ = ("_base", "_urls")

    def __init__(self, base_url: httpx.URL) -> None:
        self._base = base_url
        self._urls: dict[str, httpx.URL] = {}

    def __call__(self, path: str) -> httpx.URL:
        url = self._urls.get(path)
        if url is None:
            url = httpx.URL(path)
            if url.is_relative_url:  # httpx.Client's rule: append to the base URL's path
                raw_path = self._base.raw_path + url.raw_path.lstrip(b"/")
                url = self._base.copy_with(raw_path=raw_path)
            if len(self._urls) >= self.MAX_ENTRIES:
                self._urls.clear()
            self._urls[path] = url
        return url


def _request_of(exc: httpx.HTTPError) -> httpx.Request | None:
    try:
        return exc.request
    except RuntimeError:
        return None


def _opt(value: T | Unset | None) -> T | None:
    """An optional field of a generated model: None where the body left it out."""
    return None if isinstance(value, Unset) else value


class CallFields:
    """Read-only fields of a call snapshot (shared by ``Call`` and ``AsyncCall``)."""

    _model: CallModel

    @property
    def sid(self) -> str:
        return self._model.sid

    @property
    def status(self) -> CallStatus:
        return self._model.status

    @property
    def to(self) -> str:
        return self._model.to

    @property
    def from_(self) -> str:
        return self._model.from_

    @property
    def started_at(self) -> datetime:
        return self._model.started_at

    @property
    def answered_at(self) -> datetime | None:
        return _opt(self._model.answered_at)

    @property
    def ended_at(self) -> datetime | None:
        return _opt(self._model.ended_at)

    @property
    def end_reason(self) -> EndReason | None:
        return _opt(self._model.end_reason)

    @property
    def trunk_id(self) -> str | None:
        return _opt(self._model.trunk_id)

    @property
    def agent(self) -> str | None:
        return _opt(self._model.agent)

    @property
    def ring_timeout_sec(self) -> int:
        return self._model.ring_timeout_sec

    @property
    def ended(self) -> bool:
        """True once the call is completed, failed or unanswered."""
        return self._model.status in ENDED_STATUSES

    def to_dict(self) -> dict[str, Any]:
        """The call as the API's JSON object."""
        return self._model.to_dict()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(sid={self.sid!r}, status={self.status.value!r}, "
            f"to={self.to!r}, from_={self.from_!r}, agent={self.agent!r})"
        )


def ssl_verify(verify: bool | str | ssl.SSLContext) -> bool | ssl.SSLContext:
    """httpx's ``verify``: a CA bundle path becomes an SSL context."""
    if isinstance(verify, str):
        return ssl.create_default_context(cafile=verify)
    return verify


class BridgeToken:
    """A short-lived relay credential for one call and role; ``repr`` hides the token."""

    __slots__ = ("_model",)

    def __init__(self, model: BridgeTokenModel) -> None:
        self._model = model

    @property
    def token(self) -> str:
        return self._model.token

    @property
    def role(self) -> VoiceRole:
        return VoiceRole(self._model.role.value)

    @property
    def call_sid(self) -> str:
        return self._model.call_sid

    @property
    def expires_at(self) -> datetime:
        return self._model.expires_at

    @property
    def relay_url(self) -> str | None:
        return self._model.relay_url

    def __repr__(self) -> str:
        return (
            f"BridgeToken(call_sid={self.call_sid!r}, role={self.role!r}, "
            f"expires_at={self.expires_at.isoformat()!r}, token=<hidden>)"
        )
