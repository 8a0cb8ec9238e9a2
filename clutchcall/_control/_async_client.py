"""The control-plane client: ``Voice.calls``, ``Voice.agents`` and call handles."""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

import httpx
from clutchcall_api.api.agents import attach_agent
from clutchcall_api.api.calls import (
    create_bridge_token,
    get_call,
    hangup_call,
    originate_call,
    transfer_call,
)
from clutchcall_api.models import (
    AttachAgentRequest,
    BridgeRole,
    BridgeTokenRequest,
    OriginateRequest,
    TransferToAgent,
    TransferToNumber,
)
from clutchcall_api.models import BridgeToken as BridgeTokenModel
from clutchcall_api.models import Call as CallModel
from clutchcall_api.types import UNSET

from ..bridge import AsyncAudioBridges, BridgeSettings
from ..errors import InvalidArgumentError
from ._async_transport import AsyncClientTransport, AsyncClientWithoutCookies, AsyncRetryTransport
from ._base import (
    REQUEST_OPTIONS,
    AbsoluteURLs,
    BridgeToken,
    CallFields,
    RequestOptions,
    client_kwargs,
    closed_error,
    new_idempotency_key,
    request_options,
    require_sid,
    ssl_verify,
    transfer_target,
    translate_errors,
)
from ._config import ClientConfig, Verify, resolve_config
from ._limits import async_http_transport
from ._logs import setup_logging
from ._raw import APIResponse
from ._responses import parse_response, status_error
from ._retry import RetryPolicy

M = TypeVar("M")
R = TypeVar("R")
#: A generated ``_get_kwargs``: the org id and the operation's arguments to
#: ``httpx.request`` keyword arguments.
Endpoint = Callable[..., dict[str, Any]]


class AsyncCall(CallFields):
    """A call: a snapshot of its state plus the operations that change it.

    The fields reflect the last response seen; :meth:`refresh` fetches them again.
    ``timeout`` and ``max_retries`` override the client's for that one request.
    """

    def __init__(self, calls: AsyncCalls, model: CallModel) -> None:
        self._calls = calls
        self._model = model

    async def refresh(
        self, *, timeout: float | None = None, max_retries: int | None = None
    ) -> AsyncCall:
        """Fetch the call's current state into this handle; returns the handle."""
        call = await self._calls.get(self.sid, timeout=timeout, max_retries=max_retries)
        self._model = call._model
        return self

    async def transfer(
        self,
        to: str | None = None,
        *,
        agent: str | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> None:
        """Forward to a number (``to``, or a bare string) or hand to an agent (``agent=``)."""
        call = await self._calls.transfer(
            self.sid, to, agent=agent, timeout=timeout, max_retries=max_retries
        )
        self._model = call._model

    async def hangup(self, *, timeout: float | None = None, max_retries: int | None = None) -> None:
        """End the call and drop both of its audio tracks."""
        call = await self._calls.hangup(self.sid, timeout=timeout, max_retries=max_retries)
        self._model = call._model


class AsyncCalls:
    """Control plane: originate calls and read their state (``voice.calls``).

    Every method takes ``timeout`` (seconds, per attempt) and ``max_retries``,
    overriding the client's for that one request. :attr:`with_raw_response` has the
    same methods, returning the HTTP response around the result.
    """

    def __init__(self, voice: AsyncVoice) -> None:
        self._voice = voice
        self._raw = AsyncCallsWithRawResponse(self)

    @property
    def with_raw_response(self) -> AsyncCallsWithRawResponse:
        """The same methods, returning an :class:`~clutchcall.APIResponse` (headers,
        request id, elapsed time...) whose ``parse()`` gives the usual result."""
        return self._raw

    async def originate(
        self,
        *,
        to: str,
        from_: str,
        trunk_id: str,
        agent: str | None = None,
        ring_timeout_sec: int | None = None,
        idempotency_key: str | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> AsyncCall:
        """Place an outbound call; returns as soon as it is dialing.

        Retries reuse one ``Idempotency-Key`` (generated unless given), so a retried
        request never places a second call.
        """
        response = await self._raw.originate(
            to=to,
            from_=from_,
            trunk_id=trunk_id,
            agent=agent,
            ring_timeout_sec=ring_timeout_sec,
            idempotency_key=idempotency_key,
            timeout=timeout,
            max_retries=max_retries,
        )
        return response.parse()

    async def get(
        self, sid: str, *, timeout: float | None = None, max_retries: int | None = None
    ) -> AsyncCall:
        """The current state of a call (poll this to follow its lifecycle)."""
        return (await self._raw.get(sid, timeout=timeout, max_retries=max_retries)).parse()

    async def transfer(
        self,
        sid: str,
        to: str | None = None,
        *,
        agent: str | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> AsyncCall:
        """Transfer the call ``sid``; see :meth:`AsyncCall.transfer`."""
        response = await self._raw.transfer(
            sid, to, agent=agent, timeout=timeout, max_retries=max_retries
        )
        return response.parse()

    async def hangup(
        self, sid: str, *, timeout: float | None = None, max_retries: int | None = None
    ) -> AsyncCall:
        """Hang up the call ``sid``; returns its final state."""
        return (await self._raw.hangup(sid, timeout=timeout, max_retries=max_retries)).parse()

    async def create_bridge_token(
        self,
        sid: str,
        role: str = "server",
        *,
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> BridgeToken:
        """A short-lived token for joining the call's audio tracks on the relay.

        ``role="server"`` subscribes uplink and publishes downlink; ``"caller"`` the
        reverse. The audio bridge fetches these itself; use this with the raw
        ``MoqtClient``.
        """
        response = await self._raw.create_bridge_token(
            sid, role, timeout=timeout, max_retries=max_retries
        )
        return response.parse()


class AsyncCallsWithRawResponse:
    """``voice.calls.with_raw_response``: each method of ``voice.calls``, returning the
    :class:`~clutchcall.APIResponse` it came in (``.parse()`` gives the usual result)."""

    def __init__(self, calls: AsyncCalls) -> None:
        self._calls = calls

    def _call(self, model: CallModel) -> AsyncCall:
        return AsyncCall(self._calls, model)

    async def _send(
        self, options: RequestOptions, endpoint: Endpoint, *args: Any, **kwargs: Any
    ) -> APIResponse[AsyncCall]:
        """Send ``endpoint``'s request; a success body is a call."""
        return await self._calls._voice._send(
            options, CallModel, self._call, endpoint, *args, **kwargs
        )

    async def _on_call(
        self, endpoint: Endpoint, sid: str, timeout: float | None, max_retries: int | None
    ) -> APIResponse[AsyncCall]:
        """Send ``endpoint``'s request about the call ``sid``, which has no body."""
        options = request_options(timeout, max_retries)
        return await self._send(options, endpoint, require_sid(sid))

    async def originate(
        self,
        *,
        to: str,
        from_: str,
        trunk_id: str,
        agent: str | None = None,
        ring_timeout_sec: int | None = None,
        idempotency_key: str | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> APIResponse[AsyncCall]:
        """:meth:`AsyncCalls.originate`, with its HTTP response."""
        options = request_options(timeout, max_retries)
        if ring_timeout_sec is not None and (
            isinstance(ring_timeout_sec, bool) or not isinstance(ring_timeout_sec, int)
        ):
            raise InvalidArgumentError(
                f"ring_timeout_sec must be an integer number of seconds, got {ring_timeout_sec!r}"
            )
        body = OriginateRequest(
            to=to,
            from_=from_,
            trunk_id=trunk_id,
            agent=UNSET if agent is None else agent,
            ring_timeout_sec=UNSET if ring_timeout_sec is None else ring_timeout_sec,
        )
        key = idempotency_key or new_idempotency_key()
        return await self._send(options, originate_call._get_kwargs, body=body, idempotency_key=key)

    async def get(
        self, sid: str, *, timeout: float | None = None, max_retries: int | None = None
    ) -> APIResponse[AsyncCall]:
        """:meth:`AsyncCalls.get`, with its HTTP response."""
        return await self._on_call(get_call._get_kwargs, sid, timeout, max_retries)

    async def transfer(
        self,
        sid: str,
        to: str | None = None,
        *,
        agent: str | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> APIResponse[AsyncCall]:
        """:meth:`AsyncCalls.transfer`, with its HTTP response."""
        options = request_options(timeout, max_retries)
        sid = require_sid(sid)
        kind, value = transfer_target(to, agent)
        body = TransferToNumber(to=value) if kind == "to" else TransferToAgent(agent=value)
        return await self._send(options, transfer_call._get_kwargs, sid, body=body)

    async def hangup(
        self, sid: str, *, timeout: float | None = None, max_retries: int | None = None
    ) -> APIResponse[AsyncCall]:
        """:meth:`AsyncCalls.hangup`, with its HTTP response."""
        return await self._on_call(hangup_call._get_kwargs, sid, timeout, max_retries)

    async def create_bridge_token(
        self,
        sid: str,
        role: str = "server",
        *,
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> APIResponse[BridgeToken]:
        """:meth:`AsyncCalls.create_bridge_token`, with its HTTP response."""
        options = request_options(timeout, max_retries)
        sid = require_sid(sid)
        try:
            body = BridgeTokenRequest(role=BridgeRole(role))
        except ValueError:
            raise InvalidArgumentError(f"role must be 'server' or 'caller', got {role!r}") from None
        endpoint = create_bridge_token._get_kwargs
        v = self._calls._voice
        return await v._send(options, BridgeTokenModel, BridgeToken, endpoint, sid, body=body)


class AsyncAgents:
    """Server-side AI agents on live calls (``voice.agents``).

    ``timeout`` and ``max_retries`` override the client's for one request;
    :attr:`with_raw_response` returns the HTTP response around the result.
    """

    def __init__(self, voice: AsyncVoice) -> None:
        self._voice = voice
        self._raw = AsyncAgentsWithRawResponse(self)

    @property
    def with_raw_response(self) -> AsyncAgentsWithRawResponse:
        """The same methods, returning an :class:`~clutchcall.APIResponse`."""
        return self._raw

    async def attach(
        self,
        call_sid: str,
        agent: str,
        *,
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> None:
        """Bind ``agent`` to the call, replacing any agent already on it."""
        response = await self._raw.attach(call_sid, agent, timeout=timeout, max_retries=max_retries)
        response.parse()


class AsyncAgentsWithRawResponse:
    """``voice.agents.with_raw_response``: each method of ``voice.agents``, returning the
    :class:`~clutchcall.APIResponse` it came in."""

    def __init__(self, agents: AsyncAgents) -> None:
        self._agents = agents

    async def attach(
        self,
        call_sid: str,
        agent: str,
        *,
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> APIResponse[None]:
        """:meth:`AsyncAgents.attach`, with its HTTP response (``parse()`` checks the
        body, the call the agent joined, and returns None)."""
        options = request_options(timeout, max_retries)
        sid = require_sid(call_sid, "call_sid")
        if not isinstance(agent, str) or not agent:
            raise InvalidArgumentError(f"agent must be a non-empty agent id, got {agent!r}")
        body = AttachAgentRequest(agent=agent)
        v = self._agents._voice
        return await v._send(options, CallModel, _discard, attach_agent._get_kwargs, sid, body=body)


def _discard(model: object) -> None:
    return None


class AsyncVoice:
    """The ClutchCall client: ``calls``, ``agents`` and ``audio_bridge`` for one org.

    Every argument may come from the environment: ``CLUTCHCALL_BASE_URL``,
    ``CLUTCHCALL_CREDENTIALS`` (the API key), ``CLUTCHCALL_ORG_ID`` and
    ``CLUTCHCALL_RELAY_URL``. ``verify`` is True, False, a CA bundle path or an
    ``ssl.SSLContext``. ``http_client`` sends the requests through your own
    ``httpx`` client (you keep ownership of it). ``share_bridge_connections``:
    audio bridges to the same relay share one QUIC connection (the default; far
    cheaper with many calls) or each get their own (False).

    Every response is distrusted. ``timeout`` (seconds, default 30) bounds each
    attempt of a request as a whole, from connecting to the last byte of the body
    (:class:`~clutchcall.APITimeoutError` past it; idempotent requests are then
    retried). With your own ``http_client``, the blocking ``Voice`` checks that
    deadline while reading the body only (your client's timeouts bound each read
    before it). ``max_response_bytes`` (default 4 MiB) caps a response body: reading
    stops there and :class:`~clutchcall.errors.ResponseTooLargeError` is raised
    (for an error status, that status's error). A success body that is not the
    JSON the API defines, down to each field's type, raises
    :class:`~clutchcall.APIResponseValidationError`; an error status raises its
    :class:`~clutchcall.APIStatusError` subclass whatever its body. Both quote the
    status, the request id and the start of the body, never the API key.

    Each request method also takes ``timeout=`` and ``max_retries=`` for that one
    request, and ``calls.with_raw_response`` / ``agents.with_raw_response`` return
    the HTTP response around each result. ``CLUTCHCALL_LOG=debug`` (or ``info``)
    makes the ``clutchcall`` loggers write to stderr; at DEBUG each HTTP attempt is
    one line. A request after :meth:`close` raises
    :class:`~clutchcall.errors.ClientClosedError`.

    Use the client as a context manager around its whole use, or call
    :meth:`close` when done: either closes every audio bridge still open and stops
    what they left running. The async client, while entered, runs its bridges in
    a task group it owns (leaving cancels and joins it: no task outlives the
    block), and otherwise in background tasks of their event loop; the blocking
    client runs them on one background thread.
    """

    def __init__(
        self,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        org_id: str | None = None,
        relay_host: str | None = None,
        relay_url: str | None = None,
        verify: Verify = True,
        timeout: float | None = None,
        max_retries: int | None = None,
        http_client: httpx.AsyncClient | None = None,
        share_bridge_connections: bool = True,
        max_response_bytes: int | None = None,
    ) -> None:
        config = resolve_config(
            base_url=base_url,
            api_key=api_key,
            org_id=org_id,
            relay_host=relay_host,
            relay_url=relay_url,
            verify=verify,
            timeout=timeout,
            max_retries=max_retries,
            share_bridge_connections=share_bridge_connections,
            max_response_bytes=max_response_bytes,
        )
        self._setup(config, http_client)

    def _setup(self, config: ClientConfig, http_client: httpx.AsyncClient | None) -> None:
        setup_logging()
        self._config = config
        self._user_http_client = http_client
        inner: httpx.AsyncBaseTransport
        if http_client is not None:
            inner = AsyncClientTransport(http_client)
        else:
            inner = async_http_transport(ssl_verify(config.verify))
        transport = AsyncRetryTransport(
            inner,
            RetryPolicy(max_retries=config.max_retries),
            timeout=config.timeout,
            max_response_bytes=config.max_response_bytes,
        )
        self._http = AsyncClientWithoutCookies(transport=transport, **client_kwargs(config))
        self._urls = AbsoluteURLs(self._http.base_url)
        self.calls = AsyncCalls(self)
        self.agents = AsyncAgents(self)
        self.audio_bridge = AsyncAudioBridges(
            BridgeSettings(
                relay_url=config.relay_url,
                relay_host=config.relay_host,
                verify=config.verify,
                share_connections=config.share_bridge_connections,
            ),
            self.calls.create_bridge_token,
        )

    @property
    def base_url(self) -> str:
        return self._config.base_url

    @property
    def org_id(self) -> str:
        return self._config.org_id

    @property
    def relay_url(self) -> str | None:
        return self._config.relay_url

    @property
    def timeout(self) -> float:
        return self._config.timeout

    @property
    def max_retries(self) -> int:
        return self._config.max_retries

    @property
    def max_response_bytes(self) -> int:
        return self._config.max_response_bytes

    async def _send(
        self,
        options: RequestOptions,
        model: type[M],
        wrap: Callable[[M], R],
        endpoint: Endpoint,
        *args: Any,
        **kwargs: Any,
    ) -> APIResponse[R]:
        """Send the request the generated client's ``endpoint`` builds for this org and
        ``args``; an error status raises its error, a success comes back with its body
        parsed (as ``model``, then ``wrap``) on demand.

        The generated ``*_detailed`` functions are not used: they parse bodies on
        trust and raise whatever the parsing hits.
        """
        if self._http.is_closed:
            raise closed_error(self)
        request = endpoint(self._config.org_id, *args, **kwargs)
        method = str(request.pop("method")).upper()
        path = request.pop("url")
        request["extensions"] = {REQUEST_OPTIONS: options}
        if options.timeout is not None:
            request["timeout"] = httpx.Timeout(options.timeout)
        started = time.monotonic()
        try:
            with translate_errors(method, f"{self._config.base_url}{path}"):
                response = await self._http.request(method, self._urls(path), **request)
        except RuntimeError:
            if self._http.is_closed:  # closed by another task meanwhile
                raise closed_error(self) from None
            raise
        elapsed = datetime.timedelta(seconds=time.monotonic() - started)
        if response.status_code >= 400:
            raise status_error(response)
        return APIResponse(response, lambda: wrap(parse_response(response, model)), elapsed=elapsed)

    def with_options(
        self,
        *,
        base_url: str | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        max_response_bytes: int | None = None,
    ) -> AsyncVoice:
        """A new client with the same settings but these overrides; close it when done.

        For one request only, pass ``timeout=`` / ``max_retries=`` to the method instead.
        """
        config = resolve_config(
            base_url=self._config.base_url if base_url is None else base_url,
            api_key=self._config.api_key,
            org_id=self._config.org_id,
            relay_host=self._config.relay_host,
            relay_url=self._config.relay_url,
            verify=self._config.verify,
            timeout=self._config.timeout if timeout is None else timeout,
            max_retries=self._config.max_retries if max_retries is None else max_retries,
            share_bridge_connections=self._config.share_bridge_connections,
            max_response_bytes=(
                self._config.max_response_bytes
                if max_response_bytes is None
                else max_response_bytes
            ),
        )
        clone = object.__new__(type(self))
        clone._setup(config, self._user_http_client)
        return clone

    async def close(self) -> None:
        """Close every audio bridge, then release the connection pool (a
        caller-supplied ``http_client`` stays open). Requests made afterwards raise
        :class:`~clutchcall.errors.ClientClosedError`."""
        try:
            await self.audio_bridge.close()
        finally:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncVoice:
        await self.audio_bridge.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self.audio_bridge.__aexit__(exc_type, exc, tb)
        finally:
            await self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r}, org_id={self.org_id!r})"

    def __getstate__(self) -> Any:
        raise TypeError(f"{type(self).__name__} cannot be pickled (it holds connections)")
