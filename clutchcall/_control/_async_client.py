"""The control-plane client: ``Voice.calls``, ``Voice.agents`` and call handles."""

from __future__ import annotations

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

from ..bridge import AsyncAudioBridges
from ..errors import InvalidArgumentError
from ._async_transport import AsyncClientTransport, AsyncRetryTransport
from ._base import (
    BridgeToken,
    CallFields,
    client_kwargs,
    new_idempotency_key,
    require_sid,
    ssl_verify,
    transfer_target,
    translate_errors,
)
from ._config import ClientConfig, Verify, resolve_config
from ._limits import async_http_transport
from ._responses import parse_response
from ._retry import RetryPolicy

M = TypeVar("M")


class AsyncCall(CallFields):
    """A call: a snapshot of its state plus the operations that change it.

    The fields reflect the last response seen; :meth:`refresh` fetches them again.
    """

    def __init__(self, calls: AsyncCalls, model: CallModel) -> None:
        self._calls = calls
        self._model = model

    async def refresh(self) -> AsyncCall:
        """Fetch the call's current state into this handle; returns the handle."""
        self._model = await self._calls._get_model(self.sid)
        return self

    async def transfer(self, to: str | None = None, *, agent: str | None = None) -> None:
        """Forward to a number (``to``, or a bare string) or hand to an agent (``agent=``)."""
        self._model = await self._calls._transfer_model(self.sid, to, agent)

    async def hangup(self) -> None:
        """End the call and drop both of its audio tracks."""
        self._model = await self._calls._hangup_model(self.sid)


class AsyncCalls:
    """Control plane: originate calls and read their state (``voice.calls``)."""

    def __init__(self, voice: AsyncVoice) -> None:
        self._voice = voice

    async def originate(
        self,
        *,
        to: str,
        from_: str,
        trunk_id: str,
        agent: str | None = None,
        ring_timeout_sec: int | None = None,
        idempotency_key: str | None = None,
    ) -> AsyncCall:
        """Place an outbound call; returns as soon as it is dialing.

        Retries reuse one ``Idempotency-Key`` (generated unless given), so a retried
        request never places a second call.
        """
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
        v = self._voice
        request = originate_call._get_kwargs(v.org_id, body=body, idempotency_key=key)
        return AsyncCall(self, await v._send(request, CallModel))

    async def get(self, sid: str) -> AsyncCall:
        """The current state of a call (poll this to follow its lifecycle)."""
        return AsyncCall(self, await self._get_model(sid))

    async def transfer(
        self, sid: str, to: str | None = None, *, agent: str | None = None
    ) -> AsyncCall:
        """Transfer the call ``sid``; see :meth:`AsyncCall.transfer`."""
        return AsyncCall(self, await self._transfer_model(sid, to, agent))

    async def hangup(self, sid: str) -> AsyncCall:
        """Hang up the call ``sid``; returns its final state."""
        return AsyncCall(self, await self._hangup_model(sid))

    async def create_bridge_token(self, sid: str, role: str = "server") -> BridgeToken:
        """A short-lived token for joining the call's audio tracks on the relay.

        ``role="server"`` subscribes uplink and publishes downlink; ``"caller"`` the
        reverse. The audio bridge fetches these itself; use this with the raw
        ``MoqtClient``.
        """
        v = self._voice
        sid = require_sid(sid)
        try:
            body = BridgeTokenRequest(role=BridgeRole(role))
        except ValueError:
            raise InvalidArgumentError(f"role must be 'server' or 'caller', got {role!r}") from None
        request = create_bridge_token._get_kwargs(v.org_id, sid, body=body)
        return BridgeToken(await v._send(request, BridgeTokenModel))

    async def _get_model(self, sid: str) -> CallModel:
        v = self._voice
        sid = require_sid(sid)
        return await v._send(get_call._get_kwargs(v.org_id, sid), CallModel)

    async def _transfer_model(self, sid: str, to: str | None, agent: str | None) -> CallModel:
        v = self._voice
        sid = require_sid(sid)
        kind, value = transfer_target(to, agent)
        body = TransferToNumber(to=value) if kind == "to" else TransferToAgent(agent=value)
        return await v._send(transfer_call._get_kwargs(v.org_id, sid, body=body), CallModel)

    async def _hangup_model(self, sid: str) -> CallModel:
        v = self._voice
        sid = require_sid(sid)
        return await v._send(hangup_call._get_kwargs(v.org_id, sid), CallModel)


class AsyncAgents:
    """Server-side AI agents on live calls (``voice.agents``)."""

    def __init__(self, voice: AsyncVoice) -> None:
        self._voice = voice

    async def attach(self, call_sid: str, agent: str) -> None:
        """Bind ``agent`` to the call, replacing any agent already on it."""
        v = self._voice
        sid = require_sid(call_sid)
        if not isinstance(agent, str) or not agent:
            raise InvalidArgumentError(f"agent must be a non-empty agent id, got {agent!r}")
        body = AttachAgentRequest(agent=agent)
        await v._send(attach_agent._get_kwargs(v.org_id, sid, body=body), CallModel)


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
        self._http = httpx.AsyncClient(transport=transport, **client_kwargs(config))
        self.calls = AsyncCalls(self)
        self.agents = AsyncAgents(self)
        self.audio_bridge = AsyncAudioBridges(self)

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

    async def _send(self, request: dict[str, Any], model: type[M]) -> M:
        """Send a request built by the generated client; parse and check its answer.

        The generated ``*_detailed`` functions are not used: they parse bodies on
        trust and raise whatever the parsing hits.
        """
        method = str(request["method"]).upper()
        with translate_errors(method, f"{self.base_url}{request['url']}"):
            response = await self._http.request(**request)
        return parse_response(response, model)

    def with_options(
        self,
        *,
        timeout: float | None = None,
        max_retries: int | None = None,
        max_response_bytes: int | None = None,
    ) -> AsyncVoice:
        """A new client with the same settings but these overrides; close it when done."""
        config = resolve_config(
            base_url=self._config.base_url,
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
        caller-supplied ``http_client`` stays open)."""
        try:
            await self.audio_bridge.aclose()
        finally:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncVoice:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r}, org_id={self.org_id!r})"

    def __getstate__(self) -> Any:
        raise TypeError(f"{type(self).__name__} cannot be pickled (it holds connections)")
